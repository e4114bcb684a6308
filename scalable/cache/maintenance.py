"""Looking after a local cache tier from outside a cached call: its size, clearing it, pruning it.

``scalable cache info | clear | prune`` use these; so can a script. They open the
diskcache under ``<cache dir>/values`` with the settings stored in it (the eviction
policy of :mod:`scalable.cache.local`), and never create a cache that is not there.

Sizes: ``data_bytes`` is the bytes of the entries themselves; ``disk_bytes`` is what
diskcache counts against its size limit (database pages and entry files), which SQLite
does not shrink when small entries are removed. Pruning to ``max_size`` therefore counts
the entries' bytes, so it cannot empty a cache whose database is larger than the limit.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from scalable.cache.errors import CacheDirectoryError

_ENTRY_BYTES = "COALESCE(size, 0) + COALESCE(LENGTH(value), 0)"


@dataclass(frozen=True)
class LocalCacheStats:
    """What a local cache directory holds (``exists`` is False when no cache was ever written there)."""

    directory: Path
    exists: bool
    entries: int
    data_bytes: int
    disk_bytes: int


@dataclass(frozen=True)
class PruneResult:
    """What :func:`prune_local_cache` removed, and what is left."""

    removed: int
    freed_bytes: int
    after: LocalCacheStats


@contextmanager
def _opened(directory: Path) -> Iterator[object | None]:
    values = Path(directory) / "values"
    if not (values / "cache.db").is_file():
        yield None
        return
    import diskcache

    import scalable.cache.local  # noqa: F401 - registers the tier's eviction policy, stored in the database

    try:
        cache = diskcache.Cache(str(values))
    except Exception as exc:
        raise CacheDirectoryError(
            f"cannot open the local cache at {directory}: {type(exc).__name__}: {exc}. "
            "Check the directory's permissions, or remove it to start an empty cache"
        ) from exc
    try:
        yield cache
    finally:
        cache.close()


def _stats(directory: Path, cache: object | None) -> LocalCacheStats:
    if cache is None:
        return LocalCacheStats(Path(directory), False, 0, 0, 0)
    count, data = cache._sql(f"SELECT COUNT(*), COALESCE(SUM({_ENTRY_BYTES}), 0) FROM Cache").fetchone()  # type: ignore[attr-defined]
    return LocalCacheStats(Path(directory), True, int(count), int(data), int(cache.volume()))  # type: ignore[attr-defined]


def local_cache_stats(directory: str | Path) -> LocalCacheStats:
    """Entries and bytes of the local cache at ``directory`` (the folder ``SCALABLE_CACHE_DIR`` names)."""
    with _opened(Path(directory)) as cache:
        return _stats(Path(directory), cache)


def clear_local_cache(directory: str | Path) -> int:
    """Remove every entry of the local cache at ``directory``; return how many were removed."""
    with _opened(Path(directory)) as cache:
        if cache is None:
            return 0
        return int(cache.clear(retry=True))  # type: ignore[attr-defined]


def prune_local_cache(
    directory: str | Path,
    *,
    older_than: float | None = None,
    max_size: int | None = None,
    now: float | None = None,
) -> PruneResult:
    """Remove entries not used for ``older_than`` seconds, then the least recently used until ``max_size`` bytes.

    "Used" is the access time the local tier records (hits are recorded in batches, so it
    may lag by up to 30 seconds). Either bound may be left out.
    """
    directory = Path(directory)
    removed = freed = 0
    with _opened(directory) as cache:
        if cache is None:
            return PruneResult(0, 0, _stats(directory, None))
        rows = cache._sql(  # type: ignore[attr-defined]
            f"SELECT key, access_time, {_ENTRY_BYTES} FROM Cache WHERE raw = 1 ORDER BY access_time"
        ).fetchall()
        total = sum(int(size) for _, _, size in rows)
        cutoff = None if older_than is None else (time.time() if now is None else now) - older_than
        for key, accessed, size in rows:
            too_old = cutoff is not None and accessed < cutoff
            too_big = max_size is not None and total > max_size
            if not (too_old or too_big):
                continue
            if cache.delete(key, retry=True):  # type: ignore[attr-defined]
                removed += 1
                freed += int(size)
                total -= int(size)
        return PruneResult(removed, freed, _stats(directory, cache))


__all__ = ["LocalCacheStats", "PruneResult", "clear_local_cache", "local_cache_stats", "prune_local_cache"]
