"""``scalable.cache``: function results cached on this machine and shared across machines.

>>> from scalable.cache import cacheable
>>> @cacheable
... def simulate(n: int, seed: int = 0) -> dict:
...     ...

A call is looked up in the local tier (a diskcache under ``SCALABLE_CACHE_DIR``), then in
the remote tier (any artifact store at ``SCALABLE_CACHE_REMOTE``), and computed only when
neither has it; a result computed once anywhere is then a hit everywhere. Keys, tiers,
settings and their guarantees are described in ``docs/cache.md``.

One module per concept: :mod:`~scalable.cache.keys` (canonical encoding),
:mod:`~scalable.cache.source` (source hashes), :mod:`~scalable.cache.entries` (entry
bytes and signatures), :mod:`~scalable.cache.local` and :mod:`~scalable.cache.remote`
(the tiers), :mod:`~scalable.cache.locks` (compute once), :mod:`~scalable.cache.config`
(settings), :mod:`~scalable.cache.events` (listeners), :mod:`~scalable.cache.decorator`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scalable._lazy import lazy_namespace

if TYPE_CHECKING:
    from scalable.cache.config import CacheSettings, configure_cache, reset_cache_config, resolve_settings
    from scalable.cache.decorator import CachedFunction, CacheInfo, CallInfo, cacheable
    from scalable.cache.errors import (
        CacheDirectoryError,
        UncacheableResultWarning,
        UnhashableArgumentError,
        UnstableKeyWarning,
    )
    from scalable.cache.events import add_listener, remove_listener
    from scalable.cache.keys import cache_key, encode
    from scalable.cache.source import source_hash

_EXPORTS = {
    "CacheSettings": "scalable.cache.config",
    "configure_cache": "scalable.cache.config",
    "reset_cache_config": "scalable.cache.config",
    "resolve_settings": "scalable.cache.config",
    "CachedFunction": "scalable.cache.decorator",
    "CacheInfo": "scalable.cache.decorator",
    "CallInfo": "scalable.cache.decorator",
    "cacheable": "scalable.cache.decorator",
    "CacheDirectoryError": "scalable.cache.errors",
    "UncacheableResultWarning": "scalable.cache.errors",
    "UnhashableArgumentError": "scalable.cache.errors",
    "UnstableKeyWarning": "scalable.cache.errors",
    "add_listener": "scalable.cache.events",
    "remove_listener": "scalable.cache.events",
    "cache_key": "scalable.cache.keys",
    "encode": "scalable.cache.keys",
    "source_hash": "scalable.cache.source",
}

__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS, globals())

__all__ = [
    "CacheDirectoryError",
    "CacheInfo",
    "CacheSettings",
    "CachedFunction",
    "CallInfo",
    "UncacheableResultWarning",
    "UnhashableArgumentError",
    "UnstableKeyWarning",
    "add_listener",
    "cache_key",
    "cacheable",
    "configure_cache",
    "encode",
    "remove_listener",
    "reset_cache_config",
    "resolve_settings",
    "source_hash",
]
