"""Moving bytes while hashing them: the one read that both copies and digests.

``copy_hashing`` overlaps the write of chunk *n* with the hash of chunk *n* on another
thread (``hashlib`` and file writes both release the GIL), so a put costs about one
read of the source, not a read plus a copy. ``VerifyingReader`` hands bytes out as it
hashes them and raises ``IntegrityError`` instead of signalling end-of-file when the
bytes do not match, so a reader that consumes to the end never finishes on bad data.
"""

from __future__ import annotations

import functools
import io
import os
import queue
import shutil
import threading
from collections.abc import Callable
from typing import Any, BinaryIO

from scalable.artifacts.callbacks import DEFAULT_CALLBACK, Callback
from scalable.artifacts.digests import CHUNK_SIZE, format_digest, sha256
from scalable.errors import IntegrityError

#: Below this size a copy runs inline: a thread costs more than it saves.
THREADED_MIN_BYTES = 4 * CHUNK_SIZE


_WRITEBACK_EVERY = 64 * 1024 * 1024
_SYNC_FILE_RANGE_WRITE = 2


@functools.cache
def _sync_file_range() -> Any:
    """libc's ``sync_file_range``, or ``None``: loaded on the first large write (ctypes and its look-up cost ~5 ms)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return fn


class LocalFileWriter:
    """Writes every byte to a local file, asking the kernel to start write-back as it goes.

    Without the early write-back, a large write leaves a gigabyte of dirty pages for the
    final fsync (or for the kernel's dirty-page throttling) to flush after the hashing is
    done; with it, the disk works while the CPU hashes.
    """

    def __init__(self, f: Any):
        self._fd = f.fileno()
        self._written = 0
        self._flushed = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        total = len(view)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._written += total
        if self._written - self._flushed >= _WRITEBACK_EVERY and (sync := _sync_file_range()) is not None:
            sync(self._fd, self._flushed, self._written - self._flushed, _SYNC_FILE_RANGE_WRITE)
            self._flushed = self._written
        return total

    def fileno(self) -> int:
        return self._fd


def copy_hashing(
    src: BinaryIO,
    write: Callable[[memoryview], Any],
    *,
    size_hint: int | None = None,
    callback: Callback = DEFAULT_CALLBACK,
    chunk_size: int = CHUNK_SIZE,
    buffers: int = 4,
) -> tuple[str, int]:
    """Copy ``src`` to ``write`` in chunks, hashing the same bytes; return (digest, size).

    For large inputs an I/O thread reads each chunk and writes it while this thread
    hashes it, so the copy costs about as long as the hash alone; chunks come from a
    small fixed pool and are recycled once both have finished with them.
    """
    h = sha256()
    total = 0
    if size_hint is not None and size_hint < THREADED_MIN_BYTES:
        while chunk := src.read(chunk_size):
            write(memoryview(chunk))
            h.update(chunk)
            total += len(chunk)
            callback.relative_update(len(chunk))
        return format_digest(h.hexdigest()), total

    free: queue.Queue[bytearray] = queue.Queue()
    for _ in range(buffers):
        free.put(bytearray(chunk_size))
    to_hash: queue.Queue[tuple[bytearray, int] | None] = queue.Queue()
    users: dict[int, int] = {}
    lock = threading.Lock()
    failure: list[BaseException] = []
    stop = threading.Event()

    def release(buf: bytearray) -> None:
        # A chunk is free again once it was both written and hashed.
        with lock:
            users[id(buf)] -= 1
            last = users[id(buf)] == 0
        if last:
            free.put(buf)

    def read_and_write() -> None:
        try:
            while not stop.is_set():
                buf = free.get()
                n = src.readinto(buf)  # type: ignore[attr-defined]
                if not n or stop.is_set():
                    break
                with lock:
                    users[id(buf)] = 2
                to_hash.put((buf, n))
                write(memoryview(buf)[:n])
                release(buf)
        except BaseException as exc:  # surfaced on the caller's thread below
            failure.append(exc)
        finally:
            to_hash.put(None)

    thread = threading.Thread(target=read_and_write, name="scalable-copy-io", daemon=True)
    thread.start()
    try:
        while (item := to_hash.get()) is not None:
            buf, n = item
            h.update(memoryview(buf)[:n])
            total += n
            release(buf)
            callback.relative_update(n)
    finally:
        stop.set()
        free.put(bytearray(0))  # wake the I/O thread if it waits for a chunk
        thread.join()
    if failure:
        raise failure[0]
    return format_digest(h.hexdigest()), total


class _SizedStream(io.RawIOBase):
    """A readable, seekable raw stream of a known size, positioned at ``_pos``."""

    _pos: int
    _size: int

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def _target(self, offset: int, whence: int) -> int:
        return {io.SEEK_SET: offset, io.SEEK_CUR: self._pos + offset, io.SEEK_END: self._size + offset}[whence]


class VerifyingReader(_SizedStream):
    """A read-only stream that checks the bytes it hands out against a digest.

    Reading to the end either returns ``b""`` (all bytes matched ``expected``) or raises
    ``IntegrityError`` (they did not, or there were too few or too many). Seeking is
    allowed; a stream that was seeked is checked by size only when it reaches the end,
    because a partial read cannot prove a whole-object digest.
    """

    def __init__(self, raw: BinaryIO, expected: str, size: int, *, what: str, verify: bool = True):
        super().__init__()
        self._raw = raw
        self._expected = expected
        self._size = size
        self._what = what
        self._verify = verify
        self._hash = sha256()
        self._pos = 0
        self._sequential = True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = self._target(offset, whence)
        if target != self._pos:
            self._raw.seek(target)
            # Back at the start the whole object is read again, so it is verified again.
            self._sequential = target == 0
            self._hash = sha256()
            self._pos = target
        return self._pos

    def readinto(self, b: Any) -> int:
        data = self._raw.read(len(b))
        n = len(data)
        if n == 0:
            self._finish()
            return 0
        if self._pos + n > self._size:
            raise IntegrityError(f"{self._what} has more bytes than the {self._size} recorded at commit")
        if self._sequential:
            self._hash.update(data)
        b[:n] = data
        self._pos += n
        return n

    def _finish(self) -> None:
        if not self._verify:
            return
        if self._pos != self._size:
            raise IntegrityError(
                f"{self._what} is truncated: {self._pos} of {self._size} bytes; "
                "re-put it from its source or restore it from a copy"
            )
        if self._sequential and format_digest(self._hash.hexdigest()) != self._expected:
            raise IntegrityError(
                f"{self._what} does not match its digest {self._expected}: the stored bytes were "
                "altered after commit; re-put it from its source or restore it from a copy"
            )

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()


class RangeReader(_SizedStream):
    """A window ``[offset, offset + size)`` of a seekable stream, as a stream of its own."""

    def __init__(self, raw: BinaryIO, offset: int, size: int):
        super().__init__()
        self._raw = raw
        self._offset = offset
        self._size = size
        self._pos = 0
        raw.seek(offset)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = self._target(offset, whence)
        self._pos = max(0, min(target, self._size))
        self._raw.seek(self._offset + self._pos)
        return self._pos

    def readinto(self, b: Any) -> int:
        want = min(len(b), self._size - self._pos)
        if want <= 0:
            return 0
        data = self._raw.read(want)
        b[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()


def buffered(raw: io.RawIOBase, buffer_size: int = 1024 * 1024) -> BinaryIO:
    """Wrap a raw stream so ``read()``/``readline()`` behave as on an opened file."""
    return io.BufferedReader(raw, buffer_size=buffer_size)  # type: ignore[arg-type,return-value]


#: A verified-first read keeps up to this many bytes in memory, the rest in a temporary file.
SPOOL_IN_MEMORY = 8 * 1024 * 1024


def verified_first(stream: BinaryIO) -> BinaryIO:
    """Read a verifying ``stream`` to its end, then hand back a copy of its bytes from the start.

    The check happens before the caller sees a byte: a mismatch raises ``IntegrityError`` here
    and nothing is returned. The copy is held in memory up to :data:`SPOOL_IN_MEMORY`, then in
    a temporary file that is removed when the returned stream is closed.
    """
    import tempfile  # only here: it imports random, ~3 ms a local ls does not need

    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, prefix="scalable-verify-")  # noqa: SIM115
    try:
        with stream:
            shutil.copyfileobj(stream, spool, 1024 * 1024)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool  # type: ignore[return-value]


__all__ = ["LocalFileWriter", "RangeReader", "VerifyingReader", "buffered", "copy_hashing", "verified_first"]
