"""``ObstoreArtifactStore``: the native transport for ``s3://`` and ``az://`` on obstore.

obstore (Rust ``object_store``) signs requests natively, pools connections and releases the
GIL while it waits, so transfers run at the speed of the network rather than of a Python
event loop. This module supplies the primitives of :mod:`scalable.artifacts.primitives`;
the object layer (refs, trees, commit protocol) is :class:`BaseArtifactStore`'s.

Transfers:

* a file below ``multipart_threshold`` is read once, hashed, and sent as one PUT; a larger one
  is read part by part, each part hashed in order as obstore pulls it into a multipart upload
  with ``part_concurrency`` parts in flight: at most ``(part_concurrency + 1) * part_size``
  bytes in memory per file. A failed or interrupted upload is aborted (obstore aborts the
  multipart upload when its input fails), so nothing becomes visible or lingers.
* a large get fetches ``range_size`` (8 MiB) ranges, ``range_concurrency`` (16) in flight (no
  ``HEAD`` first: the first range's answer gives the size),
  writes each at its offset as it arrives and hashes them in order: at most
  ``range_concurrency + 4`` ranges (160 MiB by default) in memory per file.
* a directory's files move ``max_concurrency`` (64) at a time.
* S3 uploads carry ``x-amz-checksum-sha256``, which the server verifies.

Retries and deadlines: obstore's own retries are off; every call goes through
:func:`~scalable.artifacts.retry.retry_call` with :data:`NATIVE_POLICY` and the store's
:class:`~scalable.artifacts.retry.Deadlines` (each request times out, retries stop at the
operation deadline), then failures become ``ScalableError`` subclasses that name the endpoint
and never a credential.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import obstore
from fsspec.callbacks import Callback
from obstore.exceptions import AlreadyExistsError, PermissionDeniedError, PreconditionError, UnauthenticatedError

from scalable.artifacts.digests import DigestCache, format_digest
from scalable.artifacts.layout import object_path
from scalable.artifacts.obstore_options import NO_RETRIES, NativeConfig, azure_config, client_options, s3_config
from scalable.artifacts.primitives import IncompleteUpload, ObjectStat
from scalable.artifacts.retry import (
    NATIVE_POLICY,
    Deadlines,
    RetryPolicy,
    is_connection_error,
    resolve_deadlines,
    retry_call,
    retry_call_async,
)
from scalable.artifacts.store import BaseArtifactStore, _source_changed
from scalable.artifacts.transport_errors import (
    NO_BUCKET_CODES,
    access_denied,
    bad_bucket_name,
    bucket_not_found,
    safe_reason,
    unavailable,
)
from scalable.artifacts.uris import redact_uri, split_protocol
from scalable.errors import BucketNotFoundError, ScalableError, UnsupportedURIError

T = TypeVar("T")
MiB = 1024 * 1024

#: Schemes this transport serves, and the service each is.
NATIVE_SCHEMES = {"s3": "s3", "s3a": "s3", "az": "azure", "abfs": "azure", "abfss": "azure"}

#: What S3 and Azure accept in a bucket or container name (the services are stricter; this catches typos).
_BUCKET_NAME = re.compile(r"^[a-zA-Z0-9.\-_]{1,255}$")
_STATUS = re.compile(r"status code: (\d{3})")
_TRANSIENT_TEXT = (
    "error sending request",
    "connection refused",
    "connection reset",
    "connection closed",
    "broken pipe",
    "timed out",
    "timeout",
    "operation was canceled",
    "incomplete",
    "slowdown",
    "slow down",
    "dispatch failure",
    "error decoding response body",
    "unexpected eof",
    "error reading a body",
)


def _status(exc: BaseException) -> int | None:
    match = _STATUS.search(str(exc))
    return int(match.group(1)) if match else None


def is_transient_native(exc: BaseException) -> bool:
    """Worth retrying: a connection failure or timeout, a 5xx answer, or throttling."""
    if isinstance(exc, (FileNotFoundError, PermissionError, ScalableError, AlreadyExistsError, PreconditionError)):
        return False
    if isinstance(exc, (PermissionDeniedError, UnauthenticatedError)):
        return False
    status = _status(exc)
    if status is not None:
        return status >= 500 or status in (408, 429)
    if is_connection_error(exc):
        return True
    text = str(exc).lower()
    return any(word in text for word in _TRANSIENT_TEXT)


class _Reader:
    """obstore's ``ReadableFile`` with ``readinto``, so the object layer's copy loops can use it.

    A failure mid-read goes through ``translate``, so a server lost while a stream is read
    is a ``StoreUnavailableError`` like any other call's.
    """

    def __init__(self, raw: Any, translate: Callable[[BaseException], BaseException]) -> None:
        self._raw = raw
        self._translate = translate

    def _read(self, n: int | None) -> Any:
        try:
            return self._raw.read() if n is None or n < 0 else self._raw.read(n)
        except BaseException as exc:
            translated = self._translate(exc)
            if translated is exc:
                raise
            raise translated from None

    def read(self, n: int = -1) -> bytes:
        return bytes(self._read(n))

    def readinto(self, b: Any) -> int:
        data = self._read(len(b))
        n = len(data)
        memoryview(b).cast("B")[:n] = memoryview(data).cast("B")
        return n

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return int(self._raw.seek(offset, whence))

    def tell(self) -> int:
        return int(self._raw.tell())

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _SizeDiffers(Exception):
    """The object is not the size its ref records (a large get then fetches it whole)."""


class _Aborted(Exception):
    """Raised into an upload's input so obstore aborts its multipart upload."""


class _StreamingWriter:
    """A write-only file whose bytes become one object on :meth:`close`, or none on :meth:`abort`.

    Up to ``part_size`` bytes are buffered; a small object is one PUT at close. Once more
    arrives, a background multipart upload pulls parts from a queue of two, so memory stays
    at a few parts whatever the size.
    """

    def __init__(self, put: Callable[[Any], Any], put_small: Callable[[bytes], Any], part_size: int) -> None:
        self._put = put
        self._put_small = put_small
        self._part_size = part_size
        self._buf = bytearray()
        self._queue: Any = None
        self._thread: threading.Thread | None = None
        self._error: list[BaseException] = []

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._buf += view
        while len(self._buf) >= self._part_size:
            self._send(bytes(self._buf[: self._part_size]))
            del self._buf[: self._part_size]
        return len(view)

    def _send(self, part: bytes | BaseException | None) -> None:
        import queue

        if self._thread is None:
            self._queue = queue.Queue(maxsize=2)

            def parts() -> Iterator[bytes]:
                while True:
                    item = self._queue.get()
                    if item is None:
                        return
                    if isinstance(item, BaseException):
                        raise item
                    yield item

            def run() -> None:
                try:
                    self._put(parts())
                except BaseException as exc:
                    self._error.append(exc)

            self._thread = threading.Thread(target=run, name="scalable-obstore-upload", daemon=True)
            self._thread.start()
        while True:
            if self._error:
                raise self._error[0]
            try:
                self._queue.put(part, timeout=0.5)
                return
            except Exception:
                if self._thread is not None and not self._thread.is_alive():
                    raise self._error[0] if self._error else ConnectionError("the upload stopped") from None

    def close(self) -> None:
        if self._thread is None:
            self._put_small(bytes(self._buf))
            return
        if self._buf:
            self._send(bytes(self._buf))
            self._buf = bytearray()
        self._send(None)
        self._thread.join()
        if self._error:
            raise self._error[0]

    def abort(self) -> None:
        if self._thread is None:
            return
        try:
            self._send(_Aborted("the write was interrupted"))
        except BaseException:
            pass
        self._thread.join(timeout=60)


class ObstoreArtifactStore(BaseArtifactStore):
    """Artifacts in S3 (``s3://bucket/prefix``) or Azure Blob (``az://container/prefix``) via obstore.

    ``storage_options`` are the ones s3fs or adlfs take (see
    :mod:`scalable.artifacts.obstore_options`); an option this transport cannot honour raises
    ``UnsupportedURIError`` suggesting ``transport="fsspec"``. ``deadlines`` bound every call
    in time; ``create=True`` creates a missing bucket (through the fsspec driver, which must
    be installed for that).
    """

    default_max_concurrency = 64
    #: Options of this store (not of the service) that ``build_artifact_store`` accepts.
    store_options = (
        "part_size",
        "multipart_threshold",
        "part_concurrency",
        "range_size",
        "range_concurrency",
        "deadlines",
    )

    multipart_threshold = 32 * MiB
    part_size = 16 * MiB
    part_concurrency = 8
    #: Large gets: smaller ranges than parts, more of them in flight (measured: bench/bench_object_stores.py).
    range_size = 8 * MiB
    range_concurrency = 16

    def __init__(
        self,
        uri: str,
        *,
        storage_options: dict[str, Any] | None = None,
        max_concurrency: int | None = None,
        digest_cache: DigestCache | None = None,
        create: bool = False,
        retry_policy: RetryPolicy = NATIVE_POLICY,
        deadlines: Deadlines | dict[str, float] | None = None,
        part_size: int | None = None,
        multipart_threshold: int | None = None,
        part_concurrency: int | None = None,
        keep_versions: int | None = None,
        range_size: int | None = None,
        range_concurrency: int | None = None,
    ) -> None:
        protocol, rest = split_protocol(uri)
        if protocol not in NATIVE_SCHEMES:
            raise UnsupportedURIError(
                f"the native transport serves {', '.join(sorted(NATIVE_SCHEMES))}://, not {redact_uri(uri)!r}: "
                "use transport='fsspec'"
            )
        bucket, _, prefix = rest.partition("/")
        if "@" in bucket or not bucket:
            raise UnsupportedURIError(
                f"{redact_uri(uri)!r} does not name a bucket plainly (or carries credentials in the URI, which "
                f"{protocol}:// does not take): give credentials as storage options (key=..., secret=...; the "
                "manifest's storage_options) or in the environment, and use s3://bucket/prefix"
            )
        self.protocol = protocol
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.storage_options = dict(storage_options or {})
        self.deadlines = resolve_deadlines(deadlines)
        self.retry_policy = retry_policy
        self.create = create
        if part_size is not None:
            if part_size < 5 * MiB:
                raise UnsupportedURIError("part_size must be at least 5 MiB (5242880 bytes), S3's smallest part")
            self.part_size = part_size
        if multipart_threshold is not None:
            self.multipart_threshold = max(1, multipart_threshold)
        if part_concurrency is not None:
            self.part_concurrency = max(1, part_concurrency)
        if range_size is not None:
            if range_size < MiB:
                raise UnsupportedURIError("range_size must be at least 1 MiB (1048576 bytes): give a larger range_size")
            self.range_size = range_size
        if range_concurrency is not None:
            self.range_concurrency = max(1, range_concurrency)
        self.native: NativeConfig = (
            s3_config(bucket, self.storage_options, protocol)
            if NATIVE_SCHEMES[protocol] == "s3"
            else azure_config(bucket, self.storage_options, protocol)
        )
        self._build_clients()
        self._root_checked = False
        super().__init__(
            redact_uri(uri), max_concurrency=max_concurrency, digest_cache=digest_cache, keep_versions=keep_versions
        )

    def _build_clients(self) -> None:
        from obstore.store import AzureStore, S3Store

        cls: Any = S3Store if self.native.service == "s3" else AzureStore
        endpoint = (
            self.native.config.get("endpoint")
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
        )
        self._endpoint_url = endpoint
        self._root: Any = None
        prefix = self.prefix or None
        self._uploads: Any = None
        if self.native.service == "s3":  # gc lists and aborts unfinished multipart uploads through botocore
            from scalable.artifacts.s3_uploads import MultipartUploads

            self._uploads = MultipartUploads(self.native, self.bucket, self.prefix, endpoint, self.deadlines)
        try:
            #: For lookups and small requests (short timeouts), and for transfers (stall timeouts).
            self._meta = cls(
                prefix=prefix,
                config=self.native.config,
                client_options=client_options(endpoint, self.deadlines, transfer=False),
                retry_config=NO_RETRIES,
            )
            self._data = cls(
                prefix=prefix,
                config=self.native.config,
                client_options=client_options(endpoint, self.deadlines, transfer=True),
                retry_config=NO_RETRIES,
            )
        except Exception as exc:
            raise UnsupportedURIError(
                f"cannot set up the native {self.protocol}:// transport for {self.bucket!r}: "
                f"{self._safe_reason(exc)}; check the storage options and the AWS_*/AZURE_STORAGE_* variables, "
                "or pass transport='fsspec'"
            ) from None

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_meta", None)
        state.pop("_data", None)
        state.pop("_root", None)
        state.pop("_uploads", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._build_clients()

    # ------------------------------------------------------------------ errors
    @property
    def endpoint(self) -> str:
        """Where requests go, for messages: an endpoint URL or the service's name, no secrets."""
        return self.native.endpoint

    def _safe_reason(self, exc: BaseException) -> str:
        """The first line of obstore's error without query strings, or only its type if it repeats a secret."""
        config = {k: v for k, v in self.native.config.items() if k not in ("bucket", "container_name", "endpoint")}
        return safe_reason(exc, [self.storage_options, config])

    def _translate(self, what: str, exc: BaseException) -> BaseException:
        if isinstance(exc, (ScalableError, IsADirectoryError, NotADirectoryError)):
            return exc
        text = str(exc)
        if any(code in text for code in NO_BUCKET_CODES):
            return self._no_bucket()
        if isinstance(exc, FileNotFoundError):
            return exc
        status = _status(exc)
        if isinstance(exc, (PermissionDeniedError, UnauthenticatedError, PermissionError)) or status in (401, 403):
            return access_denied(self.endpoint, what, self.uri, self._safe_reason(exc))
        if is_transient_native(exc):
            return unavailable(self.endpoint, what, self.uri, self._safe_reason(exc), deadline=self.deadlines.operation)
        if status == 400 and "bucket" in text.lower():
            return bad_bucket_name(self.endpoint, what, self.uri, self._safe_reason(exc), refused=True)
        return exc

    def _no_bucket(self) -> BucketNotFoundError:
        return bucket_not_found(self.bucket, self.uri, self.endpoint, self.protocol)

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """One operation: bucket checked once, transient failures retried until the deadline, errors translated."""
        self._ensure_root()
        return self._bare_call(what, fn)

    def _bare_call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return retry_call(
                fn,
                policy=self.retry_policy,
                what=f"{what} {self.uri}",
                transient=is_transient_native,
                deadline=self.deadlines.operation,
            )
        except BaseException as exc:
            translated = self._translate(what, exc)
            if translated is exc:
                raise
            raise translated from None

    def _ensure_root(self) -> None:
        if self._root_checked:
            return
        if not _BUCKET_NAME.match(self.bucket):
            raise UnsupportedURIError(
                f"cannot use {self.uri}: {self.bucket!r} is not a name {self.endpoint} would accept for a bucket "
                "(letters, digits, '.', '-', '_'); check the bucket name in the URI"
            )

        def probe() -> None:
            for _ in obstore.list(self._meta, prefix=None, chunk_size=1):
                break

        try:
            self._bare_call("check the bucket", probe)
        except BucketNotFoundError:
            if not self.create:
                raise
            self._create_bucket()
        self._root_checked = True

    def _create_bucket(self) -> None:
        import fsspec

        options = dict(self.storage_options)
        if self.protocol in ("s3", "s3a"):
            options.setdefault("client_kwargs", {})
        try:
            fs = fsspec.filesystem(self.protocol, skip_instance_cache=True, **options)
            fs.mkdir(self.bucket)
        except ImportError:
            raise UnsupportedURIError(
                f"create=True needs the fsspec driver of {self.protocol}:// to create bucket {self.bucket!r}: "
                "install it (pip install 'scalable[s3]' or 'scalable[azure]'), or create the bucket first"
            ) from None
        except Exception as exc:
            raise self._translate("create the bucket", exc) from None

    # ------------------------------------------------------------------ primitives: small requests
    def _write_bytes(self, data: bytes, rel: str) -> None:
        body = bytes(data)
        self._call("write", lambda: obstore.put(self._meta, rel, body, use_multipart=False))

    def _create_exclusive(self, data: bytes, rel: str) -> bool:
        """A conditional put (S3/Azure ``If-None-Match: *``): ``True`` if written, ``False`` if there."""
        body = bytes(data)
        try:
            self._call("write", lambda: obstore.put(self._meta, rel, body, mode="create", use_multipart=False))
        except (AlreadyExistsError, PreconditionError):
            return False
        return True

    def _read_bytes(self, rel: str) -> bytes:
        return self._call("read", lambda: bytes(obstore.get(self._data, rel).bytes()))

    def _read_many(self, rels: Sequence[str]) -> dict[str, bytes]:
        if not rels:
            return {}
        self._ensure_root()

        def one(rel: str) -> tuple[str, bytes | None]:
            try:
                return rel, self._read_bytes(rel)
            except FileNotFoundError:
                return rel, None

        found = self._pool_map(one, list(rels))
        return {rel: data for rel, data in found if data is not None}

    def _read_range(self, rel: str, start: int, n: int) -> bytes:
        if n <= 0:
            return b""
        return self._call("read", lambda: bytes(obstore.get_range(self._data, rel, start=start, length=n)))

    def _head(self, rel: str) -> ObjectStat | None:
        try:
            meta = self._call("look up", lambda: obstore.head(self._meta, rel))
        except FileNotFoundError:
            return None
        return ObjectStat(size=int(meta["size"]), mtime=meta["last_modified"])

    def _exists(self, rel: str) -> bool:
        return self._head(rel) is not None

    def _list_stats(self, rel_dir: str) -> dict[str, ObjectStat]:
        base = rel_dir.strip("/")
        cut = len(base) + 1 if base else 0

        def listing() -> dict[str, ObjectStat]:
            out: dict[str, ObjectStat] = {}
            for chunk in obstore.list(self._meta, prefix=base or None, chunk_size=1000):
                for meta in chunk:
                    path = meta["path"]
                    if base and not path.startswith(base + "/"):
                        continue  # "a/bc" under prefix "a/b"
                    out[path[cut:]] = ObjectStat(
                        size=int(meta["size"]), mtime=meta["last_modified"], etag=meta.get("e_tag")
                    )
            return out

        try:
            return self._call("list", listing)
        except FileNotFoundError:
            return {}

    def _list_files(self, rel_dir: str) -> list[str]:
        return sorted(self._list_stats(rel_dir))

    def _has_children(self, rel_dir: str) -> bool:
        base = rel_dir.strip("/")

        def probe() -> bool:
            for chunk in obstore.list(self._meta, prefix=base or None, chunk_size=10):
                if any(m["path"].startswith(base + "/") for m in chunk):
                    return True
            return False

        return self._call("list", probe)

    def _remove(self, rel: str, *, recursive: bool = False) -> None:
        paths = [rel]
        if recursive:
            paths += [f"{rel.rstrip('/')}/{p}" for p in self._list_files(rel)]

        def delete() -> None:
            for start in range(0, len(paths), 1000):
                batch = paths[start : start + 1000]
                try:
                    obstore.delete(self._meta, batch if len(batch) > 1 else batch[0])
                except FileNotFoundError:
                    # Azure's bulk delete refuses a missing blob: delete the rest one by one.
                    for path in batch:
                        try:
                            obstore.delete(self._meta, path)
                        except FileNotFoundError:
                            pass

        self._call("delete", delete)

    def _copy_within(self, src: str, dst: str) -> None:
        """A server-side copy (S3 CopyObject, Azure Copy Blob): no bytes pass through this machine."""
        self._call("copy", lambda: obstore.copy(self._meta, src, dst, overwrite=True))

    def _server_copy_from(self, other: BaseArtifactStore, src_rel: str, dst_rel: str) -> bool:
        """Copy ``src_rel`` of ``other`` to ``dst_rel`` here inside the service (S3 CopyObject, Azure Copy Blob).

        Only when both stores are in one bucket (container) of one endpoint and account;
        otherwise nothing is done and ``False`` is returned, and the caller moves the bytes.
        """
        if not isinstance(other, ObstoreArtifactStore):
            return False
        mine = (self.native.service, self.bucket, self._endpoint_url, self.native.config)
        if (other.native.service, other.bucket, other._endpoint_url, other.native.config) != mine:
            return False
        if self._root is None:
            cls: Any = type(self._data)
            self._root = cls(
                prefix=None,
                config=self.native.config,
                client_options=client_options(self._endpoint_url, self.deadlines, transfer=True),
                retry_config=NO_RETRIES,
            )
        src = f"{other.prefix}/{src_rel}" if other.prefix else src_rel
        dst = f"{self.prefix}/{dst_rel}" if self.prefix else dst_rel
        self._call("copy", lambda: obstore.copy(self._root, src, dst, overwrite=True))
        return True

    def _list_incomplete_uploads(self, rel_dir: str) -> list[IncompleteUpload]:
        """S3: unfinished multipart uploads under ``rel_dir`` (botocore); Azure: none listed (blocks expire)."""
        if self._uploads is None:
            return []
        self._ensure_root()
        return self._uploads.list(rel_dir)  # type: ignore[no-any-return]

    def _abort_upload(self, upload: IncompleteUpload) -> None:
        if self._uploads is not None:
            self._uploads.abort(upload)

    # ------------------------------------------------------------------ primitives: streams
    @contextmanager
    def _open_write(self, rel: str) -> Iterator[Any]:
        self._ensure_root()
        writer = _StreamingWriter(
            lambda parts: obstore.put(
                self._data, rel, parts, chunk_size=self.part_size, max_concurrency=self.part_concurrency
            ),
            lambda data: self._bare_call("write", lambda: obstore.put(self._data, rel, data, use_multipart=False)),
            self.part_size,
        )
        try:
            yield writer
        except BaseException:
            writer.abort()
            raise
        try:
            writer.close()
        except BaseException as exc:
            writer.abort()
            translated = self._translate("upload", exc)
            if translated is exc:
                raise
            raise translated from None

    def _open_read(self, rel: str) -> BinaryIO:
        reader = self._call("open", lambda: obstore.open_reader(self._data, rel, buffer_size=4 * MiB))
        return _Reader(reader, lambda exc: self._translate("read", exc))  # type: ignore[return-value]

    # ------------------------------------------------------------------ transfers
    def _write_file(
        self, src: Path, rel: str, *, size: int, callback: Callback, expected: str | None = None
    ) -> tuple[str, int]:
        """Upload ``src`` to ``rel`` from one read that hashes it; with ``expected``, other bytes never complete."""
        self._ensure_root()
        if size < self.multipart_threshold:
            return self._bare_call("upload", lambda: self._put_small(src, rel, callback, expected, size))
        return self._bare_call("upload", lambda: self._put_large(src, rel, callback, expected, size))

    def _put_small(
        self, src: Path, rel: str, callback: Callback, expected: str | None = None, size: int | None = None
    ) -> tuple[str, int]:
        with open(src, "rb", buffering=0) as f:
            data = f.read()
        digest = format_digest(hashlib.sha256(data).hexdigest())
        if expected is not None and (digest != expected or len(data) != size):
            raise _source_changed(src)
        obstore.put(self._data, rel, data, use_multipart=False)
        callback.relative_update(len(data))
        return digest, len(data)

    def _put_large(
        self, src: Path, rel: str, callback: Callback, expected: str | None = None, size: int | None = None
    ) -> tuple[str, int]:
        """One read of ``src``: each part is hashed in order as obstore pulls it into the upload.

        With ``expected``, the stream fails after its last part if the bytes hashed otherwise,
        so the multipart upload is aborted instead of completed.
        """
        h = hashlib.sha256()
        total = 0
        reported = 0

        def parts(f: Any) -> Iterator[bytes]:
            nonlocal total, reported
            while chunk := f.read(self.part_size):
                h.update(chunk)
                total += len(chunk)
                callback.relative_update(len(chunk))
                reported += len(chunk)
                yield chunk
            if expected is not None and (format_digest(h.hexdigest()) != expected or total != size):
                raise _source_changed(src)

        try:
            with open(src, "rb", buffering=0) as f:
                obstore.put(
                    self._data,
                    rel,
                    parts(f),
                    chunk_size=self.part_size,
                    max_concurrency=self.part_concurrency,
                )
        except BaseException:
            if reported:
                callback.relative_update(-reported)  # a retry reports the bytes again
            raise
        return format_digest(h.hexdigest()), total

    def _download(self, rel: str, dest: Path, *, size: int, callback: Callback) -> str:
        self._ensure_root()
        if size < self.multipart_threshold:
            return self._bare_call("download", lambda: self._get_small(rel, dest, callback))
        return self._bare_call("download", lambda: self._get_ranges(rel, dest, size, callback))

    def _get_small(self, rel: str, dest: Path, callback: Callback) -> str:
        data = obstore.get(self._data, rel).bytes()
        with open(dest, "wb", buffering=0) as out:
            out.write(data)
        callback.relative_update(len(data))
        return format_digest(hashlib.sha256(data).hexdigest())

    def _get_ranges(self, rel: str, dest: Path, size: int, callback: Callback) -> str:
        """Ranges fetched concurrently and written at their offsets, hashed here in order.

        No ``HEAD`` first: the first range's answer carries the object's size, and one that is not
        the size its ref records is fetched whole instead, so the digest covers what is there.
        """
        step = self.range_size
        starts = list(range(0, size, step))
        h = hashlib.sha256()
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        moved = 0

        def fetch(start: int) -> Any:
            n = min(step, size - start)
            if start == 0:
                got = obstore.get(self._data, rel, options={"range": (0, n)})
                if int(got.meta["size"]) != size:
                    raise _SizeDiffers
                data = got.bytes()
            else:
                data = obstore.get_range(self._data, rel, start=start, length=n)
            if len(data) != n:
                raise ConnectionResetError(f"range {start}+{n} of {rel} ended after {len(data)} bytes")
            view = memoryview(data)
            offset = start
            while view:
                written = os.pwrite(fd, view, offset)
                view, offset = view[written:], offset + written
            return data

        window = self.range_concurrency + 4  # in flight, plus a few done out of order
        try:
            with concurrent.futures.ThreadPoolExecutor(
                max_workers=self.range_concurrency, thread_name_prefix="scalable-obstore-get"
            ) as pool:
                pending: list[concurrent.futures.Future[Any]] = []
                submitted = 0
                try:
                    while submitted < len(starts) or pending:
                        while submitted < len(starts) and len(pending) < window:
                            pending.append(pool.submit(fetch, starts[submitted]))
                            submitted += 1
                        data = pending.pop(0).result()
                        h.update(data)
                        moved += len(data)
                        callback.relative_update(len(data))
                except BaseException:
                    for fut in pending:
                        fut.cancel()
                    raise
        except _SizeDiffers:
            os.close(fd)
            if moved:
                callback.relative_update(-moved)
            return self._get_small(rel, dest, callback)
        except BaseException:
            os.close(fd)
            if moved:
                callback.relative_update(-moved)
            raise
        os.close(fd)
        return format_digest(h.hexdigest())

    def _upload_objects(self, todo: list[tuple[Any, str]], callback: Callback) -> None:
        """A directory's small files as ``put_async`` calls, ``max_concurrency`` in flight on one event loop.

        No Python thread per request: on a machine of few cores, dozens of threads waking for
        each answer cost more than the requests. Large files take the threaded part-by-part path.
        """
        small = [item for item in todo if item[0].stat.st_size < self.multipart_threshold]
        large = [item for item in todo if item[0].stat.st_size >= self.multipart_threshold]
        if len(small) > 1:
            self._ensure_root()
            _run_async(self._put_small_files(small, callback))
        else:
            large += small
        super()._upload_objects(large, callback)

    def _head_then_upload(self, items: list[tuple[Any, str]], callback: Callback) -> bool:
        """Small files: a ``HEAD`` and, if absent, the upload of each, on one event loop (a directory re-put)."""
        small = [item for item in items if item[0].stat.st_size < self.multipart_threshold]
        if len(small) > 1:
            self._ensure_root()
            _run_async(self._put_small_files(small, callback, if_absent=True))
        large = [item for item in items if item[0].stat.st_size >= self.multipart_threshold]
        held = self._present([object_path(d) for _, d in large]) if large else set()
        super()._upload_objects([(f, d) for f, d in large if object_path(d) not in held], callback)
        if len(small) == 1:
            self._upload_absent_one(*small[0], callback)
        return True

    def _upload_absent_one(self, source: Any, digest: str, callback: Callback) -> None:
        rel = object_path(digest)
        if self._head(rel) is None:
            self._write_file(source.local, rel, size=source.stat.st_size, callback=callback, expected=digest)

    async def _put_small_files(self, todo: list[tuple[Any, str]], callback: Callback, if_absent: bool = False) -> None:
        import asyncio

        gate = asyncio.Semaphore(self.max_concurrency)

        async def one(source: Any, digest: str) -> None:
            rel = object_path(digest)
            if if_absent:
                async with gate:
                    try:
                        await self._retrying_async("look up", lambda: obstore.head_async(self._meta, rel))
                        return  # held already: nothing to send
                    except FileNotFoundError:
                        pass
            with open(source.local, "rb", buffering=0) as f:
                data = f.read()
            if len(data) != source.stat.st_size or format_digest(hashlib.sha256(data).hexdigest()) != digest:
                raise _source_changed(source.local)
            async with gate:
                await self._retrying_async(
                    "upload", lambda: obstore.put_async(self._data, rel, data, use_multipart=False)
                )
            callback.relative_update(len(data))

        tasks = [asyncio.ensure_future(one(f, d)) for f, d in todo]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _retrying_async(self, what: str, attempt: Callable[[], Any]) -> Any:
        """:meth:`_bare_call` on an event loop: the same policy, deadline and error translation."""
        try:
            return await retry_call_async(
                attempt,
                policy=self.retry_policy,
                what=f"{what} {self.uri}",
                transient=is_transient_native,
                deadline=self.deadlines.operation,
            )
        except BaseException as exc:
            translated = self._translate(what, exc)
            if translated is exc:
                raise
            raise translated from None

    def _pool_map(self, fn: Callable[[Any], T], items: list[Any]) -> list[T]:
        if len(items) < 2:
            return [fn(item) for item in items]
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(items))) as pool:
            return list(pool.map(fn, items))


def _run_async(coro: Any) -> Any:
    """Run ``coro`` to its end: on a new event loop, or in a thread of its own if this thread runs one."""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="scalable-obstore-loop") as pool:
        return pool.submit(asyncio.run, coro).result()


__all__ = ["NATIVE_SCHEMES", "ObstoreArtifactStore", "is_transient_native"]
