"""``FsspecArtifactStore``: artifacts in any fsspec filesystem (S3, GCS, Azure, memory, ...).

Object stores make each object appear whole when its upload completes (a single PUT, or
the completion of a multipart upload), so objects are written straight to their final,
never-reused paths; a failed upload is discarded (the multipart upload aborted) rather
than completed. Filesystems whose files commit on ``close`` whatever happened are
written to ``.scalable/tmp/`` first and moved into place.

Every request goes through :meth:`FsspecArtifactStore._call`, which checks once that the
bucket exists (or creates it with ``create=True``), retries transient failures with
backoff and jitter, and turns what is left into ``ScalableError`` subclasses that name
the endpoint but never the credentials.

fsspec caches directory listings; this store disables that cache on the filesystems it
creates and invalidates it after its own writes, so a listing never misses a commit.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import fsspec
from fsspec.callbacks import Callback
from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from scalable.artifacts.digests import DigestCache
from scalable.artifacts.driver_retries import driver_retries_kept, single_attempt_driver, single_attempt_options
from scalable.artifacts.layout import TMP
from scalable.artifacts.primitives import ObjectStat
from scalable.artifacts.retry import (
    DEFAULT_POLICY,
    NATIVE_POLICY,
    Deadlines,
    RetryPolicy,
    http_status,
    is_transient,
    resolve_deadlines,
    retry_call,
    should_retry,
)
from scalable.artifacts.store import BaseArtifactStore
from scalable.artifacts.transport_errors import (
    INVALID_REQUEST,
    NO_CREDENTIALS,
    access_denied,
    bad_bucket_name,
    bucket_not_found,
    safe_reason,
    service_name,
    unavailable,
)
from scalable.artifacts.uris import redact_uri, split_protocol
from scalable.errors import AccessDeniedError, ScalableError, UnsupportedURIError

T = TypeVar("T")

#: Filesystems whose uploads appear whole or not at all, and can be discarded mid-way.
ATOMIC_UPLOAD_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})


class _AttemptProgress(Callback):
    """Forwards one attempt's progress to ``parent``, and can take it back if the attempt fails."""

    def __init__(self, parent: Callback) -> None:
        super().__init__()
        self._parent = parent
        self._sent = 0

    def relative_update(self, inc: int = 1) -> None:
        self._sent += inc
        self._parent.relative_update(inc)

    def take_back(self) -> None:
        if self._sent:
            self._parent.relative_update(-self._sent)
            self._sent = 0


class FsspecArtifactStore(BaseArtifactStore):
    """Artifacts under ``uri`` (``s3://bucket/prefix``, ``gs://...``, ``az://...``, ``memory://...``).

    ``storage_options`` go to the fsspec filesystem as they are (``endpoint_url``, keys,
    ``client_kwargs``, ...). Pass ``fs`` to reuse a filesystem you already built.
    ``create=True`` creates a missing bucket or container instead of raising
    ``BucketNotFoundError``; ``retry_policy`` bounds the retries of transient failures and
    ``deadlines`` their time. For S3, GCS and Azure filesystems it builds itself, the store
    turns the driver's own retries to one attempt and gives it timeouts from ``deadlines``
    (:mod:`scalable.artifacts.driver_retries`), so its retries are the only ones.
    """

    #: Options of this store (not of the filesystem) that ``build_artifact_store`` accepts.
    store_options: tuple[str, ...] = ("deadlines",)

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
        keep_versions: int | None = None,
        deadlines: Deadlines | dict[str, float] | None = None,
    ) -> None:
        protocol, rest = split_protocol(uri)
        self.protocol = protocol or "file"
        if self.protocol in ATOMIC_UPLOAD_PROTOCOLS and "@" in rest.split("/", 1)[0]:
            # s3fs & co. would take "key:secret@bucket" for a bucket name and echo it in their errors.
            raise UnsupportedURIError(
                f"{redact_uri(uri)!r} carries credentials in the URI, which {self.protocol}:// does not take: "
                "give them as storage options (key=..., secret=...; the manifest's storage_options) or in "
                "the environment (e.g. AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), and drop them from the URI"
            )
        options = {"use_listings_cache": False, **(storage_options or {})}
        self.storage_options = options
        self.deadlines = resolve_deadlines(deadlines)
        #: The driver's retries are turned off, so this store's are the only ones (S3, GCS, Azure).
        self._single_layer = fs is None and self.protocol in ATOMIC_UPLOAD_PROTOCOLS
        try:
            if fs is None and self._single_layer:
                fs = fsspec.filesystem(self.protocol, **single_attempt_options(self.protocol, options, self.deadlines))
                single_attempt_driver(fs, self.protocol, options, self.deadlines)
            self.fs: AbstractFileSystem = fs if fs is not None else fsspec.filesystem(self.protocol, **options)
            self.root_path = self.fs._strip_protocol(uri).rstrip("/")
        except (ValueError, TypeError, KeyError, OSError) as exc:  # adlfs without an account, zip:// of no file...
            raise UnsupportedURIError(
                f"cannot set up the {self.protocol}:// filesystem for {redact_uri(uri)!r}: "
                f"{safe_reason(exc, [options])}; check the URI and its storage options (account, credentials, "
                "endpoint)"
            ) from None
        protocols = {self.fs.protocol} if isinstance(self.fs.protocol, str) else set(self.fs.protocol)
        self._direct_writes = bool(protocols & ATOMIC_UPLOAD_PROTOCOLS)
        self.create = create
        # With the driver's retries off, this layer retries failures to connect too (a restarting server);
        # with the driver's own (a filesystem given as fs=, or retries the user set), it leaves those to it.
        only_layer = self._single_layer and not driver_retries_kept(self.protocol, options)
        self.retry_policy = retry_policy or (NATIVE_POLICY if only_layer else DEFAULT_POLICY)
        self._transient: Callable[[BaseException], bool] = is_transient if only_layer else should_retry
        self._root_checked = not self._direct_writes  # only object stores have buckets to check
        #: Extra keyword arguments of ``cat_file``/``cat`` (a subclass may ask for one request per read).
        self._read_options: dict[str, Any] = {}
        super().__init__(
            redact_uri(uri), max_concurrency=max_concurrency, digest_cache=digest_cache, keep_versions=keep_versions
        )

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if self._single_layer:  # an unpickled filesystem is built anew, with the driver's retries on again
            single_attempt_driver(self.fs, self.protocol, self.storage_options, self.deadlines)

    # ------------------------------------------------------------------ errors
    @property
    def endpoint(self) -> str:
        """Where requests go, for messages: an endpoint URL or the service's name, no secrets."""
        options = self.storage_options
        for candidate in (
            options.get("endpoint_url"),
            (options.get("client_kwargs") or {}).get("endpoint_url"),
            options.get("account_url"),
        ):
            if candidate:
                return redact_uri(str(candidate))
        conn = options.get("connection_string")
        if conn:
            parts = dict(p.split("=", 1) for p in str(conn).split(";") if "=" in p)
            if "BlobEndpoint" in parts:
                return redact_uri(parts["BlobEndpoint"])
            if "AccountName" in parts:
                return f"https://{parts['AccountName']}.blob.core.windows.net"
        if options.get("account_name"):
            return f"https://{options['account_name']}.blob.core.windows.net"
        return service_name(self.protocol)

    @property
    def bucket(self) -> str:
        """The bucket (or container) the store's root is in."""
        return self.root_path.split("/", 1)[0]

    def _reason(self, exc: BaseException) -> str:
        return safe_reason(exc, [self.storage_options])

    def _translate(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn``; turn access and connection failures into ``ScalableError`` subclasses."""
        try:
            return fn()
        except (ScalableError, FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise
        except PermissionError as exc:
            raise self._access_denied(what, exc) from None
        except Exception as exc:
            status = http_status(exc)
            if status in (401, 403) or type(exc).__name__ in NO_CREDENTIALS:
                raise self._access_denied(what, exc) from None
            if type(exc).__name__ in INVALID_REQUEST:
                raise bad_bucket_name(self.endpoint, what, self.uri, self._reason(exc)) from None
            if is_transient(exc):
                deadline = self.deadlines.operation if self._single_layer else None
                raise unavailable(self.endpoint, what, self.uri, self._reason(exc), deadline=deadline) from None
            raise

    def _access_denied(self, what: str, exc: BaseException) -> AccessDeniedError:
        return access_denied(self.endpoint, what, self.uri, self._reason(exc))

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """One request (or a few): bucket checked once, transient failures retried, errors translated."""
        self._ensure_root()
        return self._translate(what, lambda: self._retry(what, fn))

    def _retry(self, what: str, fn: Callable[[], T]) -> T:
        return retry_call(
            fn,
            policy=self.retry_policy,
            what=f"{what} {self.uri}",
            transient=self._transient,
            deadline=self.deadlines.operation,
        )

    def _ensure_root(self) -> None:
        if self._root_checked:
            return
        bucket = self.bucket
        try:
            self._translate("check the bucket", lambda: self._retry("check the bucket", lambda: self.fs.info(bucket)))
        except FileNotFoundError:
            if not self.create:
                raise bucket_not_found(bucket, self.uri, self.endpoint, self.protocol) from None
            self._translate("create the bucket", lambda: self.fs.mkdir(bucket))
        self._root_checked = True

    # ------------------------------------------------------------------ primitives
    def _full(self, rel: str) -> str:
        return f"{self.root_path}/{rel}"

    def _invalidate(self, full: str) -> None:
        self.fs.invalidate_cache(full.rsplit("/", 1)[0])

    @contextmanager
    def _open_write(self, rel: str) -> Iterator[Any]:
        full = self._full(rel)
        target = full if self._direct_writes else self._full(f"{TMP}/{uuid.uuid4().hex}")
        f = self._call("start an upload", lambda: self.fs.open(target, "wb"))
        try:
            yield f
            self._translate("finish an upload", f.close)
        except BaseException:
            if isinstance(f, AbstractBufferedFile):
                try:
                    f.discard()  # aborts a multipart upload on the server
                except Exception:
                    pass
                f.closed = True  # so that nothing completes it on garbage collection
            else:
                f.close()
            self._remove_quietly(rel if self._direct_writes else target[len(self.root_path) + 1 :])
            raise
        if not self._direct_writes:
            self.fs.mv(target, full)
        self._invalidate(full)

    def _write_file(
        self, src: Path, rel: str, *, size: int, callback: Callback, expected: str | None = None
    ) -> tuple[str, int]:
        # The source is local and can be read again: a transient failure retries the whole upload,
        # and takes back the progress the failed attempt reported so the total stays the file's size.
        def attempt() -> tuple[str, int]:
            progress = _AttemptProgress(callback)
            try:
                return BaseArtifactStore._write_file(self, src, rel, size=size, callback=progress, expected=expected)
            except BaseException:
                progress.take_back()
                raise

        return self._call("upload", attempt)

    def _write_bytes(self, data: bytes, rel: str) -> None:
        full = self._full(rel)
        self._call("write", lambda: self.fs.pipe_file(full, data))  # one request: whole or nothing
        self._invalidate(full)

    #: Conditional puts of the services (``pipe_file(mode="create")``): S3 ``If-None-Match: *``,
    #: GCS ``ifGenerationMatch=0``, Azure ``overwrite=False``. Other filesystems check, then write.
    _CONDITIONAL_PUT = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})
    _check_then_write = threading.Lock()

    def _create_exclusive(self, data: bytes, rel: str) -> bool:
        full = self._full(rel)
        if self.protocol not in self._CONDITIONAL_PUT:
            with self._check_then_write:
                if self._exists(rel):
                    return False
                self._write_bytes(data, rel)
                return True

        def put() -> bool:
            try:
                self.fs.pipe_file(full, data, mode="create")
            except (FileExistsError, FileNotFoundError) as exc:
                if isinstance(exc, FileNotFoundError) and http_status(exc) not in (409, 412):
                    raise
                return False
            except Exception as exc:
                if http_status(exc) in (409, 412) or "PreconditionFailed" in type(exc).__name__ + str(exc)[:200]:
                    return False
                raise
            return True

        try:
            return self._call("create", put)
        finally:
            self._invalidate(full)

    def _read_range(self, rel: str, start: int, n: int) -> bytes:
        full = self._full(rel)
        return self._call("read", lambda: self.fs.cat_file(full, start=start, end=start + n))  # type: ignore[no-any-return]

    def _head(self, rel: str) -> ObjectStat | None:
        full = self._full(rel)
        self._invalidate(full)
        try:
            info = self._call("look up", lambda: self.fs.info(full))
        except FileNotFoundError:
            return None
        if info.get("type") != "file":
            return None
        return ObjectStat(int(info.get("size") or 0), _mtime_of(info))

    def _list_stats(self, rel_dir: str) -> dict[str, ObjectStat]:
        base = self._full(rel_dir)
        self.fs.invalidate_cache(base)
        try:
            found = self._call("list", lambda: self.fs.find(base, detail=True))
        except FileNotFoundError:
            return {}
        cut = len(base) + 1
        out: dict[str, ObjectStat] = {}
        for path, info in found.items():
            p = self.fs._strip_protocol(path)
            if p.startswith(base + "/") and info.get("type", "file") == "file":
                tag = info.get("ETag") or info.get("etag") or info.get("generation")
                out[p[cut:]] = ObjectStat(
                    int(info.get("size") or 0), _mtime_of(info), None if tag is None else str(tag)
                )
        return out

    def _copy_within(self, src: str, dst: str) -> None:
        s, d = self._full(src), self._full(dst)
        self._call("copy", lambda: self.fs.copy(s, d))
        self._invalidate(d)

    def _server_copy_from(self, other: BaseArtifactStore, src_rel: str, dst_rel: str) -> bool:
        """Copy ``src_rel`` of ``other`` to ``dst_rel`` here inside the service, if both share one filesystem.

        fsspec hands out one filesystem instance per protocol and options, so stores on the
        same service with the same credentials share it and its server-side ``copy``.
        ``False``: nothing was done, the caller moves the bytes.
        """
        if not isinstance(other, FsspecArtifactStore) or other.fs is not self.fs or self.protocol == "file":
            return False
        s, d = other._full(src_rel), self._full(dst_rel)
        self._call("copy", lambda: self.fs.copy(s, d))
        self._invalidate(d)
        return True

    def _open_read(self, rel: str) -> BinaryIO:
        full = self._full(rel)
        return self._call("open", lambda: self.fs.open(full, "rb"))  # type: ignore[no-any-return]

    def _read_bytes(self, rel: str) -> bytes:
        full = self._full(rel)
        return self._call("read", lambda: self.fs.cat_file(full, **self._read_options))  # type: ignore[no-any-return]

    def _read_many(self, rels: Sequence[str]) -> dict[str, bytes]:
        if not rels:
            return {}
        by_full = {self._full(rel): rel for rel in rels}
        found = self._call("read", lambda: self.fs.cat(list(by_full), on_error="omit", **self._read_options))
        stripped = {self.fs._strip_protocol(k): v for k, v in found.items()}
        return {rel: stripped[full] for full, rel in by_full.items() if full in stripped}

    def _exists(self, rel: str) -> bool:
        full = self._full(rel)
        self._invalidate(full)  # info answers from a cached parent listing when it has one
        try:
            # info, not isfile/exists: those answer False when the service is down.
            return self._call("look up", lambda: self.fs.info(full)).get("type") == "file"
        except FileNotFoundError:
            return False

    def _remove(self, rel: str, *, recursive: bool = False) -> None:
        full = self._full(rel)

        def remove() -> None:
            try:
                if recursive:
                    self.fs.rm(full, recursive=True)
                else:
                    self.fs.rm_file(full)
            except FileNotFoundError:
                pass

        self._call("delete", remove)
        self._invalidate(full)

    def _list_files(self, rel_dir: str) -> list[str]:
        base = self._full(rel_dir)
        self.fs.invalidate_cache(base)
        try:
            found = self._call("list", lambda: self.fs.find(base))
        except FileNotFoundError:
            return []
        cut = len(base) + 1
        stripped = (self.fs._strip_protocol(p) for p in found)
        return [p[cut:] for p in stripped if p.startswith(base + "/")]


def _mtime_of(info: dict[str, Any]) -> datetime:
    """The last-modified time in an fsspec ``info`` dict (the keys differ by driver), as aware UTC."""
    for name in ("LastModified", "last_modified", "mtime", "updated", "created", "creation_time"):
        value = info.get(name)
        if value is None:
            continue
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        if isinstance(value, (int, float)):
            return datetime.fromtimestamp(float(value), timezone.utc)
        try:
            parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            continue
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return datetime.now(timezone.utc)  # unknown: counts as new, so gc keeps it


__all__ = ["ATOMIC_UPLOAD_PROTOCOLS", "FsspecArtifactStore"]
