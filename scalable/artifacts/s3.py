"""``S3ArtifactStore``: the fsspec store, with concurrent multipart transfers for large files.

A large put reads the local file once, part by part: each part is hashed in order on the
calling thread while earlier parts upload concurrently (``max_concurrency`` in flight) as
one S3 multipart upload, sent through s3fs's own client so credentials, endpoint and
options are exactly the filesystem's. A part that fails transiently is retried with
jittered backoff; if the put fails for good or is interrupted, the multipart upload is
aborted on the server, so no parts linger and nothing becomes visible (the base class
commits the ref only after the upload returns).

A large get fetches ranges concurrently, writes each at its offset in the destination and
hashes them in order as they arrive, holding a bounded number of out-of-order parts in
memory, so the file is never read back to be verified.

Small files take the inherited paths, except that a directory's small files are sent as
concurrent single PUTs, and lookups ask S3 once (s3fs adds a HEAD before each GET and a
listing after each missing HEAD).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import inspect
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fsspec.asyn import sync
from fsspec.callbacks import Callback
from fsspec.spec import AbstractFileSystem

from scalable.artifacts.digests import DigestCache, SourceFile, digest_bytes, format_digest
from scalable.artifacts.fsspec_store import FsspecArtifactStore
from scalable.artifacts.layout import object_path
from scalable.artifacts.primitives import IncompleteUpload
from scalable.artifacts.retry import Deadlines, RetryPolicy, http_status, retry_call_async
from scalable.artifacts.store import _source_changed

log = logging.getLogger("scalable.artifacts")

MiB = 1024 * 1024
#: S3's limits: at most 10,000 parts, each at least 5 MiB except the last.
MAX_PARTS = 10_000
MIN_PART_SIZE = 5 * MiB
#: How long an interrupted transfer waits for its in-flight requests to wind down.
_CANCEL_WAIT_SECONDS = 30.0
#: A response body that broke off mid-way: worth another try, like a reset connection.
Future = concurrent.futures.Future


class _SizeChanged(Exception):
    """The stored object is not the size its ref records (ranged reads cannot prove its digest)."""


class _PartBody:
    """A part's bytes as a request body that nobody copies.

    Given a ``bytes``-like body, aiohttp slices it whole and asyncio copies what the socket
    did not take at once into its own buffer: two fresh copies of every part. This file-like
    view hands out ``memoryview`` slices instead: botocore reads it (signature, checksum) and
    seeks back, aiohttp streams it in chunks, and a retried request seeks it to the start.
    """

    CHUNK = 256 * 1024

    def __init__(self, data: memoryview) -> None:
        self._view = data
        self._pos = 0

    def __len__(self) -> int:
        return len(self._view) - self._pos

    def read(self, n: int | None = -1) -> memoryview | bytes:
        end = len(self._view) if n is None or n < 0 else min(len(self._view), self._pos + n)
        chunk = self._view[self._pos : end]
        self._pos = end
        return chunk if len(chunk) else b""

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, min(base + offset, len(self._view)))
        return self._pos

    def tell(self) -> int:
        return self._pos

    def seekable(self) -> bool:
        return True

    def __aiter__(self) -> AsyncIterator[memoryview | bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[memoryview | bytes]:
        while chunk := self.read(self.CHUNK):
            yield chunk


class S3ArtifactStore(FsspecArtifactStore):
    """Artifacts in S3 (``s3://bucket/prefix``), with concurrent multipart puts and ranged gets.

    Files of ``multipart_threshold`` bytes or more move in parts of ``part_size`` bytes
    (grown when needed to stay within S3's 10,000 parts), ``max_concurrency`` at a time.
    The store's large transfers share ``2 * max_concurrency`` part buffers, so a directory
    get of many large files holds about ``2 * max_concurrency * part_size`` bytes, not that
    much per file.
    """

    #: Options of this store (not of s3fs) that ``build_artifact_store`` accepts.
    store_options = ("part_size", "multipart_threshold", "deadlines")

    multipart_threshold = 16 * MiB
    part_size = 16 * MiB

    def __init__(
        self,
        uri: str,
        *,
        storage_options: dict[str, Any] | None = None,
        fs: AbstractFileSystem | None = None,
        max_concurrency: int | None = None,
        digest_cache: DigestCache | None = None,
        create: bool = False,
        retry_policy: RetryPolicy | None = None,
        part_size: int | None = None,
        multipart_threshold: int | None = None,
        keep_versions: int | None = None,
        deadlines: Deadlines | dict[str, float] | None = None,
    ) -> None:
        super().__init__(
            uri,
            storage_options=storage_options,
            fs=fs,
            max_concurrency=max_concurrency,
            digest_cache=digest_cache,
            create=create,
            retry_policy=retry_policy,
            keep_versions=keep_versions,
            deadlines=deadlines,
        )
        if part_size is not None:
            if part_size < MIN_PART_SIZE:
                raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (5 MiB, S3's minimum)")
            self.part_size = part_size
        if multipart_threshold is not None:
            self.multipart_threshold = max(1, multipart_threshold)
        # Recent s3fs sends a HEAD before each GET of cat_file unless told to read in one go.
        cat_params = inspect.signature(self.fs._cat_file).parameters
        if "max_concurrency" in cat_params:
            self._read_options = {"max_concurrency": 1}
        self._part_buffers = threading.Semaphore(2 * self.max_concurrency)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        del state["_part_buffers"]  # a lock: per process
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._part_buffers = threading.Semaphore(2 * self.max_concurrency)

    # ------------------------------------------------------------------ plumbing
    def _split(self, rel: str) -> tuple[str, str]:
        bucket, key, _ = self.fs.split_path(self._full(rel))
        return bucket, key

    def _s3(self, what: str, method: str, **kwargs: Any) -> Any:
        """One S3 request through s3fs's client: bucket checked, retried, errors translated."""
        return self._call(what, lambda: sync(self.fs.loop, self.fs._call_s3, method, **kwargs))

    def _run(self, coro: Coroutine[Any, Any, Any]) -> Future[Any]:
        """Start ``coro`` on the filesystem's event loop; a future for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.fs.loop)

    async def _retrying(self, what: str, attempt: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        """``retry_call`` for requests made concurrently on the event loop."""
        return await retry_call_async(
            attempt, policy=self.retry_policy, what=what, transient=self._transient, deadline=self.deadlines.operation
        )

    def _part_size_for(self, size: int) -> int:
        smallest = -(-size // MAX_PARTS)
        return max(self.part_size, -(-smallest // MiB) * MiB)

    # ------------------------------------------------------------------ lookups: one request each
    def _exists(self, rel: str) -> bool:
        bucket, key = self._split(rel)
        try:
            self._s3("look up", "head_object", Bucket=bucket, Key=key)
        except FileNotFoundError:
            return False
        return True

    def _has_children(self, rel_dir: str) -> bool:
        bucket, key = self._split(rel_dir)
        try:
            found = self._s3("list", "list_objects_v2", Bucket=bucket, Prefix=f"{key.rstrip('/')}/", MaxKeys=1)
        except FileNotFoundError:
            return False
        return bool(found.get("KeyCount") or found.get("Contents"))

    # ------------------------------------------------------------------ put
    def _write_file(
        self, src: Path, rel: str, *, size: int, callback: Callback, expected: str | None = None
    ) -> tuple[str, int]:
        if size < self.multipart_threshold:
            return super()._write_file(src, rel, size=size, callback=callback, expected=expected)
        self._ensure_root()
        return self._translate("upload", lambda: self._multipart_put(src, rel, size, callback, expected))

    def _multipart_put(
        self, src: Path, rel: str, size: int, callback: Callback, expected: str | None = None
    ) -> tuple[str, int]:
        full = self._full(rel)
        bucket, key = self._split(rel)
        upload_id = self._s3("start a multipart upload", "create_multipart_upload", Bucket=bucket, Key=key)["UploadId"]
        try:
            digest, total, parts = self._upload_parts(src, bucket, key, upload_id, self._part_size_for(size), callback)
            if expected is not None and (digest != expected or total != size):
                raise _source_changed(src)  # never complete bytes under a digest they do not have
            self._s3(
                "finish a multipart upload",
                "complete_multipart_upload",
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            self._abort_multipart(bucket, key, upload_id)
            raise
        finally:
            self._invalidate(full)
        return digest, total

    def _upload_parts(
        self, src: Path, bucket: str, key: str, upload_id: str, part_size: int, callback: Callback
    ) -> tuple[str, int, list[dict[str, Any]]]:
        """Read ``src`` once; hash each part in order while up to ``max_concurrency`` upload."""
        h = hashlib.sha256()
        total = 0
        parts: list[dict[str, Any]] = []
        inflight: dict[Future[Any], tuple[bytearray, int]] = {}
        spare: list[bytearray] = []
        made = 0

        def reap(block: bool) -> None:
            # Collect finished parts: their buffers are free again, their bytes were sent.
            done, _ = concurrent.futures.wait(
                list(inflight), timeout=None if block else 0, return_when=concurrent.futures.FIRST_COMPLETED
            )
            for fut in done:
                buf, n = inflight.pop(fut)
                parts.append(fut.result())  # the part's error, once its retries are spent
                spare.append(buf)
                callback.relative_update(n)

        def next_buffer() -> bytearray:
            nonlocal made
            while not spare:
                # At most one more buffer than parts in flight, within the store's budget.
                if made <= self.max_concurrency and self._part_buffers.acquire(blocking=not inflight):
                    made += 1
                    return bytearray(part_size)
                reap(block=True)
            return spare.pop()

        try:
            with open(src, "rb", buffering=0) as f:
                number = 0
                while True:
                    if inflight:
                        reap(block=False)
                    buf = next_buffer()
                    n = _read_full(f, buf)
                    if n == 0 and number > 0:
                        break
                    while len(inflight) >= self.max_concurrency:
                        reap(block=True)
                    number += 1
                    body = memoryview(buf)[:n]
                    inflight[self._run(self._upload_part(bucket, key, upload_id, number, body))] = (buf, n)
                    h.update(memoryview(buf)[:n])  # while it uploads: both only read the buffer
                    total += n
                    if n < len(buf):
                        break
            while inflight:
                reap(block=True)
        except BaseException:
            _cancel(inflight)
            raise
        finally:
            for _ in range(made):
                self._part_buffers.release()
        parts.sort(key=lambda p: p["PartNumber"])
        return format_digest(h.hexdigest()), total, parts

    async def _upload_part(
        self, bucket: str, key: str, upload_id: str, number: int, data: memoryview
    ) -> dict[str, Any]:
        async def once() -> Any:
            return await self.fs._call_s3(
                "upload_part", Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=_PartBody(data)
            )

        out = await self._retrying(f"upload_part {number} of s3://{bucket}/{key}", once)
        return {"PartNumber": number, "ETag": out["ETag"]}

    def _list_incomplete_uploads(self, rel_dir: str) -> list[IncompleteUpload]:
        bucket, prefix = self._split(rel_dir)
        root = self.root_path.split("/", 1)[1] if "/" in self.root_path else ""
        found: list[IncompleteUpload] = []
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix.rstrip("/") + "/"}
        while True:
            page = self._s3("list multipart uploads", "list_multipart_uploads", **kwargs)
            for up in page.get("Uploads", []) or []:
                rel = up["Key"][len(root) :].lstrip("/") if root else up["Key"]
                started = up.get("Initiated") or datetime.now(timezone.utc)
                found.append(IncompleteUpload(rel, up["UploadId"], started))
            if not page.get("IsTruncated"):
                return found
            kwargs["KeyMarker"] = page.get("NextKeyMarker")
            kwargs["UploadIdMarker"] = page.get("NextUploadIdMarker")

    def _abort_upload(self, upload: IncompleteUpload) -> None:
        bucket, key = self._split(upload.rel)
        self._abort_multipart(bucket, key, upload.upload_id)

    def _abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        try:
            self._s3("abort a multipart upload", "abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)
        except Exception as exc:
            log.warning(
                "could not abort multipart upload %s of s3://%s/%s (%s): its parts take space until it is "
                "aborted (list_multipart_uploads shows it) or a lifecycle rule removes it",
                upload_id,
                bucket,
                key,
                exc,
            )

    # ------------------------------------------------------------------ directories
    def _upload_objects(self, todo: list[tuple[SourceFile, str]], callback: Callback) -> None:
        self._ensure_root()
        self._translate("upload", lambda: self._put_files(todo, callback))

    def _put_files(self, todo: list[tuple[SourceFile, str]], callback: Callback) -> None:
        """A directory's files: small ones read and hashed here, sent as concurrent single PUTs.

        Up to ``4 * max_concurrency`` requests and ``max_concurrency * part_size`` bytes are
        in flight while the next files are read; large files go through :meth:`_write_file`.
        """
        inflight: dict[Future[Any], tuple[SourceFile, int]] = {}
        most_requests, most_bytes = 4 * self.max_concurrency, self.max_concurrency * self.part_size
        pending_bytes = 0

        def reap(block: bool) -> None:
            nonlocal pending_bytes
            done, _ = concurrent.futures.wait(
                list(inflight), timeout=None if block else 0, return_when=concurrent.futures.FIRST_COMPLETED
            )
            for fut in done:
                _, size = inflight.pop(fut)
                fut.result()
                pending_bytes -= size
                callback.relative_update(size)

        try:
            for f, digest in todo:
                rel = object_path(digest)
                if f.stat.st_size >= self.multipart_threshold:
                    self._write_file(f.local, rel, size=f.stat.st_size, callback=callback, expected=digest)
                    continue
                while inflight and (len(inflight) >= most_requests or pending_bytes + f.stat.st_size > most_bytes):
                    reap(block=True)
                data = f.local.read_bytes()
                if digest_bytes(data) != digest:  # checked before it is sent: a digest name is always right
                    raise _source_changed(f.local)
                inflight[self._run(self._put_object(*self._split(rel), data))] = (f, len(data))
                pending_bytes += len(data)
                if len(inflight) > 1:
                    reap(block=False)
            while inflight:
                reap(block=True)
        except BaseException:
            _cancel(inflight)
            raise
        finally:
            for folder in {self._full(object_path(d)).rsplit("/", 1)[0] for _, d in todo}:
                self.fs.invalidate_cache(folder)

    async def _put_object(self, bucket: str, key: str, data: bytes) -> None:
        async def once() -> Any:
            return await self.fs._call_s3("put_object", Bucket=bucket, Key=key, Body=data)

        await self._retrying(f"put_object s3://{bucket}/{key}", once)

    # ------------------------------------------------------------------ get
    def _download(self, rel: str, dest: Path, *, size: int, callback: Callback) -> str:
        if size < self.multipart_threshold:
            return super()._download(rel, dest, size=size, callback=callback)
        self._ensure_root()
        bucket, key = self._split(rel)
        try:
            return self._translate("download", lambda: self._download_ranges(bucket, key, dest, size, callback))
        except _SizeChanged:
            # Not the size its ref records: stream the whole object, so the digest covers
            # every byte it holds and the caller reports the mismatch.
            return super()._download(rel, dest, size=size, callback=callback)

    def _download_ranges(self, bucket: str, key: str, dest: Path, size: int, callback: Callback) -> str:
        """Fetch ranges concurrently, written at their offsets by the fetchers, hashed here in order."""
        part_size = self._part_size_for(size)
        starts = list(range(0, size, part_size))
        limit = 2 * self.max_concurrency  # buffers: in flight, plus parts fetched ahead of the next to hash
        h = hashlib.sha256()
        inflight: dict[Future[Any], int] = {}
        held: dict[int, tuple[bytearray, int]] = {}  # submitted and not hashed yet
        fetched: set[int] = set()  # written to ``dest``, waiting for the parts before them
        spare: list[bytearray] = []
        made = submitted = hashed = 0
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        writers = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="scalable-s3-write")
        try:
            while hashed < len(starts):
                while submitted < len(starts) and len(inflight) < self.max_concurrency:
                    if spare:
                        buf = spare.pop()
                    elif made < limit and self._part_buffers.acquire(blocking=made == 0):
                        buf, made = bytearray(part_size), made + 1
                    else:
                        break
                    start = starts[submitted]
                    n = min(part_size, size - start)
                    fetch = self._get_range(bucket, key, start, n, size, buf, fd, writers)
                    inflight[self._run(fetch)] = submitted
                    held[submitted] = (buf, n)
                    submitted += 1
                # The next part to hash is always in flight or fetched: this never waits on nothing.
                done, _ = concurrent.futures.wait(list(inflight), return_when=concurrent.futures.FIRST_COMPLETED)
                for fut in done:
                    fut.result()
                    fetched.add(inflight.pop(fut))
                while hashed in fetched:
                    fetched.discard(hashed)
                    buf, n = held.pop(hashed)
                    h.update(memoryview(buf)[:n])
                    spare.append(buf)
                    callback.relative_update(n)
                    hashed += 1
        except BaseException:
            _cancel(inflight)
            raise
        finally:
            writers.shutdown(wait=True)  # no write may outlive the descriptor
            os.close(fd)
            for _ in range(made):
                self._part_buffers.release()
        return format_digest(h.hexdigest())

    async def _get_range(
        self,
        bucket: str,
        key: str,
        start: int,
        n: int,
        size: int,
        buf: bytearray,
        fd: int,
        writers: concurrent.futures.Executor,
    ) -> None:
        """Fetch bytes ``[start, start + n)`` into ``buf``, then write them at ``start`` in ``fd``."""
        view = memoryview(buf)

        async def once() -> None:
            try:
                resp = await self.fs._call_s3(
                    "get_object", Bucket=bucket, Key=key, Range=f"bytes={start}-{start + n - 1}"
                )
            except Exception as exc:
                if http_status(exc) == 416:  # the range starts past the end: the object shrank
                    raise _SizeChanged() from exc
                raise
            body = resp["Body"]
            try:
                whole = str(resp.get("ContentRange", "")).rpartition("/")[2]
                if whole.isdigit() and int(whole) != size:
                    raise _SizeChanged()
                got = 0
                while got < n:
                    chunk = await body.read(n - got)
                    if not chunk:
                        break
                    view[got : got + len(chunk)] = chunk
                    got += len(chunk)
                if got != n:
                    raise ConnectionResetError(f"range {start}+{n} of s3://{bucket}/{key} ended after {got} bytes")
            finally:
                body.close()

        await self._retrying(f"get_object bytes {start}+{n} of s3://{bucket}/{key}", once)
        await asyncio.get_running_loop().run_in_executor(writers, _pwrite_full, fd, view[:n], start)


def _read_full(f: Any, buf: bytearray) -> int:
    """Fill ``buf`` from ``f`` (short only at end of file); the number of bytes read."""
    view = memoryview(buf)
    got = 0
    while got < len(buf):
        n = f.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def _pwrite_full(fd: int, data: memoryview, offset: int) -> None:
    while data:
        n = os.pwrite(fd, data, offset)
        data, offset = data[n:], offset + n


def _cancel(inflight: dict[Future[Any], Any]) -> None:
    """Cancel in-flight requests and wait (bounded) until none still runs."""
    for fut in inflight:
        fut.cancel()
    if inflight:
        concurrent.futures.wait(list(inflight), timeout=_CANCEL_WAIT_SECONDS)


__all__ = ["S3ArtifactStore"]
