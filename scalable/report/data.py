"""A run's telemetry turned into what a report shows: metadata, tasks on a time axis, cache, artifacts.

:func:`load_run_report` reads ``run.json``, ``summary.json``, ``tasks.jsonl``,
``artifacts.jsonl`` and ``cache.jsonl`` from a run directory. Every file is optional
except that a run directory has ``run.json`` or ``tasks.jsonl``: a run that crashed before
writing its summary still gets a report, computed from the streams. Unreadable lines
(a torn last line, a damaged file) are skipped and listed in :attr:`RunReport.notes`.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from scalable.errors import RunNotFoundError
from scalable.report.graph import GraphInput
from scalable.session.locate import RUN_MARKERS
from scalable.telemetry import Event, read_events

#: The files of a run directory the report links to.
TELEMETRY_FILES = ("run.json", "summary.json", "tasks.jsonl", "artifacts.jsonl", "cache.jsonl", "scalable.yaml")

#: Task outcomes, in the order the legend lists them.
OUTCOMES = ("hit", "computed", "failed", "unfinished")


@dataclass(frozen=True)
class TaskRow:
    """One task: when it started and ended (seconds from the run's start) and how it went.

    ``outcome`` is ``hit`` (finished, every cached call a hit), ``computed`` (finished,
    with a cache miss or no cached call), ``failed``, or ``unfinished`` (submitted or
    started, never finished: cancelled, or the worker died).
    """

    task: str
    function: str | None
    worker: str | None
    outcome: str
    start_s: float
    end_s: float
    duration_s: float | None
    cache_hits: int = 0
    cache_misses: int = 0
    error_type: str | None = None
    error: str | None = None
    traceback: str | None = None


@dataclass(frozen=True)
class ArtifactRow:
    """One recorded artifact, as ``artifacts.jsonl`` has it."""

    name: str
    key: str
    kind: str
    artifact_kind: str | None
    size_bytes: int
    digest: str
    uri: str
    task: str | None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def store(self) -> str:
        """The store's URI (the artifact's URI without its key)."""
        suffix = "/" + self.key
        return self.uri[: -len(suffix)] if self.uri.endswith(suffix) else self.uri

    @property
    def store_key(self) -> str:
        """``STORE#KEY``, as the command line names the artifact."""
        return f"{self.store}#{self.key}"


@dataclass(frozen=True)
class CacheStats:
    """Cache lookups of the run's tasks, and the ``cache.jsonl`` events by kind and tier."""

    hits: int
    misses: int
    events: dict[str, int] = field(default_factory=dict)
    """``"cache.hit (local)"`` -> count, from ``cache.jsonl``."""

    @property
    def lookups(self) -> int:
        """Hits plus misses."""
        return self.hits + self.misses

    @property
    def hit_rate(self) -> float | None:
        """Hits over lookups, ``None`` when nothing was looked up."""
        return self.hits / self.lookups if self.lookups else None


@dataclass(frozen=True)
class RunReport:
    """Everything a run report shows; built by :func:`load_run_report`, rendered by :mod:`scalable.report.html`."""

    run_id: str
    run_dir: Path
    status: str
    started_at: datetime | None
    ended_at: datetime | None
    metadata: dict[str, str]
    tasks: list[TaskRow]
    artifacts: list[ArtifactRow]
    cache: CacheStats
    counts: dict[str, int]
    notes: list[str] = field(default_factory=list)
    inputs: list[GraphInput] = field(default_factory=list)
    """The run's ``artifact.used`` events (its inputs), in order."""
    files: list[str] = field(default_factory=list)
    """The telemetry files present in the run directory."""

    @property
    def duration_s(self) -> float | None:
        """Wall-clock seconds from start to end, when both are known."""
        if self.started_at is None or self.ended_at is None:
            return None
        return max(0.0, (self.ended_at - self.started_at).total_seconds())

    @property
    def span_s(self) -> float:
        """The length of the time axis: the run's duration, or the last task's end."""
        ends = [t.end_s for t in self.tasks]
        return max([self.duration_s or 0.0, *ends, 0.0])

    @property
    def total_bytes(self) -> int:
        """Bytes of every recorded artifact."""
        return sum(a.size_bytes for a in self.artifacts)


def _read_json(path: Path, notes: list[str]) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        notes.append(f"{path.name} could not be read ({exc}); the report uses the event streams instead")
        return {}
    return doc if isinstance(doc, dict) else {}


def _read_stream(path: Path, notes: list[str]) -> list[Event]:
    if not path.is_file():
        notes.append(f"{path.name} is missing")
        return []
    log = read_events(path, warn=False)
    if log.skipped:
        lines = ", ".join(str(p.line) for p in log.problems[:5])
        notes.append(f"{path.name}: skipped {log.skipped} unreadable line(s) (line {lines})")
    return log.events


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    return "" if value is None else str(value)


def _tasks(events: list[Event], origin: datetime, run_end_s: float | None) -> list[TaskRow]:
    """One row per task id, in order of first appearance; a task that never finished runs to the run's end."""
    seen: dict[str, dict[str, Any]] = {}
    for event in events:
        task = getattr(event, "task", None)
        if not event.event.startswith("task.") or task is None:
            continue
        row = seen.setdefault(str(task), {"task": str(task)})
        offset = (event.timestamp - origin).total_seconds()
        row["function"] = row.get("function") or getattr(event, "function", None)
        if event.event == "task.submitted":
            row.setdefault("submitted", offset)
        elif event.event == "task.started":
            row["started"] = offset
            row["worker"] = getattr(event, "worker", None)
        elif event.event in ("task.finished", "task.failed"):
            row["ended"] = offset
            row["end_event"] = event
    rows = []
    for row in seen.values():
        end_event = row.get("end_event")
        duration = float(end_event.duration_s) if end_event is not None else None
        if end_event is None:
            outcome = "unfinished"
        elif end_event.event == "task.failed":
            outcome = "failed"
        else:
            outcome = "hit" if getattr(end_event, "cache", None) == "hit" else "computed"
        end = row.get("ended")
        start = row.get("started")
        if start is None:
            start = end - duration if end is not None and duration is not None else row.get("submitted", 0.0)
        if end is None:
            end = run_end_s if run_end_s is not None else start
        rows.append(
            TaskRow(
                task=row["task"],
                function=row.get("function"),
                worker=row.get("worker") or (getattr(end_event, "worker", None) if end_event else None),
                outcome=outcome,
                start_s=max(0.0, start),
                end_s=max(0.0, start, end),
                duration_s=duration,
                cache_hits=int(getattr(end_event, "cache_hits", 0) or 0),
                cache_misses=int(getattr(end_event, "cache_misses", 0) or 0),
                error_type=getattr(end_event, "error_type", None),
                error=getattr(end_event, "error", None),
                traceback=getattr(end_event, "traceback", None),
            )
        )
    return rows


def _inputs(events: list[Event]) -> list[GraphInput]:
    return [
        GraphInput(
            task=getattr(e, "task", None),
            digest=getattr(e, "digest", None),
            key=getattr(e, "key", None) or getattr(e, "uri", None),
            store=getattr(e, "store", None),
            via=str(getattr(e, "via", "used")),
            error=getattr(e, "error", None),
        )
        for e in events
        if e.event == "artifact.used"
    ]


def _artifacts(events: list[Event]) -> list[ArtifactRow]:
    rows = [
        ArtifactRow(
            name=str(e.name),  # type: ignore[attr-defined]
            key=str(e.key),  # type: ignore[attr-defined]
            kind=str(e.kind),  # type: ignore[attr-defined]
            artifact_kind=e.artifact_kind,  # type: ignore[attr-defined]
            size_bytes=int(e.size_bytes),  # type: ignore[attr-defined]
            digest=str(e.digest),  # type: ignore[attr-defined]
            uri=str(e.uri),  # type: ignore[attr-defined]
            task=e.task,  # type: ignore[attr-defined]
            metadata=dict(getattr(e, "metadata", None) or {}),
        )
        for e in events
        if e.event == "artifact.recorded"
    ]
    return sorted(rows, key=lambda a: (a.name, a.key))


def load_run_report(run_dir: str | Path) -> RunReport:
    """The report model of the run whose telemetry is in ``run_dir``.

    Raises :class:`~scalable.errors.RunNotFoundError` if ``run_dir`` has neither
    ``run.json`` nor ``tasks.jsonl``.
    """
    run_dir = Path(run_dir)
    if not any((run_dir / marker).is_file() for marker in RUN_MARKERS):
        raise RunNotFoundError(
            f"{run_dir} is not a run directory (it has no {' or '.join(RUN_MARKERS)}): "
            "pass the directory a session wrote, e.g. .scalable/runs/<run_id>"
        )
    notes: list[str] = []
    run = _read_json(run_dir / "run.json", notes)
    tasks = _read_stream(run_dir / "tasks.jsonl", notes)
    artifacts = _read_stream(run_dir / "artifacts.jsonl", notes)
    cache_events = _read_stream(run_dir / "cache.jsonl", notes) if (run_dir / "cache.jsonl").exists() else []

    started_event = next((e for e in tasks if e.event == "run.started"), None)
    finished_event = next((e for e in reversed(tasks) if e.event == "run.finished"), None)
    stamps = [e.timestamp for e in tasks]
    started_at = _parse_time(run.get("started_at")) or (started_event.timestamp if started_event else None)
    started_at = started_at or (min(stamps) if stamps else None)
    ended_at = _parse_time(run.get("ended_at")) or (finished_event.timestamp if finished_event else None)
    status = str(run.get("status") or getattr(finished_event, "status", None) or "unknown")
    run_id = str(run.get("run_id") or getattr(started_event, "run_id", None) or run_dir.name)

    origin = started_at or datetime.now(timezone.utc)
    rows = _tasks(tasks, origin, (ended_at - origin).total_seconds() if ended_at else None)
    hits = sum(r.cache_hits for r in rows)
    misses = sum(r.cache_misses for r in rows)
    tally = Counter(f"{e.event} ({getattr(e, 'tier', None) or 'no tier'})" for e in cache_events)

    code = run.get("code") if isinstance(run.get("code"), dict) else {}
    metadata = {
        "Run id": run_id,
        "Status": status,
        "Started": started_at.isoformat(timespec="seconds") if started_at else "",
        "Ended": ended_at.isoformat(timespec="seconds") if ended_at else "",
        "Target": _text(run.get("target") or getattr(started_event, "target", None)),
        "Store": _text(run.get("store")),
        "Host": _text(run.get("host") or (started_event.host if started_event else None)),
        "User": _text(run.get("user") or getattr(started_event, "user", None)),
        "Git commit": _text(run.get("git_commit") or getattr(started_event, "git_commit", None)),
        "Python": _text(code.get("python") or getattr(started_event, "python", None)),
        "Installed distributions": _text(
            code.get("distributions_digest") or getattr(started_event, "distributions_digest", None)
        ),
        "Code digest": _text(code.get("digest")),
        "scalable": _text(run.get("scalable_version") or getattr(started_event, "scalable_version", None)),
        "Run directory": str(run_dir),
    }
    counts = {
        "submitted": sum(1 for e in tasks if e.event == "task.submitted"),
        "finished": sum(1 for r in rows if r.outcome in ("hit", "computed")),
        "failed": sum(1 for r in rows if r.outcome == "failed"),
        "unfinished": sum(1 for r in rows if r.outcome == "unfinished"),
    }
    return RunReport(
        run_id=run_id,
        run_dir=run_dir,
        status=status,
        started_at=started_at,
        ended_at=ended_at,
        metadata={k: v for k, v in metadata.items() if v},
        tasks=rows,
        artifacts=_artifacts(artifacts),
        cache=CacheStats(hits=hits, misses=misses, events=dict(sorted(tally.items()))),
        counts=counts,
        notes=notes,
        inputs=_inputs(artifacts),
        files=[name for name in TELEMETRY_FILES if (run_dir / name).is_file()],
    )


__all__ = ["OUTCOMES", "ArtifactRow", "CacheStats", "RunReport", "TaskRow", "load_run_report"]
