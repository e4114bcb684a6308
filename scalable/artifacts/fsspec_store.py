"""``FsspecArtifactStore``: artifacts in any fsspec filesystem (S3, GCS, Azure, memory, ...).

Object stores make each object appear whole when its upload completes (a single PUT, or
the completion of a multipart upload), so objects are written straight to their final,
never-reused paths; a failed upload is discarded (the multipart upload aborted) rather
than completed. Filesystems whose files commit on ``close`` whatever happened are
written to ``.scalable/tmp/`` first and moved into place.

fsspec caches directory listings; this store disables that cache on the filesystems it
creates and invalidates it after its own writes, so a listing never misses a commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, BinaryIO

import fsspec
from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from scalable.artifacts.digests import DigestCache
from scalable.artifacts.store import TMP, BaseArtifactStore
from scalable.artifacts.uris import redact_uri, split_protocol

#: Filesystems whose uploads appear whole or not at all, and can be discarded mid-way.
ATOMIC_UPLOAD_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})


class FsspecArtifactStore(BaseArtifactStore):
    """Artifacts under ``uri`` (``s3://bucket/prefix``, ``gs://...``, ``az://...``, ``memory://...``).

    ``storage_options`` go to the fsspec filesystem as they are (``endpoint_url``, keys,
    ``client_kwargs``, ...). Pass ``fs`` to reuse a filesystem you already built.
    """

    def __init__(
        self,
        uri: str,
        *,
        storage_options: dict[str, Any] | None = None,
        fs: AbstractFileSystem | None = None,
        max_concurrency: int | None = None,
        digest_cache: DigestCache | None = None,
    ) -> None:
        protocol, _ = split_protocol(uri)
        options = {"use_listings_cache": False, **(storage_options or {})}
        self.storage_options = options
        self.fs: AbstractFileSystem = fs if fs is not None else fsspec.filesystem(protocol, **options)
        self.root_path = self.fs._strip_protocol(uri).rstrip("/")
        protocols = {self.fs.protocol} if isinstance(self.fs.protocol, str) else set(self.fs.protocol)
        self._direct_writes = bool(protocols & ATOMIC_UPLOAD_PROTOCOLS)
        super().__init__(redact_uri(uri), max_concurrency=max_concurrency, digest_cache=digest_cache)

    def _full(self, rel: str) -> str:
        return f"{self.root_path}/{rel}"

    def _invalidate(self, full: str) -> None:
        self.fs.invalidate_cache(full.rsplit("/", 1)[0])

    @contextmanager
    def _open_write(self, rel: str) -> Iterator[Any]:
        full = self._full(rel)
        target = full if self._direct_writes else self._full(f"{TMP}/{uuid.uuid4().hex}")
        f = self.fs.open(target, "wb")
        try:
            yield f
        except BaseException:
            if isinstance(f, AbstractBufferedFile):
                f.discard()  # aborts a multipart upload on the server
                f.closed = True  # so that nothing completes it on garbage collection
            else:
                f.close()
            self._remove_quietly(rel if self._direct_writes else target[len(self.root_path) + 1 :])
            raise
        f.close()
        if not self._direct_writes:
            self.fs.mv(target, full)
        self._invalidate(full)

    def _write_bytes(self, data: bytes, rel: str) -> None:
        full = self._full(rel)
        self.fs.pipe_file(full, data)  # one request: the object appears whole or not at all
        self._invalidate(full)

    def _open_read(self, rel: str) -> BinaryIO:
        return self.fs.open(self._full(rel), "rb")  # type: ignore[no-any-return]

    def _read_bytes(self, rel: str) -> bytes:
        return self.fs.cat_file(self._full(rel))  # type: ignore[no-any-return]

    def _read_many(self, rels: Sequence[str]) -> dict[str, bytes]:
        if not rels:
            return {}
        by_full = {self._full(rel): rel for rel in rels}
        found = self.fs.cat(list(by_full), on_error="omit")
        stripped = {self.fs._strip_protocol(k): v for k, v in found.items()}
        return {rel: stripped[full] for full, rel in by_full.items() if full in stripped}

    def _exists(self, rel: str) -> bool:
        try:
            return bool(self.fs.isfile(self._full(rel)))
        except FileNotFoundError:
            return False

    def _remove(self, rel: str, *, recursive: bool = False) -> None:
        full = self._full(rel)
        try:
            if recursive:
                self.fs.rm(full, recursive=True)
            else:
                self.fs.rm_file(full)
        except FileNotFoundError:
            pass
        self._invalidate(full)

    def _list_files(self, rel_dir: str) -> list[str]:
        base = self._full(rel_dir)
        self.fs.invalidate_cache(base)
        try:
            found = self.fs.find(base)
        except FileNotFoundError:
            return []
        cut = len(base) + 1
        stripped = (self.fs._strip_protocol(p) for p in found)
        return [p[cut:] for p in stripped if p.startswith(base + "/")]

    def _has_children(self, rel_dir: str) -> bool:
        base = self._full(rel_dir)
        self.fs.invalidate_cache(base)
        try:
            return any(True for _ in self.fs.ls(base, detail=False) if _ != base)
        except (FileNotFoundError, NotADirectoryError):
            return False


__all__ = ["FsspecArtifactStore"]
