"""Read observers: who wants to know that an artifact was read, without the store knowing who.

A store's public reads (``get``, ``open``, ``get_bytes``, and ``load`` through
``get_bytes``) call :func:`notify_read` with the store and the committed ref they are about
to read. A session installs a listener here to record those reads as a task's inputs; the
artifacts layer never imports the session layer (layers import only upward).

With no listener the call costs one truth test. Inside :func:`reads_unobserved` (a context
variable, so per thread and per task) reads are not reported: the session reads through
the same stores for its own bookkeeping (``use_artifact`` records its own event, the cache's
remote tier reads entries), and those are not inputs of the task.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scalable.artifacts.ref import ArtifactRef

log = logging.getLogger("scalable.artifacts")

#: ``listener(store, ref, how)``: ``how`` is the read method's name (``get``, ``open``, ``get_bytes``).
ReadListener = Callable[[Any, "ArtifactRef", str], None]

#: The registered listeners (read on every store read: an empty list costs one truth test).
read_listeners: list[ReadListener] = []

_unobserved: ContextVar[bool] = ContextVar("scalable_reads_unobserved", default=False)


def add_read_listener(listener: ReadListener) -> None:
    """Call ``listener(store, ref, how)`` for every observed read from now on (adding twice is a no-op)."""
    if listener not in read_listeners:
        read_listeners.append(listener)


def remove_read_listener(listener: ReadListener) -> None:
    """Stop calling ``listener`` (one never added is fine)."""
    try:
        read_listeners.remove(listener)
    except ValueError:
        pass


@contextmanager
def reads_unobserved() -> Iterator[None]:
    """Reads made inside this block are not reported to listeners (bookkeeping reads)."""
    token = _unobserved.set(True)
    try:
        yield
    finally:
        _unobserved.reset(token)


def notify_read(store: Any, ref: ArtifactRef, how: str) -> None:
    """Tell every listener that ``store`` is reading the committed ``ref``; a failing listener only logs."""
    if not read_listeners or _unobserved.get():
        return
    for listener in list(read_listeners):
        try:
            listener(store, ref, how)
        except Exception:
            log.exception("artifact read listener %r failed", listener)


__all__ = [
    "ReadListener",
    "add_read_listener",
    "notify_read",
    "read_listeners",
    "reads_unobserved",
    "remove_read_listener",
]
