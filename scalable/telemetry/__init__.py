"""Telemetry: typed events and the JSONL streams a run writes them to.

    from scalable.telemetry import JsonlStream, TaskFinished, read_events

    with JsonlStream(run_dir / "tasks.jsonl") as stream:
        stream.write(TaskFinished(run_id=run_id, task="fit-3", duration_s=1.2, cache="hit"))
    log = read_events(run_dir / "tasks.jsonl")
    log.events, log.skipped

Each event is one line, written whole by one append under a lock, so threads, processes
and Dask workers can share a file without losing or tearing a line. Secrets in URIs are
redacted before anything is written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scalable._lazy import lazy_namespace

# A function named like its module: bound now, so importing the module cannot shadow it.
from scalable.telemetry.redact import redact

if TYPE_CHECKING:
    from scalable.telemetry.events import (
        EVENT_TYPES,
        SCHEMA_VERSION,
        ArtifactRecorded,
        ArtifactUsed,
        CacheEvent,
        Event,
        RunFinished,
        RunStarted,
        TaskEvent,
        TaskFailed,
        TaskFinished,
        TaskStarted,
        TaskSubmitted,
        parse_event,
    )
    from scalable.telemetry.reader import EventLog, SkippedLine, TelemetryWarning, iter_events, read_events
    from scalable.telemetry.redact import redact, redact_text
    from scalable.telemetry.stream import JsonlStream, encode_event

_EXPORTS = {
    "EVENT_TYPES": "scalable.telemetry.events",
    "SCHEMA_VERSION": "scalable.telemetry.events",
    "ArtifactRecorded": "scalable.telemetry.events",
    "ArtifactUsed": "scalable.telemetry.events",
    "CacheEvent": "scalable.telemetry.events",
    "Event": "scalable.telemetry.events",
    "RunFinished": "scalable.telemetry.events",
    "RunStarted": "scalable.telemetry.events",
    "TaskEvent": "scalable.telemetry.events",
    "TaskFailed": "scalable.telemetry.events",
    "TaskFinished": "scalable.telemetry.events",
    "TaskStarted": "scalable.telemetry.events",
    "TaskSubmitted": "scalable.telemetry.events",
    "parse_event": "scalable.telemetry.events",
    "EventLog": "scalable.telemetry.reader",
    "SkippedLine": "scalable.telemetry.reader",
    "TelemetryWarning": "scalable.telemetry.reader",
    "iter_events": "scalable.telemetry.reader",
    "read_events": "scalable.telemetry.reader",
    "redact_text": "scalable.telemetry.redact",
    "JsonlStream": "scalable.telemetry.stream",
    "encode_event": "scalable.telemetry.stream",
}

__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS, globals())

__all__ = [
    "EVENT_TYPES",
    "SCHEMA_VERSION",
    "ArtifactRecorded",
    "ArtifactUsed",
    "CacheEvent",
    "Event",
    "EventLog",
    "JsonlStream",
    "RunFinished",
    "RunStarted",
    "SkippedLine",
    "TaskEvent",
    "TaskFailed",
    "TaskFinished",
    "TaskStarted",
    "TaskSubmitted",
    "TelemetryWarning",
    "encode_event",
    "iter_events",
    "parse_event",
    "read_events",
    "redact",
    "redact_text",
]
