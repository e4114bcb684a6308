"""Cache events: what happened to each call and to the tiers, for whoever listens.

A listener is any callable taking one JSON-ready dict; a session registers one to write
``cache.jsonl``. Events are built only while a listener is registered, so calls pay
nothing for this when nobody listens. A listener that raises is logged and skipped: it
never breaks a cached call.

Every event has ``event`` (its type) and ``time`` (UTC, ISO 8601). Types:

=================  ==========================================================================
``call``           one cached call: ``function``, ``key``, ``outcome`` (``local``, ``remote``,
                   ``computed``), ``seconds``
``remote_error``   the remote tier failed (``operation``: ``get``/``put``/``open``, ``error``)
``remote_ok``      the remote tier answers again after failures
``refused``        a remote entry was refused (unsigned, altered, undecodable): ``reason``
``corrupt``        a local entry could not be read back: ``reason``
``not_cached``     a result could not be pickled, so it was returned but not stored
``lock_timeout``   waited ``seconds`` for another caller computing the same key, then computed
=================  ==========================================================================
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

log = logging.getLogger("scalable.cache")

Listener = Callable[[dict[str, Any]], None]

#: The registered listeners (read on the hot path: an empty list costs one truth test).
listeners: list[Listener] = []


def add_listener(listener: Listener) -> None:
    """Call ``listener(event_dict)`` for every cache event from now on."""
    if listener not in listeners:
        listeners.append(listener)


def remove_listener(listener: Listener) -> None:
    """Stop calling ``listener`` (a listener never added is fine)."""
    try:
        listeners.remove(listener)
    except ValueError:
        pass


def emit(event: str, **fields: Any) -> None:
    """Send one event to every listener (nothing is built when there is none)."""
    if not listeners:
        return
    record = {"event": event, "time": datetime.now(timezone.utc).isoformat(), **fields}
    for listener in list(listeners):
        try:
            listener(record)
        except Exception:
            log.exception("cache event listener %r failed", listener)


__all__ = ["Listener", "add_listener", "emit", "listeners", "remove_listener"]
