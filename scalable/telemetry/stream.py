"""``JsonlStream``: an append-only file of events that many writers share safely.

How a line stays whole, whoever writes:

- The file is opened with ``O_APPEND``, and each event (or batch, see
  :meth:`JsonlStream.write_many`) is encoded to one ``bytes`` ending in ``\\n`` and handed
  to one ``os.write``: the kernel puts it at the end of the file in one piece.
- That write happens under an exclusive ``flock`` on the file (plus a thread lock, since
  threads of one process share the open file and ``flock`` does not tell them apart).
  Under the lock a writer also finishes a rare short write, so no other line can land
  in the middle of one.
- A writer killed mid-write (SIGKILL, power loss) can leave a last line without its
  ``\\n``. The next writer notices under the lock (the file does not end with ``\\n``)
  and starts with a newline, so the torn piece stays alone on its line, readers skip it
  and say so, and every later event starts on a line of its own.
- After ``fork`` the child reopens the file: a lock taken through the parent's open file
  would not exclude the parent.

Keeping the file open and checking the end with one ``lseek`` makes a locked event cost
four system calls (lock, lseek, write, unlock); ``write_many`` pays them once per batch.
Secrets in URIs are redacted from the encoded line before it is written.
"""

from __future__ import annotations

import fcntl
import os
import threading
import weakref
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from scalable.telemetry.events import Event
from scalable.telemetry.redact import redact_text

_STREAMS: weakref.WeakSet[JsonlStream] = weakref.WeakSet()


def encode_event(event: Event) -> bytes:
    """``event`` as one line of JSON ending in ``\\n``, with secrets in URIs redacted."""
    line = event.__pydantic_serializer__.to_json(event)
    # Only a URI with credentials or a query string can hold a secret: skip the regex otherwise.
    if b"://" in line and (b"@" in line or b"?" in line):
        line = redact_text(line.decode("utf-8")).encode("utf-8")
    return line + b"\n"


class JsonlStream:
    """Appends events to ``path`` (created with its folders on first write), one line each.

    Safe to share between threads, and to open on the same file from many processes and
    Dask workers at once: no line is lost, torn or interleaved. The file stays open
    between writes; :meth:`close` (or ``with``) releases it. A stream pickles by path, so
    it can be sent to a worker, which opens its own.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._end = -1  # size of the file after our last write; -1 when unknown
        self._closed = False
        self._lock = threading.Lock()
        _STREAMS.add(self)

    def write(self, event: Event) -> None:
        """Append one event as one line."""
        self._append(encode_event(event))

    def write_line(self, line: bytes) -> None:
        """Append one line already encoded as :func:`encode_event` would (JSON, ``\\n``-terminated, redacted).

        For hot paths that build an event's line without the model (the read recorder of
        :mod:`scalable.session.lineage`); the caller owns the encoding and the redaction.
        """
        if not line.endswith(b"\n") or b"\n" in line[:-1]:
            raise ValueError("write_line takes exactly one line ending in a newline")
        self._append(line)

    def write_many(self, events: Iterable[Event]) -> int:
        """Append several events with one lock and one write; return how many.

        Each event is still a line of its own; the batch lands in the file contiguously.
        """
        lines = [encode_event(event) for event in events]
        if lines:
            self._append(b"".join(lines))
        return len(lines)

    def fsync(self) -> None:
        """Ask the OS to put what was written on disk (each write is already visible to readers)."""
        with self._lock:
            if self._fd is not None:
                os.fsync(self._fd)

    def close(self) -> None:
        """Close the file; later writes raise ``ValueError``. Closing twice is fine."""
        with self._lock:
            self._closed = True
            fd, self._fd = self._fd, None
            if fd is not None:
                os.close(fd)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def __enter__(self) -> JsonlStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"JsonlStream({str(self.path)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self.path),))

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # O_RDWR, not O_WRONLY: the torn-line check reads the file's last byte.
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._end = -1
        return self._fd

    def _append(self, data: bytes) -> None:
        with self._lock:
            if self._closed:
                raise ValueError(f"{self.path}: the stream is closed")
            fd = self._fd if self._fd is not None else self._open()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                end = os.lseek(fd, 0, os.SEEK_END)
                # Someone else wrote since our last line: make sure their last line was whole.
                if end != self._end and end > 0 and os.pread(fd, 1, end - 1) != b"\n":
                    data = b"\n" + data
                view = memoryview(data)
                written = os.write(fd, view)
                while written < len(data):  # a short write: finish it before anyone else appends
                    written += os.write(fd, view[written:])
                self._end = end + len(data)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _forget_after_fork(self) -> None:
        # The child must not use the parent's open file (its lock would not exclude the parent)
        # nor a thread lock some parent thread held at the fork.
        self._lock = threading.Lock()
        fd, self._fd = self._fd, None
        self._end = -1
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass


def _after_fork_in_child() -> None:
    for stream in list(_STREAMS):
        stream._forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


__all__ = ["JsonlStream", "encode_event"]
