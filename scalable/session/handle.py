"""What a task sees of its run: ``current_session()`` and ``record_artifact`` on any worker.

A :class:`SessionHandle` is small and picklable: the run id, the run directory, the
default store and the task's name. It travels with each task to a Dask worker, so an
artifact recorded there lands in the same store and the same ``artifacts.jsonl``.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from scalable.artifacts.base import ArtifactStore, PathLike
from scalable.artifacts.ref import ArtifactRef
from scalable.catalog.feed import notify_recorded
from scalable.errors import ArtifactNotFoundError, NoSessionError, SessionClosedError
from scalable.session.relay import RelayStream
from scalable.telemetry import ArtifactRecorded, JsonlStream

ARTIFACTS_STREAM = "artifacts.jsonl"
TASKS_STREAM = "tasks.jsonl"
CACHE_STREAM = "cache.jsonl"


@dataclass(frozen=True)
class SessionHandle:
    """A run as a task sees it; ``record_artifact`` works the same on the client and on workers."""

    run_id: str
    run_dir: str
    store: ArtifactStore
    task: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)  # cache settings: may hold a secret

    def for_task(self, task: str) -> SessionHandle:
        return replace(self, task=task)

    def stream(self, name: str) -> JsonlStream | RelayStream:
        """The run's JSONL stream ``name`` (``artifacts.jsonl``, ``tasks.jsonl``, ``cache.jsonl``).

        Where the run directory is not visible (a worker on another machine), events go to
        the scheduler and the client appends them when the session closes.
        """
        path = Path(self.run_dir) / name
        if path.parent.is_dir():
            return JsonlStream(path)
        return RelayStream(self.run_id, name)

    def record_artifact(
        self,
        path: PathLike,
        *,
        kind: str = "result",
        key: str | None = None,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> ArtifactRef:
        """Upload ``path`` to the default store and append an artifact event to ``artifacts.jsonl``.

        The key is ``runs/<run_id>/<name or file name>`` unless ``key`` is given. A missing
        file raises ``ArtifactNotFoundError`` and records nothing.
        """
        local = Path(path).expanduser()
        if not local.exists():
            raise ArtifactNotFoundError(
                f"cannot record {os.fspath(path)!r} in run {self.run_id}: the file does not exist"
            )
        label = name or local.name
        target = key if key is not None else f"runs/{self.run_id}/{label}"  # put validates it
        ref = self.store.put(local, target, metadata=metadata)
        event = ArtifactRecorded.from_ref(ref, name=label, kind=kind, run_id=self.run_id, task=self.task)
        with self.stream(ARTIFACTS_STREAM) as stream:
            stream.write(event)
        notify_recorded(event)  # in the session's own process: into the catalog at once
        return ref

    def use_artifact(
        self, source: ArtifactStore | ArtifactRef | str, key: str | None = None, version: str | None = None
    ) -> Path:
        """A local path to an artifact, recorded as an input of this task (``artifact.used``).

        ``source`` is ``"STORE#KEY"``, a store URI or store with ``key``, or an
        :class:`~scalable.artifacts.ref.ArtifactRef`. ``version`` needs a store that keeps
        versions (``VersionNotSupportedError`` otherwise). A fetch that fails raises the
        store's error, and the event records it.
        """
        from scalable.session.lineage import use_artifact  # lineage imports this module

        return use_artifact(self, source, key, version)


_current: ContextVar[SessionHandle | None] = ContextVar("scalable_session", default=None)


def current_session() -> SessionHandle:
    """The session of the running task (on a worker) or of the active ``with`` block (on the client)."""
    handle = _current.get()
    if handle is None:
        raise NoSessionError(
            "no scalable session is active here: call this inside `with ScalableSession.from_yaml() as session:` "
            "or inside a task submitted with session.submit()"
        )
    return handle


def activate(handle: SessionHandle | None) -> Any:
    """Make ``handle`` current; returns the token for :func:`deactivate`."""
    return _current.set(handle)


def deactivate(token: Any) -> None:
    _current.reset(token)


def active_handle() -> SessionHandle | None:
    """The current handle, or ``None`` (for hooks that record only inside a session)."""
    return _current.get()


__all__ = [
    "ARTIFACTS_STREAM",
    "CACHE_STREAM",
    "TASKS_STREAM",
    "NoSessionError",
    "SessionClosedError",
    "SessionHandle",
    "active_handle",
    "current_session",
]
