"""The wrapper a session puts around each task: context, events, and the worker-side hooks.

On the worker, a :class:`TaskRunner` makes the run's :class:`SessionHandle` current (so
``current_session()`` works inside the task), appends ``started`` and ``finished`` or
``failed`` events (with duration, worker, and the task's cache hits and misses) to the
run's ``tasks.jsonl``, and runs the function.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from scalable.session.handle import TASKS_STREAM, SessionHandle, activate, deactivate
from scalable.telemetry import TaskFailed, TaskFinished, TaskStarted

#: The last characters of a failed task's traceback that its event keeps.
MAX_TRACEBACK = 20_000

#: Cache lookups of the running task, counted by the cache listener the session installs.
task_cache_counts: ContextVar[dict[str, int] | None] = ContextVar("scalable_task_cache_counts", default=None)


def worker_address() -> str | None:
    """The Dask worker this runs on, or ``None`` outside a worker."""
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return None


@dataclass
class TaskRunner:
    """A picklable callable: ``fn(*args, **kwargs)`` run inside the session's context."""

    handle: SessionHandle
    task: str
    fn: Callable[..., Any]
    setup: Callable[[SessionHandle], None] | None = None

    def __call__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        handle = self.handle.for_task(self.task)
        if self.setup is not None:
            self.setup(handle)
        worker = worker_address()
        name = getattr(self.fn, "__qualname__", repr(self.fn))
        common = {"run_id": handle.run_id, "task": self.task, "function": name, "worker": worker}
        with handle.stream(TASKS_STREAM) as stream:
            stream.write(TaskStarted(**common))
        counts = {"hits": 0, "misses": 0}
        counts_token = task_cache_counts.set(counts)
        token = activate(handle)
        start = time.perf_counter()
        try:
            result = self.fn(*args, **kwargs)
        except BaseException as exc:
            failed = TaskFailed(
                **common,
                duration_s=time.perf_counter() - start,
                error_type=type(exc).__name__,
                error=str(exc),
                traceback=traceback.format_exc()[-MAX_TRACEBACK:],
                cache_hits=counts["hits"],
                cache_misses=counts["misses"],
            )
            with handle.stream(TASKS_STREAM) as stream:
                stream.write(failed)
            raise
        finally:
            deactivate(token)
            task_cache_counts.reset(counts_token)
        outcome = None if not counts["hits"] + counts["misses"] else ("miss" if counts["misses"] else "hit")
        finished = TaskFinished(
            **common,
            duration_s=time.perf_counter() - start,
            cache=outcome,
            cache_hits=counts["hits"],
            cache_misses=counts["misses"],
        )
        with handle.stream(TASKS_STREAM) as stream:
            stream.write(finished)
        return result


__all__ = ["TaskRunner", "task_cache_counts", "worker_address"]
