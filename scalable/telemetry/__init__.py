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
