"""``ScalableSession``: one run, its Dask target, its default store, and its JSONL trail.

    with ScalableSession.from_yaml() as session:
        futures = session.map(simulate, range(40))
        results = session.gather(futures)
        session.record_artifact("output.csv", kind="result")

Closing the session writes ``summary.json``, finishes ``run.json``, and copies the run's
telemetry to the default store under ``runs/<run_id>/telemetry/``, so every machine's
runs can be read from one bucket.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from scalable._version import __version__
from scalable.artifacts.base import ArtifactStore, PathLike
from scalable.artifacts.factory import build_artifact_store
from scalable.artifacts.ref import ArtifactRef
from scalable.artifacts.uris import redact_uri
from scalable.cache.source import source_hash
from scalable.catalog.feed import CatalogFeed
from scalable.session.cachehook import prepare_process
from scalable.session.handle import (
    ARTIFACTS_STREAM,
    CACHE_STREAM,
    TASKS_STREAM,
    SessionClosedError,
    SessionHandle,
    activate,
    deactivate,
)
from scalable.session.identity import code_identity, environment_identity
from scalable.session.lineage import RECORD_READS, close_streams
from scalable.session.relay import collect
from scalable.session.runs import git_commit, host_name, new_run_id, user_name, write_json_atomic
from scalable.session.targets import Target, build_cluster
from scalable.session.tasks import TaskRunner
from scalable.telemetry import RunFinished, RunStarted, TaskSubmitted, read_events


class ScalableSession:
    """A run: an id, a run directory, a Dask client on its target, and the default store."""

    def __init__(
        self,
        *,
        target: Target,
        store: ArtifactStore,
        runs_dir: PathLike,
        manifest_text: str | None = None,
        cache_settings: dict[str, Any] | None = None,
        run_id: str | None = None,
        record_reads: bool = True,
    ) -> None:
        self.run_id = run_id or new_run_id()
        self.run_dir = Path(runs_dir).expanduser().resolve() / self.run_id
        self.run_dir.mkdir(parents=True, exist_ok=False)
        self.target = target
        self.store = store
        self.cache_settings = dict(cache_settings or {})
        self._closed = False
        self._lock = threading.Lock()
        self._task_counter = 0
        self._futures: list[Any] = []
        self._cluster: Any = None
        self._client: Any = None
        self._started_at = datetime.now(timezone.utc)
        self._git_commit = git_commit()
        self._environment = environment_identity(self._git_commit)
        #: Qualified name -> source digest of each function submitted (cached ones come from cache.jsonl).
        self._functions: dict[str, str] = {}
        self._unhashable: set[str] = set()
        self.handle = SessionHandle(
            run_id=self.run_id,
            run_dir=str(self.run_dir),
            store=store,
            extra={"cache": self.cache_settings, RECORD_READS: record_reads},
        )
        prepare_process(self.handle)
        #: What tasks carry to the workers (the same handle; a test swaps in an unreachable run dir).
        self._worker_handle = self.handle
        for stream in (ARTIFACTS_STREAM, TASKS_STREAM, CACHE_STREAM):
            (self.run_dir / stream).touch()
        if manifest_text is not None:
            (self.run_dir / "scalable.yaml").write_text(manifest_text, encoding="utf-8")
        self._write_run_json(status="running")
        with self.handle.stream(TASKS_STREAM) as stream:
            stream.write(
                RunStarted(
                    run_id=self.run_id,
                    target=target.name,
                    user=user_name(),
                    scalable_version=__version__,
                    git_commit=self._git_commit,
                    git_dirty=self._environment["git_dirty"],
                    python=self._environment["python"],
                    distributions_digest=self._environment["distributions_digest"],
                )
            )
        self._token = activate(self.handle)
        #: Adds the run and its artifacts to the catalog (``None`` with ``SCALABLE_CATALOG=off``).
        self._catalog_feed = CatalogFeed.start(self.run_id, self.run_dir)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_yaml(
        cls,
        path: PathLike | None = None,
        *,
        target: str | None = None,
        overlay: str | None = None,
        record_reads: bool = True,
    ) -> ScalableSession:
        """A session from ``scalable.yaml`` (``SCALABLE_MANIFEST``, else ``./scalable.yaml``, else defaults).

        The target is the argument, then ``SCALABLE_TARGET``, then ``local``; ``overlay``
        merges a named overlay of the manifest onto its base; ``record_reads=False`` stops
        recording store reads inside tasks as inputs (``use_artifact`` still records). A bad manifest raises
        ``ManifestError`` naming the file, line and field, before anything starts.
        """
        from scalable.manifest import resolve_settings

        settings = resolve_settings(path, target=target, overlay=overlay)
        store = build_artifact_store(settings.default_storage, **settings.storage_options_for(settings.default_storage))
        return cls(
            target=Target(settings.target_name, settings.target.provider, settings.target_options()),
            store=store,
            runs_dir=settings.runs_dir,
            manifest_text=settings.manifest_text,
            cache_settings=settings.cache_settings(),
            record_reads=record_reads,
        )

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> ScalableSession:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close(status="failed" if exc is not None else "finished")

    def _check_open(self) -> None:
        if self._closed:
            raise SessionClosedError(
                f"session {self.run_id} is closed: start a new one with ScalableSession.from_yaml()"
            )

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` of the target (started on first use)."""
        self._check_open()
        with self._lock:
            if self._client is None:
                from distributed import Client

                if self.target.provider == "dask":
                    self._client = Client(self.target.options["address"])
                else:
                    self._cluster = build_cluster(self.target)
                    self._client = Client(self._cluster)
        return self._client

    def close(self, status: str = "finished") -> None:
        """Finish the run: summary, run.json, telemetry copied to the store, target shut down."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._client is not None:
                self._settle_tasks(cancel=status != "finished")
                collect(self._client, self.run_id, self.run_dir)
                self._client.close()
            if self._cluster is not None:
                self._cluster.close()
        finally:
            elapsed = (datetime.now(timezone.utc) - self._started_at).total_seconds()
            with self.handle.stream(TASKS_STREAM) as stream:
                stream.write(RunFinished(run_id=self.run_id, status=status, duration_s=elapsed))
            summary = self.summary()
            write_json_atomic(self.run_dir / "summary.json", summary)
            self._write_run_json(status=status, ended_at=datetime.now(timezone.utc).isoformat())
            close_streams(str(self.run_dir))
            if self._catalog_feed is not None:
                self._catalog_feed.close()
            self._copy_telemetry()
            deactivate(self._token)

    def _settle_tasks(self, *, cancel: bool) -> None:
        """Let submitted tasks finish (so their events are in the trail), or cancel them on failure."""
        pending = [f for f in self._futures if not f.done()]
        if not pending:
            return
        if cancel:
            self._client.cancel(pending)
        else:
            from distributed import wait

            wait(pending)

    # ------------------------------------------------------------------ tasks
    def _task_id(self, fn: Callable[..., Any]) -> str:
        with self._lock:
            self._task_counter += 1
            n = self._task_counter
        name = getattr(fn, "__name__", "task")
        return f"{name}-{n:05d}"

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` on the target; returns a Dask future."""
        self._check_open()
        task = self._task_id(fn)
        self._note_function(fn)
        runner = TaskRunner(self._worker_handle, task, fn, setup=prepare_process)
        with self.handle.stream(TASKS_STREAM) as stream:
            stream.write(TaskSubmitted(run_id=self.run_id, task=task, function=getattr(fn, "__qualname__", repr(fn))))
        future = self.client.submit(runner, args, kwargs, key=f"{task}-{self.run_id}", pure=False)
        self._futures.append(future)
        return future

    def map(self, fn: Callable[..., Any], iterable: Iterable[Any]) -> list[Any]:
        """``submit(fn, item)`` for each item; a list of futures, in order."""
        return [self.submit(fn, item) for item in iterable]

    def gather(self, futures: Any) -> Any:
        """The results of ``futures`` (raising the first task error, as Dask does)."""
        self._check_open()
        return self.client.gather(futures)

    def _note_function(self, fn: Callable[..., Any]) -> None:
        name = getattr(fn, "qualified_name", None)
        if name is None and hasattr(fn, "__qualname__"):
            name = f"{getattr(fn, '__module__', '?')}:{fn.__qualname__}"  # as the cache names functions
        if not name or name in self._functions or name in self._unhashable:
            return
        digest = getattr(fn, "source_hash", None)  # a @cacheable function knows its own
        if not isinstance(digest, str):
            try:
                digest = source_hash(fn)
            except Exception:  # a builtin or a lambda typed at a prompt has no source to hash
                self._unhashable.add(str(name))
                return
        self._functions[str(name)] = digest

    # ------------------------------------------------------------------ artifacts
    def record_artifact(
        self,
        path: PathLike,
        *,
        kind: str = "result",
        key: str | None = None,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> ArtifactRef:
        """Upload ``path`` under ``runs/<run_id>/`` (or ``key``) and append it to ``artifacts.jsonl``."""
        self._check_open()
        return self.handle.record_artifact(path, kind=kind, key=key, name=name, metadata=metadata)

    def use_artifact(
        self, source: ArtifactStore | ArtifactRef | str, key: str | None = None, version: str | None = None
    ) -> Path:
        """A local path to an artifact, recorded as an input of the run (an ``artifact.used`` event).

        ``source`` is ``"STORE#KEY"``, a store (or store URI) with ``key``, or an
        :class:`~scalable.artifacts.ref.ArtifactRef`. Inside a task use
        ``current_session().use_artifact(...)``: the input is then the task's. ``version``
        needs a store that keeps versions (``VersionNotSupportedError`` otherwise). An
        input that cannot be fetched raises the store's error, and the event records it.
        """
        self._check_open()
        return self.handle.use_artifact(source, key, version)

    def code_identity(self) -> dict[str, Any]:
        """Git commit and dirty flag, Python, distributions digest, each function's source digest, and their digest."""
        functions = dict(self._functions)
        for event in read_events(self.run_dir / CACHE_STREAM).events:
            digest = getattr(event, "source_hash", None)
            if digest and event.event in ("cache.hit", "cache.miss"):
                functions.setdefault(str(event.function), str(digest))  # type: ignore[attr-defined]
        return code_identity(self._environment, functions)

    # ------------------------------------------------------------------ records
    def summary(self) -> dict[str, Any]:
        """Tasks, failures, bytes, durations and the cache hit rate of the run so far."""
        tasks = read_events(self.run_dir / TASKS_STREAM).events
        artifacts = [e for e in read_events(self.run_dir / ARTIFACTS_STREAM).events if e.event == "artifact.recorded"]
        done = [e for e in tasks if e.event in ("task.finished", "task.failed")]
        durations = [float(e.duration_s) for e in done]  # type: ignore[attr-defined]
        hits = sum(int(getattr(e, "cache_hits", 0) or 0) for e in done)
        misses = sum(int(getattr(e, "cache_misses", 0) or 0) for e in done)
        return {
            "run_id": self.run_id,
            "tasks": {
                "submitted": sum(1 for e in tasks if e.event == "task.submitted"),
                "finished": sum(1 for e in done if e.event == "task.finished"),
                "failed": sum(1 for e in done if e.event == "task.failed"),
            },
            "artifacts": len(artifacts),
            "bytes": sum(int(e.size_bytes) for e in artifacts),  # type: ignore[attr-defined]
            "durations_s": {
                "total": sum(durations),
                "mean": (sum(durations) / len(durations)) if durations else None,
                "max": max(durations) if durations else None,
            },
            "cache": {
                "hits": hits,
                "misses": misses,
                "hit_rate": (hits / (hits + misses)) if hits + misses else None,
            },
        }

    def _write_run_json(self, *, status: str, ended_at: str | None = None) -> None:
        doc = {
            "run_id": self.run_id,
            "status": status,
            "started_at": self._started_at.isoformat(),
            "ended_at": ended_at,
            "target": {"name": self.target.name, "provider": self.target.provider},
            "store": redact_uri(self.store.uri),
            "host": host_name(),
            "user": user_name(),
            "pid": os.getpid(),
            "scalable_version": __version__,
            "git_commit": self._git_commit,
            "code": self.code_identity(),
        }
        write_json_atomic(self.run_dir / "run.json", doc)

    def _copy_telemetry(self) -> None:
        for name in ("run.json", "summary.json", ARTIFACTS_STREAM, TASKS_STREAM, CACHE_STREAM):
            local = self.run_dir / name
            if local.exists():
                self.store.put(local, f"runs/{self.run_id}/telemetry/{name}")

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"ScalableSession(run_id={self.run_id!r}, target={self.target.name!r}, {state})"


__all__ = ["ScalableSession"]
