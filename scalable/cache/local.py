"""The local tier: entries in a diskcache on this machine, bounded in size, least recently used out first.

Layout under the cache directory (``SCALABLE_CACHE_DIR``)::

    values/   the diskcache (SQLite index, and one file per entry of 32 KiB or more)
    locks/    per-key lock files of calls computing right now (see :mod:`scalable.cache.locks`)

Eviction: diskcache's own least-recently-used policy writes the access time on every
hit, which turns each read into a write transaction (70 to 150 µs instead of 10 µs here).
This tier registers the same policy without that write (``scalable-lru``: ordered by
``access_time``) and records hits itself, in batches: at most every 30 s or every 256
keys, and before any eviction, one transaction refreshes the access times of the keys
hit since. A hit therefore costs one SQLite read. When a write takes the cache past its
size limit, entries are removed least recently used first, one at a time, never the one
just written (diskcache's own culling drops ten rows at once after the insert, which in
a small cache can be the new entry itself).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from pathlib import Path

import diskcache

from scalable.cache.errors import CacheDirectoryError

log = logging.getLogger("scalable.cache")

POLICY = "scalable-lru"
diskcache.EVICTION_POLICY.setdefault(
    POLICY,
    {
        "init": "CREATE INDEX IF NOT EXISTS Cache_access_time ON Cache (access_time)",
        "get": None,
        "cull": "SELECT {fields} FROM Cache ORDER BY access_time LIMIT ?",
    },
)

_TOUCH = "UPDATE Cache SET access_time = ? WHERE key = ? AND raw = 1"
_OLDEST = "SELECT key FROM Cache WHERE raw = 1 ORDER BY access_time LIMIT ?"


class LocalTier:
    """One cache directory. Every method but the constructor degrades (logs) instead of raising."""

    touch_interval = 30.0
    touch_batch = 256

    def __init__(self, directory: Path, size_limit: int, origin: str = "default") -> None:
        self.directory = Path(directory)
        self.values_dir = self.directory / "values"
        self.locks_dir = self.directory / "locks"
        try:
            self.values_dir.mkdir(parents=True, exist_ok=True)
            if not os.access(self.values_dir, os.W_OK):
                raise PermissionError(f"no write permission on {self.values_dir}")
            # cull_limit=0: diskcache's own culling removes 10 rows at a time after an insert,
            # the new one included in a small cache; this tier evicts one by one instead.
            self.cache = diskcache.Cache(
                str(self.values_dir), size_limit=size_limit, eviction_policy=POLICY, tag_index=True, cull_limit=0
            )
        except Exception as exc:
            raise CacheDirectoryError(
                f"cannot use {self.directory} as the local cache directory (from {origin}): "
                f"{type(exc).__name__}: {exc}. Set SCALABLE_CACHE_DIR to a writable directory, "
                "or pass local_dir= to @cacheable or configure_cache()"
            ) from exc
        self.size_limit = size_limit
        self._write_failures = 0
        self._failures_lock = threading.Lock()
        self._touched: set[str] = set()
        self._last_flush = time.monotonic()
        _open_tiers.add(self)

    def get(self, key: str) -> bytes | None:
        """The entry at ``key``, or None (a miss, or a read that failed: logged)."""
        try:
            data = self.cache.get(key)
        except Exception as exc:
            log.warning("local cache %s: reading %s failed (%s); treating it as a miss", self.directory, key, exc)
            return None
        if data is not None:
            self._touched.add(key)
            if len(self._touched) >= self.touch_batch or time.monotonic() - self._last_flush > self.touch_interval:
                self.flush_touches()
        return data

    def set(self, key: str, data: bytes, tag: str | None = None) -> bool:
        """Store an entry (evicting the least recently used past the size limit); False if that failed."""
        try:
            self.cache.set(key, data, tag=tag)
        except Exception as exc:
            self._write_failed(key, exc)
            return False
        if self._write_failures:
            with self._failures_lock:
                failures, self._write_failures = self._write_failures, 0
            if failures:
                log.info("local cache %s: writes succeed again after %d failure(s)", self.directory, failures)
        try:
            if self.cache.volume() > self.size_limit:
                self.evict_least_recently_used(keep=key)
        except Exception as exc:  # the entry is stored; only the size bound is late
            log.warning("local cache %s: evicting old entries failed (%s)", self.directory, exc)
        return True

    def _write_failed(self, key: str, exc: BaseException) -> None:
        """Log a failed write: a warning for the first of a burst (a full disk fails every write), then debug."""
        with self._failures_lock:
            self._write_failures += 1
            first = self._write_failures == 1
        if first:
            log.warning(
                "local cache %s: writing %s failed (%s); results are computed and returned but not cached here "
                "until writes succeed again (free space, or set SCALABLE_CACHE_DIR or SCALABLE_CACHE_SIZE_LIMIT)",
                self.directory,
                key,
                exc,
            )
        else:
            log.debug("local cache %s: writing %s failed again (%s)", self.directory, key, exc)

    def evict_least_recently_used(self, keep: str | None = None, most: int = 64) -> int:
        """Remove entries, least recently used first, until the cache fits its size limit.

        At most ``most`` entries go per call (SQLite does not give back the pages of small
        entries, so a database larger than the limit must not empty the cache), and never
        ``keep``, the entry just written. Returns how many were removed.
        """
        self.flush_touches()
        removed = 0
        while removed < most and self.cache.volume() > self.size_limit:
            rows = self.cache._sql(_OLDEST, (most,)).fetchall()
            candidates = [k for (k,) in rows if k != keep]
            if not candidates:
                break
            for candidate in candidates:
                if removed >= most or self.cache.volume() <= self.size_limit:
                    break
                if self.cache.delete(candidate):
                    removed += 1
        if removed:
            log.debug("local cache %s: evicted %d least recently used entries", self.directory, removed)
        return removed

    def delete(self, key: str) -> None:
        """Remove the entry at ``key`` (a missing one is fine)."""
        try:
            self.cache.delete(key)
        except Exception as exc:
            log.warning("local cache %s: deleting %s failed (%s)", self.directory, key, exc)

    def evict(self, tag: str) -> int:
        """Remove every entry stored with ``tag``; how many were removed."""
        return int(self.cache.evict(tag))

    def flush_touches(self) -> None:
        """Record the access time of the keys hit since the last flush (one transaction)."""
        touched, self._touched = self._touched, set()
        self._last_flush = time.monotonic()
        if not touched:
            return
        now = time.time()
        try:
            with self.cache.transact(retry=True):
                self.cache._con.executemany(_TOUCH, [(now, key) for key in touched])
        except Exception as exc:  # only eviction order is at stake
            log.debug("local cache %s: refreshing access times failed (%s)", self.directory, exc)

    def volume(self) -> int:
        """Bytes on disk (as diskcache estimates them)."""
        return int(self.cache.volume())

    def close(self) -> None:
        """Flush pending access times and close the database connection."""
        self.flush_touches()
        self.cache.close()


_open_tiers: weakref.WeakSet[LocalTier] = weakref.WeakSet()
_exit_lock = threading.Lock()


@atexit.register
def _flush_at_exit() -> None:
    with _exit_lock:
        for tier in list(_open_tiers):
            try:
                tier.flush_touches()
            except Exception:
                pass


__all__ = ["POLICY", "LocalTier"]
