"""The open tiers for a set of settings, shared by every cached function that uses them.

Cached functions ask for their runtime on their first call and again whenever the
configuration generation changes (:func:`~scalable.cache.config.configure_cache`, or a
fork: SQLite connections and HTTP sessions must not cross one). Functions with equal
settings share one runtime, so one process opens each cache directory and each remote
store once.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from scalable.cache import events
from scalable.cache.config import CacheSettings, resolve_settings, state
from scalable.cache.local import LocalTier
from scalable.cache.locks import KeyLocks
from scalable.cache.remote import RemoteTier

log = logging.getLogger("scalable.cache")


@dataclass
class Runtime:
    """The tiers one call uses: ``local`` and ``remote`` are None when not in use."""

    settings: CacheSettings
    local: LocalTier | None
    remote: RemoteTier | None
    locks: KeyLocks
    generation: int


_runtimes: dict[tuple[Any, ...], Runtime] = {}
_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # one held by another thread at the fork would stay held
    _runtimes.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _identity(settings: CacheSettings, use_local: bool, use_remote: bool) -> tuple[Any, ...]:
    remote = settings.remote
    remote_id = remote if isinstance(remote, str) or remote is None else ("store", id(remote))
    options = tuple(sorted((k, repr(v)) for k, v in settings.remote_options.items()))
    return (
        settings.local_dir,
        settings.size_limit,
        remote_id,
        options,
        settings.secret,
        settings.lock_timeout,
        settings.remote_timeout,
        settings.remote_backoff,
        use_local,
        use_remote,
    )


def runtime_for(arguments: dict[str, Any], use_local: bool, use_remote: bool) -> Runtime:
    """The runtime for a function's settings ``arguments`` (opening its tiers on first use)."""
    generation = state.generation
    settings = resolve_settings(arguments)
    ident = (generation, *_identity(settings, use_local, use_remote))
    with _lock:
        runtime = _runtimes.get(ident)
        if runtime is None:
            for old in [k for k in _runtimes if k[0] != generation]:
                del _runtimes[old]
            runtime = _open(settings, use_local, use_remote, generation)
            _runtimes[ident] = runtime
    return runtime


def _open(settings: CacheSettings, use_local: bool, use_remote: bool, generation: int) -> Runtime:
    local = LocalTier(settings.local_dir, settings.size_limit, settings.origin("local_dir")) if use_local else None
    if local is not None:
        locks = KeyLocks(local.locks_dir)
    else:
        try:
            (settings.local_dir / "locks").mkdir(parents=True, exist_ok=True)
            locks = KeyLocks(settings.local_dir / "locks")
        except OSError:
            locks = KeyLocks(None)
    remote = _open_remote(settings) if use_remote and settings.remote is not None else None
    return Runtime(settings, local, remote, locks, generation)


def _open_remote(settings: CacheSettings) -> RemoteTier | None:
    store = settings.remote
    if isinstance(store, str):
        from scalable.artifacts.factory import build_artifact_store
        from scalable.artifacts.uris import redact_uri

        try:
            store = build_artifact_store(store, **dict(settings.remote_options))
        except Exception as exc:
            where = redact_uri(settings.remote)  # type: ignore[arg-type]
            error = f"{type(exc).__name__}: {exc}"
            log.error(
                "remote cache %s (from %s) cannot be opened (%s); caching locally only",
                where,
                settings.origin("remote"),
                error,
            )
            events.emit("remote_error", remote=where, operation="open", error=error[:300], retry_in=None)
            return None
    return RemoteTier(store, settings.secret, settings.remote_backoff, settings.remote_timeout)  # type: ignore[arg-type]


__all__ = ["Runtime", "runtime_for"]
