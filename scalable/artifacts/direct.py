"""Large local copies that hash and write the same buffers, the writes bypassing the page cache.

Why (docs/benchmarks.md, "Local store"): a buffered write of a large file needs as many
fresh page-cache pages as the file has bytes, plus a copy into them, and on a loaded or
ballooned VM getting those pages is what made a 1 GiB put take 1.5 to 2.5 hash passes.
Here one thread reads the source into page-aligned buffers, the calling thread hashes each
buffer, and two writer threads ``pwrite`` it with ``O_DIRECT`` (the device reads the buffer
itself: no copy, no page cache). The bytes hashed are the bytes written: the same memory.

Pieces that are not aligned (the tail of the file) are written through a second, buffered
descriptor. A filesystem that refuses ``O_DIRECT`` (tmpfs, some FUSE mounts) raises
:class:`DirectUnsupported` before any byte is written, and the caller copies as usual.
"""

from __future__ import annotations

import mmap
import os
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from scalable.artifacts.callbacks import DEFAULT_CALLBACK, Callback
from scalable.artifacts.digests import format_digest

#: Bytes per buffer (a multiple of every block size ``O_DIRECT`` asks for).
CHUNK = 8 * 1024 * 1024
#: Alignment of the offsets and lengths written with ``O_DIRECT``.
ALIGN = 4096
#: Writes in flight: two keep a virtio disk busy while the next buffer is hashed.
WRITERS = 2
BUFFERS = 6

O_DIRECT = getattr(os, "O_DIRECT", 0)


class DirectUnsupported(OSError):
    """The destination's filesystem (or this platform) does not take ``O_DIRECT`` writes."""


def open_direct(dest: Path) -> tuple[int, int]:
    """Create ``dest`` for writing: an ``O_DIRECT`` descriptor and a buffered one for unaligned pieces."""
    if not O_DIRECT:
        raise DirectUnsupported("O_DIRECT is not available on this platform")
    try:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_DIRECT, 0o644)
    except OSError as exc:
        if isinstance(exc, FileExistsError):
            raise
        raise DirectUnsupported(exc.errno, f"O_DIRECT refused: {exc.strerror}") from None
    try:
        plain = os.open(dest, os.O_WRONLY)
    except BaseException:
        os.close(fd)
        raise
    return fd, plain


def copy_hashing_direct(
    src: BinaryIO,
    direct_fd: int,
    plain_fd: int,
    *,
    callback: Callback = DEFAULT_CALLBACK,
) -> tuple[str, int]:
    """Copy ``src`` to the file behind ``direct_fd``/``plain_fd`` while hashing it; return (digest, size).

    Every buffer is hashed and written, and is reused only once both are done. The first
    failure (of the read, a write or the hash) stops the copy and is raised here.
    """
    import hashlib  # OpenSSL: loaded by the first hash, not by opening a store

    h = hashlib.sha256()
    total = 0
    free: queue.Queue[mmap.mmap] = queue.Queue()
    for _ in range(BUFFERS):
        free.put(mmap.mmap(-1, CHUNK))  # anonymous maps are page-aligned, as O_DIRECT needs
    to_hash: queue.Queue[tuple[mmap.mmap, int] | None] = queue.Queue()
    users: dict[int, int] = {}
    lock = threading.Lock()
    failure: list[BaseException] = []
    stop = threading.Event()
    writers = ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="scalable-direct-write")

    def release(buf: mmap.mmap) -> None:
        with lock:
            users[id(buf)] -= 1
            last = users[id(buf)] == 0
        if last:
            free.put(buf)

    def write(buf: mmap.mmap, n: int, offset: int) -> None:
        try:
            aligned = offset % ALIGN == 0 and n % ALIGN == 0
            fd = direct_fd if aligned else plain_fd
            view = memoryview(buf)[:n]
            try:
                done = 0
                while done < n:
                    done += os.pwrite(fd, view[done:], offset + done)
            finally:
                view.release()
        except BaseException as exc:
            failure.append(exc)
            stop.set()
        finally:
            release(buf)

    def read_all() -> None:
        pending: list[Future[None]] = []
        offset = 0
        try:
            while not stop.is_set():
                buf = free.get()
                if stop.is_set():
                    break
                n = src.readinto(buf)  # type: ignore[attr-defined]
                if not n:
                    free.put(buf)
                    break
                with lock:
                    users[id(buf)] = 2
                to_hash.put((buf, n))
                pending.append(writers.submit(write, buf, n, offset))
                offset += n
            for fut in pending:
                fut.result()
        except BaseException as exc:  # surfaced on the caller's thread below
            failure.append(exc)
            stop.set()
        finally:
            to_hash.put(None)

    reader = threading.Thread(target=read_all, name="scalable-direct-read", daemon=True)
    reader.start()
    try:
        while (item := to_hash.get()) is not None:
            buf, n = item
            if not stop.is_set():
                view = memoryview(buf)[:n]
                h.update(view)
                view.release()
                total += n
                callback.relative_update(n)
            release(buf)
    finally:
        stop.set()
        free.put(mmap.mmap(-1, ALIGN))  # wake the reader if it waits for a buffer
        reader.join()
        writers.shutdown(wait=True)
    if failure:
        raise failure[0]
    return format_digest(h.hexdigest()), total


__all__ = ["DirectUnsupported", "copy_hashing_direct", "open_direct"]
