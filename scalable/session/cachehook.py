"""Cache events of a session's tasks, into the run's ``cache.jsonl`` and the task's hit/miss count.

One listener per process (the client and each worker) turns ``scalable.cache`` events into
:class:`~scalable.telemetry.CacheEvent` lines, but only while a session is current, so a
cached call outside any session records nothing.
"""

from __future__ import annotations

from typing import Any

from scalable.cache import add_listener, configure_cache
from scalable.session.handle import CACHE_STREAM, SessionHandle, active_handle
from scalable.session.lineage import install as install_read_listener
from scalable.session.lineage import record_argument_inputs
from scalable.session.tasks import task_cache_counts
from scalable.telemetry import CacheEvent

_HITS = {"local", "remote"}
_ERRORS = {"remote_error": "remote", "refused": "remote", "corrupt": "local", "not_cached": None, "lock_timeout": None}
_configured_run: str | None = None


def _to_telemetry(handle: SessionHandle, record: dict[str, Any]) -> CacheEvent | None:
    kind = record.get("event")
    common = {
        "run_id": handle.run_id,
        "task": handle.task,
        "function": str(record.get("function", "?")),
        "cache_key": str(record.get("key", "")),
    }
    if kind == "call":
        outcome = record.get("outcome")
        hit = outcome in _HITS
        counts = task_cache_counts.get()
        if counts is not None:
            counts["hits" if hit else "misses"] += 1
        record_argument_inputs(handle, record)
        return CacheEvent(
            event="cache.hit" if hit else "cache.miss",
            tier=outcome if hit else None,
            duration_s=record.get("seconds"),
            source_hash=record.get("source_hash"),
            **common,
        )
    if kind in _ERRORS:
        detail = record.get("error") or record.get("reason") or kind
        if kind == "lock_timeout":
            detail = f"waited {record.get('seconds', 0):.1f}s for another caller, then computed"
        return CacheEvent(event="cache.error", tier=_ERRORS[kind], error=f"{kind}: {detail}", **common)
    return None


def record_cache_event(record: dict[str, Any]) -> None:
    """The listener: one cache event of the current session's task, appended to ``cache.jsonl``."""
    handle = active_handle()
    if handle is None:
        return
    event = _to_telemetry(handle, record)
    if event is not None:
        with handle.stream(CACHE_STREAM) as stream:
            stream.write(event)


def prepare_process(handle: SessionHandle) -> None:
    """Once per process and run: apply the run's cache settings and listen to cache events."""
    global _configured_run
    add_listener(record_cache_event)  # idempotent
    install_read_listener()  # idempotent
    if _configured_run != handle.run_id:
        settings = handle.extra.get("cache")
        if settings:
            configure_cache(as_defaults=True, **settings)
        _configured_run = handle.run_id


__all__ = ["prepare_process", "record_cache_event"]
