"""Execution targets: a Dask cluster (or a connection to one) built from a target's options.

``local`` is a ``distributed.LocalCluster`` whose options keep LocalCluster's own names
(``n_workers``, ``threads_per_worker``, ``processes``, ``memory_limit``); ``dask``
connects to an existing scheduler ``address``; ``slurm``, ``pbs``, ``sge`` and ``lsf`` go
through dask-jobqueue (``pip install 'scalable[hpc]'``) with its own option names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scalable.errors import TargetError

JOBQUEUE_CLUSTERS = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster", "lsf": "LSFCluster"}
PROVIDERS = ("local", "dask", *JOBQUEUE_CLUSTERS)


@dataclass
class Target:
    """A named place to run tasks: a provider and that provider's options."""

    name: str
    provider: str
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.provider not in PROVIDERS:
            raise TargetError(
                f"target {self.name!r} has unknown provider {self.provider!r}: use one of {', '.join(PROVIDERS)}"
            )


def _jobqueue_class(provider: str) -> Any:
    try:
        import dask_jobqueue
    except ImportError:
        raise TargetError(f"the {provider} target needs dask-jobqueue: pip install 'scalable[hpc]'") from None
    return getattr(dask_jobqueue, JOBQUEUE_CLUSTERS[provider])


def build_cluster(target: Target) -> Any | None:
    """The cluster object a target runs on (``None`` for ``dask``: it connects to a scheduler)."""
    options = dict(target.options)
    if target.provider == "local":
        from distributed import LocalCluster

        # Loopback only, and no fixed dashboard port that a second session would collide with
        # (dashboard_address=None still binds :8787 in distributed).
        if options.get("processes", True):
            # Threads in this process talk over the in-process transport, which takes no host.
            options.setdefault("host", "127.0.0.1")
        options.setdefault("dashboard_address", "127.0.0.1:0")
        options.setdefault("n_workers", 2)
        options.setdefault("threads_per_worker", 1)
        try:
            return LocalCluster(**options)
        except TypeError as exc:
            raise TargetError(f"target {target.name!r}: bad LocalCluster option ({exc})") from None
    if target.provider == "dask":
        if not options.get("address"):
            raise TargetError(f"target {target.name!r} (provider dask) needs an `address` of a running scheduler")
        return None
    cls = _jobqueue_class(target.provider)
    jobs = options.pop("jobs", 0)  # n_workers stays: it is a keyword of the jobqueue cluster
    try:
        cluster = cls(**options)
    except (TypeError, ValueError) as exc:
        raise TargetError(f"target {target.name!r}: bad {cls.__name__} option ({exc})") from None
    if jobs:
        cluster.scale(jobs=jobs)
    return cluster


def job_script(target: Target) -> str:
    """The batch script a jobqueue target would submit (for checking options without a batch system)."""
    if target.provider not in JOBQUEUE_CLUSTERS:
        raise TargetError(f"target {target.name!r} is {target.provider!r}: only batch targets have job scripts")
    options = {k: v for k, v in target.options.items() if k not in ("jobs", "n_workers")}  # start no jobs
    scheduler = options.setdefault("scheduler_options", {})
    scheduler.setdefault("host", "127.0.0.1")
    scheduler.setdefault("dashboard_address", "127.0.0.1:0")
    cluster = _jobqueue_class(target.provider)(**options)
    try:
        return str(cluster.job_script())
    finally:
        cluster.close()


__all__ = ["JOBQUEUE_CLUSTERS", "PROVIDERS", "Target", "TargetError", "build_cluster", "job_script"]
