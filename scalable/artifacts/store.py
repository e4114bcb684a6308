"""``BaseArtifactStore``: the artifact protocol, implemented once over a few primitives.

A backend implements five primitives on paths relative to its root (``_open_write``,
``_open_read``, ``_exists``, ``_remove``, ``_list_files``); everything else (keys,
digests, directory trees, packing, verification, the commit protocol) lives here, as
fsspec derives its API from a small core.

Layout under the root::

    .scalable/refs/<key>                 the ref record: the commit point of an artifact
    .scalable/objects/<key>/<version>    the bytes: a file, a tree of files, or a pack
    .scalable/objects/<key>/<version>.tree  a directory's canonical tree manifest
    .scalable/tmp/                       in-flight writes of stores that need them

Commit protocol: a put writes its bytes to a fresh, never-reused object path, then its
tree manifest, then its ref record, and only after that removes the previous version's
object. A crash at any instant leaves the old ref (whose object is untouched) or the new
one (whose object is complete); concurrent writers to one key never mix their bytes. A
ref whose object vanished under a reader (a concurrent overwrite) is re-read once.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import shutil
import stat
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Literal, TypeVar

from fsspec.callbacks import DEFAULT_CALLBACK, Callback

from scalable.artifacts import destination, formats
from scalable.artifacts.base import PathLike
from scalable.artifacts.digests import (
    DigestCache,
    SourceFile,
    TreeEntry,
    digest_bytes,
    parse_tree_manifest,
    shared_digest_cache,
    tree_manifest_bytes,
    tree_size,
    walk_tree,
)
from scalable.artifacts.keys import ancestors, validate_key, validate_prefix
from scalable.artifacts.observe import notify_read
from scalable.artifacts.ref import ArtifactKind, ArtifactRef
from scalable.artifacts.transfer import (
    LocalFileWriter,
    RangeReader,
    VerifyingReader,
    buffered,
    copy_hashing,
    verified_first,
)
from scalable.artifacts.uris import encode_key
from scalable.errors import (
    ArtifactChangingError,
    ArtifactKindError,
    ArtifactNotFoundError,
    IntegrityError,
    KeyConflictError,
    LocalPathError,
)

log = logging.getLogger("scalable.artifacts")

REFS = ".scalable/refs"
OBJECTS = ".scalable/objects"
TMP = ".scalable/tmp"
RECORD_FORMAT = "scalable.ref/1"

T = TypeVar("T")


class Layout:
    """How an artifact's bytes are laid out in its object."""

    FILE = "file"  # one object holding the file's bytes
    TREE = "tree"  # a folder of objects, one per file (unpacked directory)
    PACKED = "packed"  # one object: the files' bytes concatenated in manifest order


@dataclass(frozen=True)
class RefRecord:
    """What a ref record holds: the public ref plus where its bytes are."""

    ref: ArtifactRef
    object: str
    layout: str

    def to_bytes(self) -> bytes:
        doc = {"format": RECORD_FORMAT, "ref": self.ref.to_dict(), "object": self.object, "layout": self.layout}
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes, key: str, where: str) -> RefRecord:
        try:
            doc = json.loads(data)
            if doc.get("format") != RECORD_FORMAT:
                raise ValueError(f"unknown record format {doc.get('format')!r}")
            record = cls(ArtifactRef.model_validate(doc["ref"]), str(doc["object"]), str(doc["layout"]))
            if record.ref.key != key or record.layout not in (Layout.FILE, Layout.TREE, Layout.PACKED):
                raise ValueError("the record does not describe this key")
            if not _is_object_path(record.object, key):
                # A damaged (or forged) record must not send reads, and deletes, anywhere else.
                raise ValueError(f"its object path {record.object!r} is not under {OBJECTS}/{key}/")
            return record
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise IntegrityError(
                f"the ref record of artifact {key!r} in {where} is damaged ({exc}); "
                "re-put the artifact from its source, or delete it"
            ) from exc


def _is_object_path(obj: str, key: str) -> bool:
    """Whether ``obj`` is ``OBJECTS/<key>/<version>``: one plain segment, no way out of the key's folder."""
    head = f"{OBJECTS}/{key}/"
    version = obj[len(head) :]
    return obj.startswith(head) and version not in ("", ".", "..") and not any(c in version for c in "/\\\0")


def _check_tree_paths(entries: list[TreeEntry]) -> None:
    """Refuse tree entries whose paths could leave the destination folder (``..``, absolute, empty)."""
    for e in entries:
        if not isinstance(e.path, str) or e.path.startswith("/") or "\\" in e.path or "\0" in e.path:
            raise ValueError(f"unsafe path {e.path!r} in the tree manifest")
        if any(seg in ("", ".", "..") for seg in e.path.split("/")):
            raise ValueError(f"unsafe path {e.path!r} in the tree manifest")


def new_version_id() -> str:
    """A fresh, sortable, never-reused version name for an object path."""
    now = datetime.now(timezone.utc)
    return f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:16]}"


def _key_argument(key: str | None, remote_key: str | None, call: str) -> str:
    """The key of a ``put``/``get``, given as ``key`` or as JGCRI scalable's keyword ``remote_key``."""
    if key is not None and remote_key is not None and key != remote_key:
        raise TypeError(f"{call}() got both key={key!r} and remote_key={remote_key!r}: give one")
    chosen = key if key is not None else remote_key
    if chosen is None:
        raise TypeError(f"{call}() needs the artifact's key")
    return chosen


def _resolve_kind(kind: ArtifactKind | str | None, is_dir: bool, src: Path) -> ArtifactKind:
    if kind is None:
        return ArtifactKind.DIR if is_dir else ArtifactKind.FILE
    try:
        kind = ArtifactKind(kind)
    except ValueError:
        raise ArtifactKindError(f"unknown artifact kind {kind!r}: use 'file', 'dir' or 'blob'") from None
    if is_dir and kind is not ArtifactKind.DIR:
        raise ArtifactKindError(f"{src} is a directory but kind={kind.value!r} was given: use kind='dir' or omit it")
    if not is_dir and kind is ArtifactKind.DIR:
        raise ArtifactKindError(f"{src} is a file but kind='dir' was given: use kind='file' or omit it")
    return kind


class BaseArtifactStore(ABC):
    """Implements :class:`~scalable.artifacts.base.ArtifactStore` over backend primitives."""

    #: Parallel transfers for directory puts and gets.
    default_max_concurrency = 8

    def __init__(
        self,
        uri: str,
        *,
        max_concurrency: int | None = None,
        digest_cache: DigestCache | None = None,
    ) -> None:
        self._uri = uri.rstrip("/")
        self.max_concurrency = max(1, max_concurrency or self.default_max_concurrency)
        self.digests = digest_cache or shared_digest_cache()

    # ------------------------------------------------------------------ primitives
    @abstractmethod
    def _open_write(self, rel: str) -> AbstractContextManager[Any]:
        """A writable binary file at ``rel`` that appears whole on clean exit, or not at all."""

    @abstractmethod
    def _open_read(self, rel: str) -> BinaryIO:
        """A seekable binary file for ``rel``; ``FileNotFoundError`` if it is missing."""

    @abstractmethod
    def _exists(self, rel: str) -> bool:
        """Whether a file (not a folder) is at ``rel``."""

    @abstractmethod
    def _remove(self, rel: str, *, recursive: bool = False) -> None:
        """Remove the file or (with ``recursive``) the folder at ``rel``; missing is fine."""

    @abstractmethod
    def _list_files(self, rel_dir: str) -> list[str]:
        """Paths of every file below ``rel_dir``, relative to it; ``[]`` if it is missing."""

    def _has_children(self, rel_dir: str) -> bool:
        return bool(self._list_files(rel_dir))

    def _read_bytes(self, rel: str) -> bytes:
        with self._open_read(rel) as f:
            return f.read()

    def _read_many(self, rels: Sequence[str]) -> dict[str, bytes]:
        """The bytes of each existing file of ``rels`` (missing ones are left out)."""
        found: dict[str, bytes] = {}
        for rel in rels:
            try:
                found[rel] = self._read_bytes(rel)
            except FileNotFoundError:
                continue
        return found

    def _write_bytes(self, data: bytes, rel: str) -> None:
        with self._open_write(rel) as out:
            out.write(data)

    def _write_file(self, src: Path, rel: str, *, size: int, callback: Callback) -> tuple[str, int]:
        """Upload a local file to ``rel`` from one read that also hashes it."""
        with open(src, "rb", buffering=0) as f, self._open_write(rel) as out:
            return copy_hashing(f, out.write, size_hint=size, callback=callback)

    def _download(self, rel: str, dest: Path, *, size: int, callback: Callback) -> str:
        """Stream ``rel`` into the local file ``dest``, hashing it; return the digest."""
        with self._open_read(rel) as src, open(dest, "wb", buffering=0) as out:
            digest, _ = copy_hashing(src, LocalFileWriter(out).write, size_hint=size, callback=callback)
        return digest

    # ------------------------------------------------------------------ public API
    @property
    def uri(self) -> str:
        """The store's root URI."""
        return self._uri

    @property
    def scheme(self) -> str:
        """The URI scheme this store serves: ``"file"`` for a local store, else its protocol (``"s3"``, ``"gs"``...)."""
        head, sep, _ = self._uri.partition("://")
        return head if sep else "file"

    def uri_for(self, key: str) -> str:
        """The URI that names ``key`` in this store."""
        return f"{self._uri}/{encode_key(validate_key(key))}"  # '#', '%', '?', '@' percent-encoded

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._uri!r})"

    def check(self) -> None:
        """Return if the store can be read; else raise the error that says why, as ``info`` would.

        ``StoreUnavailableError`` (the service does not answer), ``BucketNotFoundError``,
        ``AccessDeniedError``, or ``StoreNotFoundError`` (a local store that does not exist).
        One cheap look-up: it reads no artifact and creates nothing. An existing store with no
        artifacts passes.
        """
        self._exists(REFS)

    def __getstate__(self) -> dict[str, Any]:
        # Stores travel to Dask workers; the digest cache is per process, not pickled.
        state = self.__dict__.copy()
        state["digests"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.digests = shared_digest_cache()

    def put(
        self,
        local_path: PathLike,
        key: str | None = None,
        *,
        kind: ArtifactKind | str | None = None,
        metadata: dict[str, Any] | None = None,
        pack: bool = False,
        callback: Callback = DEFAULT_CALLBACK,
        remote_key: str | None = None,
    ) -> ArtifactRef:
        """Store a local file or directory under ``key``, commit it, and return its ref.

        A directory is stored one object per file, or with ``pack=True`` as one object
        (its files concatenated) whose members :meth:`open` reads by range; the digest is
        the tree digest either way. If the committed artifact at ``key`` already has
        this content, no bytes are transferred.
        """
        key = validate_key(_key_argument(key, remote_key, "put"))
        src = destination.local_path(local_path, "local path")
        try:
            st = src.stat()
        except FileNotFoundError:
            raise ArtifactNotFoundError(
                f"cannot put {os.fspath(local_path)!r} as {key!r}: the local path does not exist"
            ) from None
        except OSError as exc:  # a file where a folder should be, a name too long, no permission
            raise LocalPathError(f"cannot put {os.fspath(local_path)!r} as {key!r}: {exc.strerror}") from None
        is_dir = stat.S_ISDIR(st.st_mode)
        if not is_dir and not stat.S_ISREG(st.st_mode):
            raise ArtifactKindError(f"{src} is not a regular file or directory: only those can be put")
        resolved = _resolve_kind(kind, is_dir, src)
        meta = dict(metadata or {})
        previous = self._read_record(key)
        if previous is None:
            self._check_conflicts(key)
        if is_dir:
            return self._put_dir(src, key, meta, previous, pack, callback).ref
        return self._put_file(src, st, key, resolved, meta, previous, callback).ref

    def put_bytes(
        self, data: bytes | bytearray | memoryview, key: str, *, metadata: dict[str, Any] | None = None
    ) -> ArtifactRef:
        """Store ``data`` as a blob under ``key`` and commit it."""
        key = validate_key(key)
        data = bytes(data)
        digest = digest_bytes(data)
        previous = self._read_record(key)
        if previous is None:
            self._check_conflicts(key)
        meta = dict(metadata or {})
        unchanged = self._unchanged(previous, digest, ArtifactKind.BLOB, meta)
        if unchanged is not None:
            return unchanged.ref
        obj = self._new_object(key)
        self._attempt(obj, lambda: self._write_bytes(data, obj))
        ref = self._make_ref(key, ArtifactKind.BLOB, digest, len(data), meta)
        return self._commit(RefRecord(ref, obj, Layout.FILE), previous).ref

    def get(
        self,
        key: str | None = None,
        local_path: PathLike | None = None,
        *,
        verify: bool = True,
        overwrite: bool = False,
        merge: bool = False,
        callback: Callback = DEFAULT_CALLBACK,
        remote_key: str | None = None,
    ) -> Path:
        """Copy the artifact at ``key`` to ``local_path`` and return the path written.

        ``local_path`` is the path the artifact will have; one that ends with ``/`` means
        "inside this folder" (``local_path/<last key segment>``). Nothing already there is
        removed or replaced unless ``overwrite=True``; a directory artifact is added to an
        existing non-empty directory only with ``merge=True`` (files that differ are still
        refused without ``overwrite``). A file that already holds the artifact's bytes is
        left as it is. Refusals raise ``DestinationExistsError`` before any byte moves.
        Bytes land in a temporary name beside the destination and are moved into place only
        after they verified, so the destination is never half-written.
        """
        key = _key_argument(key, remote_key, "get")
        if local_path is None:
            raise TypeError("get() needs local_path: where to write the artifact")
        record = self._require_record(key)
        notify_read(self, record.ref, "get")
        is_dir = record.ref.kind is ArtifactKind.DIR
        target = destination.plan(
            local_path,
            key=record.ref.key,
            is_dir=is_dir,
            overwrite=overwrite,
            merge=merge,
            digest=record.ref.digest,
            same_file=self._holds_digest,
        )
        if target.unchanged:
            return target.path
        try:
            target.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LocalPathError(
                f"cannot create the folder {target.path.parent} for {key!r}: {exc.strerror}; choose a writable path"
            ) from None

        def fetch(rec: RefRecord) -> None:
            if rec.layout == Layout.FILE:
                self._get_file(rec, target, verify, callback)
            else:
                self._get_tree(rec, target, verify, callback)

        self._with_current(record, fetch)
        return target.path

    def _holds_digest(self, path: Path, st: os.stat_result, digest: str) -> bool:
        """Whether the local file at ``path`` already holds the bytes of ``digest`` (remembered digests first)."""
        try:
            return self.digests.digest_of(path, st)[0] == digest
        except OSError:
            return False

    def open(self, key: str, *, member: str | None = None, verify: bool | Literal["first"] = True) -> BinaryIO:
        """A binary stream of a file or blob, or of one ``member`` file of a directory.

        ``verify=True`` (the default) checks the bytes as they stream: reading to the end
        raises ``IntegrityError`` instead of returning end-of-file if they differ from the
        committed digest, but the bytes read before the end were already handed out (fine for
        a reader that parses the whole stream; not for one that acts on the first megabyte).
        ``verify="first"`` reads and checks everything before the stream is returned (held in
        memory up to 8 MiB, then in a temporary file), so no unverified byte is ever seen.
        ``verify=False`` checks nothing. A member of a packed directory is read by range,
        without fetching the whole pack.
        """
        if verify not in (True, False, "first"):
            raise ValueError(f"verify must be True, False or 'first', not {verify!r}")
        record = self._require_record(key)
        notify_read(self, record.ref, "open")
        stream = self._with_current(record, lambda rec: self._open_record(rec, member, verify is not False))
        return verified_first(stream) if verify == "first" else stream

    def get_bytes(self, key: str, *, verify: bool = True) -> bytes:
        """The bytes of a file or blob artifact, verified against its digest by default."""
        record = self._require_record(key)
        if record.ref.kind is ArtifactKind.DIR:
            raise ArtifactKindError(f"artifact {key!r} is a directory: use get(key, path), or open(key, member=...)")
        notify_read(self, record.ref, "get_bytes")  # load() reads through here

        def read(rec: RefRecord) -> bytes:
            data = self._read_bytes(rec.object)
            if verify:
                self._check_bytes(rec, data)
            return data

        return self._with_current(record, read)

    def exists(self, key: str) -> bool:
        """Whether a committed artifact is at ``key``."""
        return self._exists(f"{REFS}/{validate_key(key)}")

    def info(self, key: str) -> ArtifactRef:
        """The ref of the committed artifact at ``key`` (``ArtifactNotFoundError`` if none)."""
        return self._require_record(key).ref

    def list_artifacts(self, prefix: str = "") -> list[str]:
        """Sorted keys of committed artifacts starting with ``prefix`` (a plain string prefix, as in S3)."""
        prefix = validate_prefix(prefix)
        folder = prefix.rpartition("/")[0]
        rel_dir = f"{REFS}/{folder}" if folder else REFS
        names = self._list_files(rel_dir)
        keys = (f"{folder}/{name}" if folder else name for name in names)
        return sorted(k for k in keys if k.startswith(prefix))

    def iter_refs(self, prefix: str = "") -> Iterator[ArtifactRef]:
        """The refs of the artifacts :meth:`list_artifacts` names, in key order."""
        keys = self.list_artifacts(prefix)
        for start in range(0, len(keys), 1000):
            batch = keys[start : start + 1000]
            found = self._read_many([f"{REFS}/{k}" for k in batch])
            for k in batch:
                data = found.get(f"{REFS}/{k}")
                if data is not None:  # deleted since listing
                    yield RefRecord.from_bytes(data, k, self._uri).ref

    def delete(self, key: str) -> None:
        """Remove the artifact at ``key``: its ref first (the artifact is gone), then its bytes."""
        record = self._require_record(key)
        self._remove(f"{REFS}/{record.ref.key}")
        self._discard_object(record)

    def verify(self, key: str) -> ArtifactRef:
        """Re-read and re-hash every stored byte of ``key``; return its ref or raise ``IntegrityError``."""
        record = self._require_record(key)

        def check(rec: RefRecord) -> ArtifactRef:
            if rec.layout == Layout.FILE:
                with self._open_record(rec, None, True) as f:
                    while f.read(8 * 1024 * 1024):
                        pass
                return rec.ref
            entries = self._tree_entries(rec)
            if rec.layout == Layout.PACKED:
                self._check_pack(rec, entries)
            else:
                for entry in entries:
                    if entry.type == "file":
                        with self._open_record(rec, entry.path, True) as f:
                            while f.read(8 * 1024 * 1024):
                                pass
            return rec.ref

        return self._with_current(record, check)

    def save(self, key: str, obj: Any, *, metadata: dict[str, Any] | None = None) -> ArtifactRef:
        """Serialize ``obj`` by the key's extension (.json, .jsonl, .npy, .pkl, else text) and store it."""
        return self.put_bytes(formats.encode(validate_key(key), obj), key, metadata=metadata)

    def load(self, key: str) -> Any:
        """Load and decode a value saved with :meth:`save` (verified)."""
        return formats.decode(key, self.get_bytes(key))

    # ------------------------------------------------------------------ records
    def _read_record(self, key: str) -> RefRecord | None:
        try:
            data = self._read_bytes(f"{REFS}/{key}")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        return RefRecord.from_bytes(data, key, self._uri)

    def _require_record(self, key: str) -> RefRecord:
        key = validate_key(key)
        record = self._read_record(key)
        if record is None:
            raise ArtifactNotFoundError(
                f"no artifact at key {key!r} in {self._uri}: check the key with list_artifacts()"
            )
        return record

    #: How many versions a read follows when concurrent overwrites keep removing the one it reads.
    read_attempts = 10

    def _with_current(self, record: RefRecord, action: Callable[[RefRecord], T]) -> T:
        """Run ``action``; if the object vanished under it (a concurrent overwrite), re-read the ref.

        A read that loses to overwrites :attr:`read_attempts` times in a row raises
        ``ArtifactChangingError``, never the backend's bare ``FileNotFoundError``.
        """
        for _ in range(self.read_attempts):
            try:
                return action(record)
            except ArtifactNotFoundError:
                raise
            except FileNotFoundError:
                latest = self._read_record(record.ref.key)
                if latest is None:
                    raise ArtifactNotFoundError(
                        f"artifact {record.ref.key!r} in {self._uri} was deleted while it was read"
                    ) from None
                if latest.object == record.object:
                    raise IntegrityError(
                        f"the bytes of artifact {record.ref.key!r} in {self._uri} are missing although its "
                        "ref is committed; re-put it from its source, or delete it"
                    ) from None
                record = latest
        raise ArtifactChangingError(
            f"artifact {record.ref.key!r} in {self._uri} was overwritten {self.read_attempts} times while it "
            "was read, so no whole version could be read; read it again once the writers pause"
        )

    def _check_conflicts(self, key: str) -> None:
        for parent in ancestors(key):
            if self._exists(f"{REFS}/{parent}"):
                raise KeyConflictError(
                    f"cannot put {key!r}: {parent!r} is already an artifact, and artifacts cannot nest; "
                    f"choose another key or delete {parent!r} first"
                )
        if self._has_children(f"{REFS}/{key}"):
            raise KeyConflictError(
                f"cannot put {key!r}: artifacts already exist under '{key}/', and artifacts cannot nest; "
                "choose another key or delete those first"
            )

    def _make_ref(self, key: str, kind: ArtifactKind, digest: str, size: int, meta: dict[str, Any]) -> ArtifactRef:
        return ArtifactRef(uri=self.uri_for(key), key=key, kind=kind, digest=digest, size_bytes=size, metadata=meta)

    def _new_object(self, key: str) -> str:
        return f"{OBJECTS}/{key}/{new_version_id()}"

    def _unchanged(
        self, previous: RefRecord | None, digest: str, kind: ArtifactKind, meta: dict[str, Any]
    ) -> RefRecord | None:
        """The committed record if it already holds ``digest`` (committed anew on a copy if kind/metadata changed)."""
        if previous is None or previous.ref.digest != digest or not self._object_present(previous):
            return None
        if previous.ref.kind is kind and previous.ref.metadata == meta:
            return previous
        # A new kind or metadata needs a record with an object of its own: pointing it at the
        # previous object would race with a concurrent overwrite or delete, which removes that
        # object and would leave a committed ref without bytes. The copy is made in the store.
        obj = self._new_object(previous.ref.key)
        try:
            self._attempt(obj, lambda: self._copy_object(previous, obj))
        except (FileNotFoundError, IntegrityError):  # the previous object went away meanwhile: upload
            return None
        ref = self._make_ref(previous.ref.key, kind, digest, previous.ref.size_bytes, meta)
        return self._commit(RefRecord(ref, obj, previous.layout), previous)

    def _copy_object(self, record: RefRecord, obj: str) -> None:
        """Copy the stored bytes of ``record`` to the fresh object path ``obj``, checking what was read."""
        key = record.ref.key
        if record.layout == Layout.FILE:
            self._copy_file(record.object, obj, record.ref.digest, record.ref.size_bytes, key)
            return
        manifest = self._read_bytes(f"{record.object}.tree")
        if digest_bytes(manifest) != record.ref.digest:
            raise IntegrityError(f"the tree manifest of {key!r} in {self._uri} changed while it was copied")
        files = [e for e in parse_tree_manifest(manifest) if e.type == "file"]
        if record.layout == Layout.PACKED:
            self._copy_file(record.object, obj, None, tree_size(files), key)
        else:
            self._map(
                lambda e: self._copy_file(f"{record.object}/{e.path}", f"{obj}/{e.path}", e.digest, e.size, key), files
            )
        self._write_bytes(manifest, f"{obj}.tree")

    def _copy_file(self, src: str, dst: str, digest: str | None, size: int, key: str) -> None:
        with self._open_read(src) as f, self._open_write(dst) as out:
            got, n = copy_hashing(f, out.write, size_hint=size)
        if n != size or (digest is not None and got != digest):
            raise IntegrityError(f"the stored bytes of {key!r} in {self._uri} changed while they were copied")

    def _object_present(self, record: RefRecord) -> bool:
        probe = record.object if record.layout != Layout.TREE else f"{record.object}.tree"
        return self._exists(probe)

    def _commit(self, record: RefRecord, previous: RefRecord | None) -> RefRecord:
        try:
            self._write_bytes(record.to_bytes(), f"{REFS}/{record.ref.key}")
        except BaseException:
            self._discard_object(record)
            raise
        if previous is not None and previous.object != record.object:
            self._discard_object(previous)
        return record

    def _attempt(self, obj: str, action: Callable[[], T]) -> T:
        """Run an upload into ``obj``; on any failure remove what it left, then re-raise."""
        try:
            return action()
        except BaseException:
            self._remove_quietly(obj, recursive=True)
            self._remove_quietly(f"{obj}.tree")
            raise

    def _discard_object(self, record: RefRecord) -> None:
        self._remove_quietly(record.object, recursive=record.layout == Layout.TREE)
        if record.layout != Layout.FILE:
            self._remove_quietly(f"{record.object}.tree")

    def _remove_quietly(self, rel: str, *, recursive: bool = False) -> None:
        try:
            self._remove(rel, recursive=recursive)
        except Exception as exc:  # leftovers are unreferenced: harmless, reclaimable later
            log.warning("could not remove unreferenced %s/%s: %s", self._uri, rel, exc)

    # ------------------------------------------------------------------ files
    def _put_file(
        self,
        src: Path,
        st: os.stat_result,
        key: str,
        kind: ArtifactKind,
        meta: dict[str, Any],
        previous: RefRecord | None,
        callback: Callback,
    ) -> RefRecord:
        if previous is not None and previous.layout == Layout.FILE and previous.ref.size_bytes == st.st_size:
            unchanged = self._unchanged(previous, self.digests.digest_of(src, st)[0], kind, meta)
            if unchanged is not None:
                return unchanged
        obj = self._new_object(key)
        callback.set_size(st.st_size)
        digest, size = self._attempt(obj, lambda: self._write_file(src, obj, size=st.st_size, callback=callback))
        self._remember_source(src, st, digest, size)
        ref = self._make_ref(key, kind, digest, size, meta)
        return self._commit(RefRecord(ref, obj, Layout.FILE), previous)

    def _remember_source(self, src: Path, before: os.stat_result, digest: str, size: int) -> None:
        # Only if the file did not change while it was read: then the digest is its content's.
        try:
            after = os.stat(src)
        except OSError:
            return
        if size == before.st_size and DigestCache.stat_key(after) == DigestCache.stat_key(before):
            self.digests.remember(after, digest)

    def _get_file(self, record: RefRecord, target: destination.Target, verify: bool, callback: Callback) -> None:
        dest = target.path
        tmp = target.staging()
        callback.set_size(record.ref.size_bytes)
        try:
            digest = self._download(record.object, tmp, size=record.ref.size_bytes, callback=callback)
            if verify and digest != record.ref.digest:
                raise IntegrityError(
                    f"artifact {record.ref.key!r} in {self._uri} does not match its digest "
                    f"{record.ref.digest} (got {digest}); nothing was written to {dest}. "
                    "Re-put it from its source or restore it from a copy"
                )
            destination.install_file(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        if digest == record.ref.digest:
            self.digests.remember(dest.stat(), digest)

    def _check_bytes(self, record: RefRecord, data: bytes) -> None:
        if len(data) != record.ref.size_bytes or digest_bytes(data) != record.ref.digest:
            raise IntegrityError(
                f"artifact {record.ref.key!r} in {self._uri} does not match its digest {record.ref.digest} "
                f"({len(data)} of {record.ref.size_bytes} bytes); re-put it from its source or restore it"
            )

    def _open_record(self, record: RefRecord, member: str | None, verify: bool) -> BinaryIO:
        key = record.ref.key
        if record.ref.kind is not ArtifactKind.DIR:
            if member is not None:
                raise ArtifactKindError(f"artifact {key!r} is a {record.ref.kind.value}, it has no members")
            raw = self._open_read(record.object)
            what = f"artifact {key!r} in {self._uri}"
            return buffered(VerifyingReader(raw, record.ref.digest, record.ref.size_bytes, what=what, verify=verify))
        if member is None:
            raise ArtifactKindError(
                f"artifact {key!r} is a directory: use get(key, path), or open(key, member='file/in/dir')"
            )
        entries = self._tree_entries(record)
        files = [e for e in entries if e.type == "file"]
        index = bisect.bisect_left([e.path for e in files], member)
        if index == len(files) or files[index].path != member:
            raise ArtifactNotFoundError(
                f"directory artifact {key!r} has no file {member!r}; list its files with tree(key)"
            )
        entry = files[index]
        what = f"member {member!r} of artifact {key!r} in {self._uri}"
        if record.layout == Layout.PACKED:
            offset = sum(e.size for e in files[:index])
            raw = RangeReader(self._open_read(record.object), offset, entry.size)
        else:
            raw = self._open_read(f"{record.object}/{entry.path}")
        assert entry.digest is not None
        return buffered(VerifyingReader(raw, entry.digest, entry.size, what=what, verify=verify))

    # ------------------------------------------------------------------ directories
    def tree(self, key: str) -> list[TreeEntry]:
        """The verified tree manifest entries of a directory artifact."""
        record = self._require_record(key)
        if record.ref.kind is not ArtifactKind.DIR:
            raise ArtifactKindError(f"artifact {key!r} is a {record.ref.kind.value}, not a directory")
        return self._with_current(record, self._tree_entries)

    def _tree_entries(self, record: RefRecord) -> list[TreeEntry]:
        manifest = self._read_bytes(f"{record.object}.tree")
        if digest_bytes(manifest) != record.ref.digest:
            raise IntegrityError(
                f"the tree manifest of directory artifact {record.ref.key!r} in {self._uri} does not match "
                f"its digest {record.ref.digest}; re-put the directory from its source"
            )
        try:
            entries = parse_tree_manifest(manifest)
            _check_tree_paths(entries)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise IntegrityError(
                f"the tree manifest of directory artifact {record.ref.key!r} in {self._uri} is damaged ({exc}); "
                "re-put the directory from its source"
            ) from exc
        return entries

    def _put_dir(
        self,
        src: Path,
        key: str,
        meta: dict[str, Any],
        previous: RefRecord | None,
        pack: bool,
        callback: Callback,
    ) -> RefRecord:
        dirs, files = walk_tree(src)
        if previous is not None and previous.ref.kind is ArtifactKind.DIR:
            wanted = Layout.PACKED if pack else Layout.TREE
            if previous.layout == wanted:
                entries = self.digests.tree_entries(dirs, files)
                digest = digest_bytes(tree_manifest_bytes(entries))
                unchanged = self._unchanged(previous, digest, ArtifactKind.DIR, meta)
                if unchanged is not None:
                    return unchanged
        obj = self._new_object(key)
        callback.set_size(sum(f.stat.st_size for f in files))

        def upload() -> bytes:
            written = self._write_pack(files, obj, callback) if pack else self._write_tree(files, obj, callback)
            manifest = tree_manifest_bytes([TreeEntry(d, "dir") for d in dirs] + written)
            self._write_bytes(manifest, f"{obj}.tree")
            return manifest

        manifest = self._attempt(obj, upload)
        entries = parse_tree_manifest(manifest)
        ref = self._make_ref(key, ArtifactKind.DIR, digest_bytes(manifest), tree_size(entries), meta)
        return self._commit(RefRecord(ref, obj, Layout.PACKED if pack else Layout.TREE), previous)

    def _write_tree(self, files: list[SourceFile], obj: str, callback: Callback) -> list[TreeEntry]:
        def one(f: SourceFile) -> TreeEntry:
            digest, size = self._write_file(f.local, f"{obj}/{f.path}", size=f.stat.st_size, callback=callback)
            self._remember_source(f.local, f.stat, digest, size)
            return TreeEntry(f.path, "file", digest, size)

        return self._map(one, files)

    def _write_pack(self, files: list[SourceFile], obj: str, callback: Callback) -> list[TreeEntry]:
        entries = []
        with self._open_write(obj) as out:
            for f in files:
                with open(f.local, "rb", buffering=0) as fh:
                    digest, size = copy_hashing(fh, out.write, size_hint=f.stat.st_size, callback=callback)
                self._remember_source(f.local, f.stat, digest, size)
                entries.append(TreeEntry(f.path, "file", digest, size))
        return entries

    def _map(self, fn: Callable[[Any], T], items: Sequence[Any]) -> list[T]:
        if self.max_concurrency == 1 or len(items) < 2:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(items))) as pool:
            return list(pool.map(fn, items))

    def _get_tree(self, record: RefRecord, target: destination.Target, verify: bool, callback: Callback) -> None:
        entries = self._tree_entries(record)
        files = [e for e in entries if e.type == "file"]
        callback.set_size(tree_size(files))
        tmp = target.staging()
        tmp.mkdir()
        try:
            for e in entries:
                if e.type == "dir":
                    (tmp / e.path).mkdir(parents=True, exist_ok=True)
            for e in files:
                (tmp / e.path).parent.mkdir(parents=True, exist_ok=True)
            if record.layout == Layout.PACKED:
                self._unpack(record, files, tmp, verify, callback)
            else:

                def one(e: TreeEntry) -> None:
                    digest = self._download(f"{record.object}/{e.path}", tmp / e.path, size=e.size, callback=callback)
                    self._accept_member(record, e, digest, tmp / e.path, verify)

                self._map(one, files)
            destination.install_tree(tmp, target, entries, self._holds_digest)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def _unpack(self, record: RefRecord, files: list[TreeEntry], tmp: Path, verify: bool, callback: Callback) -> None:
        with self._open_read(record.object) as pack:
            for e in files:
                with open(tmp / e.path, "wb", buffering=0) as out:
                    digest, n = copy_hashing(
                        _Limited(pack, e.size), LocalFileWriter(out).write, size_hint=e.size, callback=callback
                    )
                if n != e.size:
                    raise IntegrityError(
                        f"the pack of directory artifact {record.ref.key!r} in {self._uri} is truncated at "
                        f"member {e.path!r}; re-put the directory from its source"
                    )
                self._accept_member(record, e, digest, tmp / e.path, verify)

    def _accept_member(self, record: RefRecord, e: TreeEntry, digest: str, local: Path, verify: bool) -> None:
        if verify and digest != e.digest:
            raise IntegrityError(
                f"member {e.path!r} of directory artifact {record.ref.key!r} in {self._uri} does not match "
                f"its digest {e.digest}; re-put the directory from its source"
            )
        if digest == e.digest:
            self.digests.remember(local.stat(), digest)

    def _check_pack(self, record: RefRecord, entries: list[TreeEntry]) -> None:
        files = [e for e in entries if e.type == "file"]
        with self._open_read(record.object) as pack:
            for e in files:
                digest, n = copy_hashing(_Limited(pack, e.size), _discard, size_hint=e.size)
                if n != e.size or digest != e.digest:
                    raise IntegrityError(
                        f"member {e.path!r} of directory artifact {record.ref.key!r} in {self._uri} does not "
                        f"match its digest {e.digest}; re-put the directory from its source"
                    )
            if pack.read(1):
                raise IntegrityError(
                    f"the pack of directory artifact {record.ref.key!r} in {self._uri} has bytes past its "
                    "last member; re-put the directory from its source"
                )

    # ------------------------------------------------------------------ the local mirror
    def fetch(self, key: str, version: str | None = None) -> Path:
        """A local, read-only path to the verified content of ``key`` (a file or a directory tree).

        The content is held in the local mirror by digest (:mod:`scalable.artifacts.mirror`):
        a second fetch of the same digest costs one ref read and no download, and
        ``fetch("sha256:...")`` of mirrored content makes no call to the store at all.
        """
        from scalable.artifacts import mirror

        return mirror.fetch(self, key, version=version)  # type: ignore[arg-type]

    def is_fetched(self, key: str) -> bool:
        """Whether the content ``key`` names now is in the local mirror (one ref read)."""
        from scalable.artifacts import mirror

        return mirror.is_fetched(self, key)  # type: ignore[arg-type]


class _Limited:
    """The next ``size`` bytes of a stream, for reading one member of a pack in sequence."""

    def __init__(self, raw: BinaryIO, size: int):
        self._raw = raw
        self._left = size

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        n = self._left if n < 0 else min(n, self._left)
        data = self._raw.read(n)
        self._left -= len(data)
        return data

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


def _discard(_: memoryview) -> None:
    return None


__all__ = ["BaseArtifactStore", "Layout", "RefRecord"]
