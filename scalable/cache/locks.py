"""Per-key locks so that concurrent calls with one key, from threads or processes, compute once.

On POSIX a lock is ``flock`` on ``<locks dir>/<key[:2]>/<key>.lock``. ``flock`` locks
belong to an open file, so two threads of one process exclude each other as two
processes do, and the kernel releases the lock of a process that dies: a crashed
computation never leaves a key locked. The holder deletes the file before releasing it;
a waiter that then gets the lock on the deleted file sees that the path no longer names
it and tries again, so two callers can never both hold a key.

Waiting is polling with a growing sleep (1 ms to 50 ms), bounded by a timeout after which
the caller computes anyway: a stuck holder slows others down but never blocks them.
Without ``fcntl`` (Windows) or without a writable directory, locks are per process only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("scalable.cache")

_MAX_SLEEP = 0.05


class KeyLocks:
    """Locks by cache key: across processes under ``directory``, else within this process."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = Path(directory) if directory is not None and fcntl is not None else None
        self._local: dict[str, list[object]] = {}  # key -> [lock, number of callers using it]
        self._guard = threading.Lock()

    @contextlib.contextmanager
    def hold(self, key: str, timeout: float) -> Iterator[bool]:
        """Hold the lock of ``key`` for the ``with`` block; yields False if ``timeout`` s passed first."""
        if self.directory is not None:
            fd = self._acquire_file(key, timeout)
            try:
                yield fd is not None
            finally:
                if fd is not None:
                    self._release_file(key, fd)
            return
        with self._guard:
            slot = self._local.setdefault(key, [threading.Lock(), 0])
            slot[1] += 1  # type: ignore[operator]
        lock: threading.Lock = slot[0]  # type: ignore[assignment]
        acquired = lock.acquire(timeout=max(timeout, 0))
        try:
            yield acquired
        finally:
            if acquired:
                lock.release()
            with self._guard:
                slot[1] -= 1  # type: ignore[operator]
                if slot[1] == 0:
                    del self._local[key]

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / key[:2] / f"{key}.lock"

    def _acquire_file(self, key: str, timeout: float) -> int | None:
        path = self._path(key)
        deadline = time.monotonic() + timeout
        sleep = 0.001
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:
                path.parent.mkdir(parents=True, exist_ok=True)
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() >= deadline:
                    return None
                time.sleep(sleep)
                sleep = min(sleep * 2, _MAX_SLEEP)
                continue
            except BaseException:
                os.close(fd)
                raise
            # Locked: but the holder before us may have deleted this file after we opened it.
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)

    def _release_file(self, key: str, fd: int) -> None:
        try:
            os.unlink(self._path(key))
        except OSError:
            pass
        os.close(fd)  # closing releases the flock


__all__ = ["KeyLocks"]
