"""``BaseArtifactStore``: the artifact protocol, implemented once over a few primitives.

A transport implements the primitives listed in :mod:`scalable.artifacts.primitives` on
paths relative to its root; everything else (keys, digests, content-addressed objects,
directory trees, packing, verification, versions, the commit protocol) lives here, as
fsspec derives its API from a small core. The layout is in :mod:`scalable.artifacts.layout`.

Commit protocol: a put hashes its content, writes a pending-put marker naming the objects
it relies on, uploads only the objects the store does not hold yet (each to its digest
name, verified before it completes), creates the next version record of the key with a
conditional create (so two writers never share a number), then writes the key's head
record. A crash at any instant leaves every committed version whole; bytes are removed
only by :meth:`BaseArtifactStore.gc`.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import shutil
import stat
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, TypeVar

from scalable.artifacts import destination, formats
from scalable.artifacts.base import PathLike
from scalable.artifacts.callbacks import DEFAULT_CALLBACK, Callback
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
from scalable.artifacts.kinds import ArtifactKind
from scalable.artifacts.layout import (
    OBJECTS,
    PENDING,
    REFS,
    SHA256_OBJECTS,
    STORE_FORMAT,
    STORE_FORMAT_V2,
    STORE_JSON,
    TMP,
    VERSIONS,
    object_path,
    pack_path,
    parse_version_name,
    ref_path,
    version_numbers,
    version_path,
    versions_dir,
)
from scalable.artifacts.observe import notify_read
from scalable.artifacts.primitives import IncompleteUpload, ObjectStat
from scalable.artifacts.putmodes import (
    PutMode,
    check_mode,
    refuse_packed,
    refuse_remote,
    remove_moved_file,
    remove_moved_tree,
)
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
    AmbiguousVersionError,
    ArtifactKindError,
    ArtifactNotFoundError,
    IntegrityError,
    KeyConflictError,
    LocalPathError,
    StoreLayoutError,
)

if TYPE_CHECKING:  # imported where a ref is made: listing and opening a store need no pydantic
    from scalable.artifacts.ref import ArtifactRef

log = logging.getLogger("scalable.artifacts")

RECORD_FORMAT = "scalable.ref/2"
OLD_RECORD_FORMAT = "scalable.ref/1"

T = TypeVar("T")

#: A version given to a read: a number, ``"sha256:<hex prefix>"``, or ``None`` for the latest.
VersionSpec = int | str | None


class Layout:
    """How an artifact's bytes are laid out in objects."""

    FILE = "file"  # one object holding the file's bytes
    TREE = "tree"  # the tree manifest object plus one object per distinct file content
    PACKED = "packed"  # the tree manifest object plus one pack: the files' bytes in manifest order


def migrate_hint(uri: str) -> str:
    return f"run `scalable migrate {uri}` to convert it in place (nothing is lost)"


@dataclass(frozen=True)
class RefRecord:
    """A version record (and the head record, its copy): the public ref and the layout of its bytes."""

    ref: ArtifactRef
    layout: str

    @property
    def version(self) -> int:
        return self.ref.version or 0

    @property
    def object(self) -> str:
        """The object holding the bytes: the file, the pack, or (unpacked) the tree manifest."""
        if self.layout == Layout.PACKED:
            return pack_path(self.ref.digest)
        return object_path(self.ref.digest)

    def names(self) -> list[str]:
        """The objects this record names directly (an unpacked tree's members are in its manifest)."""
        if self.layout == Layout.PACKED:
            return [object_path(self.ref.digest), pack_path(self.ref.digest)]
        return [object_path(self.ref.digest)]

    def to_bytes(self) -> bytes:
        doc = {"format": RECORD_FORMAT, "layout": self.layout, "ref": self.ref.to_dict()}
        return _json_bytes(doc)

    @classmethod
    def from_bytes(cls, data: bytes, key: str, where: str) -> RefRecord | Tombstone:
        try:
            doc = json.loads(data)
            fmt = doc.get("format")
        except (ValueError, AttributeError, TypeError):
            doc, fmt = None, None
        if fmt == OLD_RECORD_FORMAT:
            raise StoreLayoutError(
                f"artifact {key!r} in {where} is stored in the layout before content-addressed objects; "
                + migrate_hint(where)
            )
        try:
            if fmt != RECORD_FORMAT:
                raise ValueError(f"unknown record format {fmt!r}")
            extra = set(doc) - {"format", "layout", "ref", "deleted", "key", "version"}
            if extra:
                raise ValueError(f"unexpected fields {sorted(extra)}")
            if doc.get("deleted"):
                if doc.get("key") != key:
                    raise ValueError("the record does not describe this key")
                return Tombstone(key, int(doc["version"]))
            from scalable.artifacts.ref import ArtifactRef

            record = cls(ArtifactRef.model_validate(doc["ref"]), str(doc["layout"]))
            if record.ref.key != key or record.layout not in (Layout.FILE, Layout.TREE, Layout.PACKED):
                raise ValueError("the record does not describe this key")
            if record.ref.version is None:
                raise ValueError("the record has no version number")
            if record.layout != Layout.FILE and record.ref.kind is not ArtifactKind.DIR:
                raise ValueError("a tree layout for an artifact that is not a directory")
            return record
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise IntegrityError(
                f"the ref record of artifact {key!r} in {where} is damaged ({exc}); "
                "re-put the artifact from its source, or delete it"
            ) from exc


@dataclass(frozen=True)
class Tombstone:
    """The version record a delete leaves: the numbers go on growing after it, the history before it is gone."""

    key: str
    version: int

    def to_bytes(self) -> bytes:
        return _json_bytes({"format": RECORD_FORMAT, "deleted": True, "key": self.key, "version": self.version})


def _json_bytes(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _check_tree_paths(entries: list[TreeEntry]) -> None:
    """Refuse tree entries whose paths could leave the destination folder (``..``, absolute, empty)."""
    for e in entries:
        if not isinstance(e.path, str) or e.path.startswith("/") or "\\" in e.path or "\0" in e.path:
            raise ValueError(f"unsafe path {e.path!r} in the tree manifest")
        if any(seg in ("", ".", "..") for seg in e.path.split("/")):
            raise ValueError(f"unsafe path {e.path!r} in the tree manifest")


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


class _SourceChanged(IntegrityError):
    pass


def _source_changed(src: Path) -> IntegrityError:
    return _SourceChanged(f"{src} changed while it was put; nothing was committed: put it again once it is written")


class BaseArtifactStore(ABC):
    """Implements :class:`~scalable.artifacts.base.ArtifactStore` over backend primitives.

    ``keep_versions`` limits each key's history to its newest N versions (``None``: keep all);
    older version records are dropped at commit and their bytes reclaimed by :meth:`gc`.
    """

    #: Parallel transfers for directory puts and gets.
    default_max_concurrency = 8
    #: Below this many objects a presence check asks for each one; above, it lists fan-out folders.
    list_presence_above = 64

    def __init__(
        self,
        uri: str,
        *,
        max_concurrency: int | None = None,
        digest_cache: DigestCache | None = None,
        keep_versions: int | None = None,
    ) -> None:
        self._uri = uri.rstrip("/")
        self.max_concurrency = max(1, max_concurrency or self.default_max_concurrency)
        self.digests = digest_cache or shared_digest_cache()
        if keep_versions is not None and keep_versions < 1:
            raise ValueError(f"keep_versions must be at least 1 (or None to keep all), got {keep_versions}")
        self.keep_versions = keep_versions
        self._layout_checked = False
        self._records_layout_seen: int | None = None  # 3, or 2 for a store not migrated yet (read as it is)

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
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                continue
        return found

    def _write_bytes(self, data: bytes, rel: str) -> None:
        with self._open_write(rel) as out:
            out.write(data)

    _exclusive_lock = threading.Lock()

    def _create_exclusive(self, data: bytes, rel: str) -> bool:
        """Write ``data`` at ``rel`` only if nothing is there; ``True`` if this call wrote it.

        The default checks, then writes, under a lock of this process: exclusive among the
        threads of one process only. Transports replace it with the service's conditional put.
        """
        with self._exclusive_lock:
            if self._exists(rel):
                return False
            self._write_bytes(data, rel)
            return True

    def _read_range(self, rel: str, start: int, n: int) -> bytes:
        with self._open_read(rel) as f:
            f.seek(start)
            return f.read(n)

    def _head(self, rel: str) -> ObjectStat | None:
        """The size and time of the file at ``rel`` (default: the size by reading it, the time now)."""
        try:
            data = self._read_bytes(rel)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        return ObjectStat(len(data), datetime.now(timezone.utc))

    def _list_stats(self, rel_dir: str) -> dict[str, ObjectStat]:
        out: dict[str, ObjectStat] = {}
        for name in self._list_files(rel_dir):
            st = self._head(f"{rel_dir}/{name}")
            if st is not None:
                out[name] = st
        return out

    def _copy_within(self, src: str, dst: str) -> None:
        with self._open_read(src) as f, self._open_write(dst) as out:
            copy_hashing(f, out.write)

    def _list_incomplete_uploads(self, rel_dir: str) -> list[IncompleteUpload]:
        return []

    def _abort_upload(self, upload: IncompleteUpload) -> None:
        return None

    def _write_file(
        self, src: Path, rel: str, *, size: int, callback: Callback, expected: str | None = None
    ) -> tuple[str, int]:
        """Upload a local file to ``rel`` from one read that also hashes it.

        With ``expected``, bytes that do not hash to it are never completed at ``rel``.
        """
        with open(src, "rb", buffering=0) as f, self._open_write(rel) as out:
            digest, n = copy_hashing(f, out.write, size_hint=size, callback=callback)
            if expected is not None and (digest != expected or n != size):
                raise _source_changed(src)
        return digest, n

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
        mode: PutMode = "auto",
    ) -> ArtifactRef:
        """Store a local file or directory under ``key``, commit it as a new version, and return its ref.

        A directory is stored one object per file, or with ``pack=True`` as one object
        (its files concatenated) whose members :meth:`open` reads by range; the digest is
        the tree digest either way. Content the store already holds (under any key or
        version) is not transferred again; if the key's latest version already has this
        content, kind and metadata, that version is returned and no new one is made.

        ``mode`` says how a new object is made from each file (:mod:`scalable.artifacts.putmodes`):
        ``"copy"``, ``"reflink"`` (a copy-on-write clone), ``"hardlink"`` (the object is the
        source file, made read-only), ``"move"`` (the source is removed once committed), or
        ``"auto"``: a clone where the filesystem can make one, else a copy. A store that is
        not on local disk copies (``"auto"``, ``"copy"``, ``"move"``) and refuses the others
        with ``PutModeError``.
        """
        key = validate_key(_key_argument(key, remote_key, "put"))
        mode = check_mode(mode)  # type: ignore[assignment]
        if not self._local_modes:
            refuse_remote(mode, self._uri)
        if pack:
            refuse_packed(mode)
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
        self._prepare_write()
        previous = self._read_head(key)
        if previous is None:
            self._check_conflicts(key)
        if is_dir:
            sources: list[SourceFile] = []
            ref = self._put_dir(src, key, meta, previous, pack, callback, mode, sources).ref
            if mode == "move":  # only once committed: a failed put leaves the source where it was
                remove_moved_tree(src, sources)
            return ref
        ref = self._put_file(src, st, key, resolved, meta, previous, callback, mode).ref
        if mode == "move":
            remove_moved_file(src, st)
        return ref

    def put_bytes(
        self, data: bytes | bytearray | memoryview, key: str, *, metadata: dict[str, Any] | None = None
    ) -> ArtifactRef:
        """Store ``data`` as a blob under ``key`` and commit it as a new version."""
        key = validate_key(key)
        data = bytes(data)
        digest = digest_bytes(data)
        self._prepare_write()
        previous = self._read_head(key)
        if previous is None:
            self._check_conflicts(key)
        meta = dict(metadata or {})
        same = self._same_as(previous, digest, Layout.FILE, ArtifactKind.BLOB, meta)
        if same is not None:
            return same.ref
        obj = object_path(digest)
        with self._pending([obj]):
            if self._head(obj) is None:
                self._write_bytes(data, obj)
            return self._commit(key, ArtifactKind.BLOB, digest, len(data), meta, Layout.FILE, previous).ref

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
        version: VersionSpec = None,
    ) -> Path:
        """Copy the artifact at ``key`` (its latest version, or ``version``) to ``local_path``.

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
        record = self._resolve(key, version)
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

    def open(
        self,
        key: str,
        *,
        member: str | None = None,
        verify: bool | Literal["first"] = True,
        version: VersionSpec = None,
    ) -> BinaryIO:
        """A binary stream of a file or blob, or of one ``member`` file of a directory.

        ``verify=True`` (the default) checks the bytes as they stream: reading to the end
        raises ``IntegrityError`` instead of returning end-of-file if they differ from the
        committed digest, but the bytes read before the end were already handed out (fine for
        a reader that parses the whole stream; not for one that acts on the first megabyte).
        ``verify="first"`` reads and checks everything before the stream is returned (held in
        memory up to 8 MiB, then in a temporary file), so no unverified byte is ever seen.
        ``verify=False`` checks nothing. A member of a packed directory is read by range,
        without fetching the whole pack. The stream keeps reading the version it opened,
        whatever puts or deletes follow.
        """
        if verify not in (True, False, "first"):
            raise ValueError(f"verify must be True, False or 'first', not {verify!r}")
        record = self._resolve(key, version)
        notify_read(self, record.ref, "open")
        stream = self._with_current(record, lambda rec: self._open_record(rec, member, verify is not False))
        return verified_first(stream) if verify == "first" else stream

    def get_bytes(self, key: str, *, verify: bool = True, version: VersionSpec = None) -> bytes:
        """The bytes of a file or blob artifact, verified against its digest by default."""
        record = self._resolve(key, version)
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
        return self._exists(ref_path(validate_key(key)))

    def info(self, key: str, *, version: VersionSpec = None) -> ArtifactRef:
        """The ref of the committed artifact at ``key``: its latest version, or ``version``."""
        return self._resolve(key, version).ref

    def list_artifacts(self, prefix: str = "") -> list[str]:
        """Sorted keys of committed artifacts starting with ``prefix`` (a plain string prefix, as in S3)."""
        prefix = validate_prefix(prefix)
        folder = prefix.rpartition("/")[0]
        rel_dir = f"{REFS}/{folder}" if folder else REFS
        names = self._list_files(rel_dir)
        keys = (f"{folder}/{name}" if folder else name for name in names)
        return sorted(k for k in keys if k.startswith(prefix))

    def iter_refs(self, prefix: str = "") -> Iterator[ArtifactRef]:
        """The refs of the artifacts :meth:`list_artifacts` names (their latest versions), in key order."""
        keys = self.list_artifacts(prefix)
        for start in range(0, len(keys), 1000):
            batch = keys[start : start + 1000]
            found = self._read_many([ref_path(k) for k in batch])
            for k in batch:
                data = found.get(ref_path(k))
                if data is not None:  # deleted since listing
                    record = RefRecord.from_bytes(data, k, self._uri)
                    if isinstance(record, RefRecord):
                        yield record.ref

    def iter_versions(self, prefix: str = "") -> Iterator[ArtifactRef]:
        """Every retained version of every key starting with ``prefix``: keys in order, each oldest first.

        One listing of the version records below ``prefix`` and batched reads, where calling
        :meth:`versions` per key would list once per key.
        """
        prefix = validate_prefix(prefix)
        layout = self._records_layout()
        if layout == 2:  # a store not migrated yet: if it is migrated meanwhile, read it again
            refs = list(self._iter_versions(prefix, 2))
            if self._records_layout(refresh=True) == 2:
                yield from refs
                return
            layout = 3
        yield from self._iter_versions(prefix, layout)

    def _iter_versions(self, prefix: str, layout: int) -> Iterator[ArtifactRef]:
        folder = prefix.rpartition("/")[0]
        rel_dir = f"{VERSIONS}/{folder}" if folder else VERSIONS
        numbers: dict[str, list[int]] = {}
        for name in self._list_files(rel_dir):
            parsed = parse_version_name(f"{folder}/{name}" if folder else name, layout)
            if parsed is not None and parsed[0].startswith(prefix):
                numbers.setdefault(parsed[0], []).append(parsed[1])
        keys = sorted(numbers)
        for start in range(0, len(keys), 200):
            batch = {k: sorted(numbers[k]) for k in keys[start : start + 200]}
            heads = [ref_path(k) for k in batch]
            found = self._read_many(heads + [version_path(k, n, layout) for k, ns in batch.items() for n in ns])
            for k, ns in batch.items():
                yield from (rec.ref for rec in self._history(k, ns, found, layout))

    def versions(self, key: str) -> list[ArtifactRef]:
        """Every retained version of ``key``, oldest first (``ArtifactNotFoundError`` if it has none)."""
        key = validate_key(key)
        found = self._version_records(key)
        if not found:
            raise ArtifactNotFoundError(
                f"no artifact at key {key!r} in {self._uri}: check the key with list_artifacts()"
            )
        return [r.ref for r in found]

    def restore(self, key: str, *, version: VersionSpec) -> ArtifactRef:
        """Commit the content of an earlier ``version`` of ``key`` as its newest version (no bytes are copied)."""
        if version is None:
            raise ValueError("restore needs the version to restore: restore(key, version=N)")
        old = self._resolve(key, version)
        self._prepare_write()
        with self._pending(old.names()):
            self._require_objects(old)
            ref = old.ref
            return self._commit(ref.key, ref.kind, ref.digest, ref.size_bytes, dict(ref.metadata), old.layout).ref

    def delete(self, key: str) -> None:
        """Remove ``key`` and its history from view; its bytes are reclaimed by :meth:`gc`.

        A tombstone version record keeps the numbers growing if the key is put again.
        """
        head = self._require_record(key)
        key = head.ref.key
        self._prepare_write()
        numbers = self._version_numbers(key)
        start = max(numbers[-1] if numbers else 0, head.version) + 1
        tomb = self._create_next(key, start, lambda n: Tombstone(key, n).to_bytes())
        # The commit point: readers take the head as the truth (a history ends at its head),
        # so until it goes the key reads as before, whole, and after it as deleted everywhere.
        self._remove(ref_path(key))
        self._republish_after(key, tomb)
        for n in numbers:
            if n < tomb:
                self._remove_quietly(version_path(key, n))

    def _republish_after(self, key: str, tomb: int) -> None:
        """A put that committed after the tombstone ``tomb`` but published its head before the delete removed it."""
        numbers = self._version_numbers(key)
        if not numbers or numbers[-1] <= tomb:
            return
        try:
            newer = RefRecord.from_bytes(self._read_bytes(version_path(key, numbers[-1])), key, self._uri)
        except FileNotFoundError:
            return
        if isinstance(newer, RefRecord):
            self._publish_head(newer)

    def verify(self, key: str, *, version: VersionSpec = None, verified: set[str] | None = None) -> ArtifactRef:
        """Re-read and re-hash every stored byte of ``key``; return its ref or raise ``IntegrityError``.

        ``verified``, if given, is the set of objects found intact so far (by earlier calls
        sharing it): objects in it are not read again, and the ones this call finds intact
        are added. Many keys and versions can name one object, so checking a whole store
        with one set reads each distinct object once.
        """
        record = self._resolve(key, version)
        done: set[str] = set() if verified is None else verified

        def check(rec: RefRecord) -> ArtifactRef:
            if rec.object in done:  # the file, the pack, or a tree manifest (whose members were checked with it)
                return rec.ref
            if rec.layout == Layout.FILE:
                with self._open_record(rec, None, True) as f:
                    while f.read(8 * 1024 * 1024):
                        pass
                done.add(rec.object)
                return rec.ref
            entries = self._tree_entries(rec)
            if rec.layout == Layout.PACKED:
                self._check_pack(rec, entries)
            else:
                for entry in entries:
                    if entry.type == "file":
                        member = object_path(entry.digest) if entry.digest else ""
                        if member in done:
                            continue
                        with self._open_record(rec, entry.path, True) as f:
                            while f.read(8 * 1024 * 1024):
                                pass
                        if member:
                            done.add(member)
            done.add(rec.object)
            return rec.ref

        return self._with_current(record, check)

    def migrate(self) -> Any:
        """Convert a store in the old layout (``scalable.ref/1``) in place; see :mod:`scalable.artifacts.migrate`."""
        from scalable.artifacts.migrate import migrate_store

        return migrate_store(self)

    def gc(self, *, grace: float = 3600.0, dry_run: bool = False, verify: bool = False) -> Any:
        """Remove what no retained version needs, older than ``grace`` seconds; see :mod:`scalable.artifacts.gc`.

        ``verify=True`` also re-hashes the objects left and moves damaged ones to ``.scalable/quarantine/``.
        """
        from scalable.artifacts.gc import collect_garbage

        return collect_garbage(self, grace=grace, dry_run=dry_run, verify=verify)

    def save(self, key: str, obj: Any, *, metadata: dict[str, Any] | None = None) -> ArtifactRef:
        """Serialize ``obj`` by the key's extension (.json, .jsonl, .npy, .pkl, else text) and store it."""
        return self.put_bytes(formats.encode(validate_key(key), obj), key, metadata=metadata)

    def load(self, key: str, *, version: VersionSpec = None) -> Any:
        """Load and decode a value saved with :meth:`save` (verified)."""
        return formats.decode(key, self.get_bytes(key, version=version))

    # ------------------------------------------------------------------ layout
    def _prepare_write(self) -> None:
        """Before the first write: record the layout (``store.json``), or refuse a store in another layout."""
        if not self._layout_checked:
            self._require_current_layout(create=True)

    def _require_current_layout(self, *, create: bool = False) -> None:
        """Refuse (``StoreLayoutError``) a store whose records are not in this layout; ``create``: record it."""
        data = self._read_store_json()
        if data is None:
            if self._has_children(REFS):
                raise StoreLayoutError(
                    f"the store at {self._uri} holds artifacts in the layout before content-addressed objects "
                    f"and cannot be written until it is converted: {migrate_hint(self._uri)}"
                )
            if create:
                doc = {"format": STORE_FORMAT, "created_at": datetime.now(timezone.utc).isoformat()}
                if not self._create_exclusive(_json_bytes(doc), STORE_JSON):
                    data = self._read_bytes(STORE_JSON)
        if data is not None and self._check_store_json(data) != 3:
            raise StoreLayoutError(
                f"the store at {self._uri} is in layout {STORE_FORMAT_V2} (version records at "
                f"{VERSIONS}/<key>/<N>, where a key's records and a key below it can collide): it is read as it "
                f"is, but cannot be written until it is converted: {migrate_hint(self._uri)}"
            )
        self._records_layout_seen = 3
        self._layout_checked = create or self._layout_checked

    def _read_store_json(self) -> bytes | None:
        try:
            return self._read_bytes(STORE_JSON)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def _check_store_json(self, data: bytes) -> int:
        """The layout ``store.json`` records: 3, or 2 (read as it is); ``StoreLayoutError`` for any other."""
        try:
            fmt = json.loads(data).get("format")
        except (ValueError, AttributeError):
            fmt = None
        if fmt == STORE_FORMAT:
            return 3
        if fmt == STORE_FORMAT_V2:
            return 2
        raise StoreLayoutError(
            f"the store at {self._uri} records layout {fmt!r} in {STORE_JSON}, which this version of scalable "
            f"does not know ({STORE_FORMAT}); use the scalable release that wrote it"
        )

    def _records_layout(self, *, refresh: bool = False) -> int:
        """Where this store keeps its version records: 3, or 2 until it is migrated (read once, then remembered).

        A store without ``store.json`` has no version records yet (or is of layout 1): 3.
        """
        if self._records_layout_seen is None or refresh:
            data = self._read_store_json()
            self._records_layout_seen = 3 if data is None else self._check_store_json(data)
        return self._records_layout_seen

    # ------------------------------------------------------------------ records
    def _read_head(self, key: str) -> RefRecord | None:
        try:
            data = self._read_bytes(ref_path(key))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        record = RefRecord.from_bytes(data, key, self._uri)
        return record if isinstance(record, RefRecord) else None

    _read_record = _read_head

    def _require_record(self, key: str) -> RefRecord:
        key = validate_key(key)
        record = self._read_head(key)
        if record is None:
            raise ArtifactNotFoundError(
                f"no artifact at key {key!r} in {self._uri}: check the key with list_artifacts()"
            )
        return record

    def _version_numbers(self, key: str, layout: int = 3) -> list[int]:
        return version_numbers(self._list_files(versions_dir(key, layout)))

    def _version_records(self, key: str) -> list[RefRecord]:
        """The history of ``key`` as its head defines it (see :meth:`_history`), oldest first."""
        layout = self._records_layout()
        numbers = self._version_numbers(key, layout)
        rels = [ref_path(key)] + [version_path(key, n, layout) for n in numbers]
        found = self._read_many(rels)
        stale = layout == 2 and ref_path(key) in found and (not numbers or len(found) < len(rels))
        if stale and self._records_layout(refresh=True) != layout:
            return self._version_records(key)  # the records moved: a migration to layout 3 finished meanwhile
        return self._history(key, numbers, found, layout)

    def _history(self, key: str, numbers: Sequence[int], found: dict[str, bytes], layout: int = 3) -> list[RefRecord]:
        """The retained versions of ``key`` up to its head, after the last tombstone before it.

        The head is the truth for every reader: no head, no history (a delete removes the head
        as its commit point); records past the head (a commit in flight, or one killed before
        it published its head, or a delete's tombstone written before it removed the head)
        are not part of the history yet. ``found`` holds the head and the records' bytes.
        """
        data = found.get(ref_path(key))
        head = RefRecord.from_bytes(data, key, self._uri) if data is not None else None
        if not isinstance(head, RefRecord):
            return []
        out = self._retained(key, [n for n in numbers if n <= head.version], found, layout)
        if not out or out[-1].version < head.version:  # published after the records were listed
            out.append(head)
        return out

    def _retained(self, key: str, numbers: Sequence[int], found: dict[str, bytes], layout: int = 3) -> list[RefRecord]:
        """The records of versions ``numbers`` of ``key`` (read into ``found``) after its last tombstone."""
        out: list[RefRecord] = []
        for n in numbers:
            data = found.get(version_path(key, n, layout))
            if data is None:  # dropped by retention since it was listed
                continue
            rec = RefRecord.from_bytes(data, key, self._uri)
            if isinstance(rec, Tombstone):
                out = []
            else:
                out.append(rec)
        return out

    def _resolve(self, key: str, version: VersionSpec) -> RefRecord:
        """The record of ``key`` at ``version`` (a number, ``sha256:<prefix>``, or ``None`` for the latest)."""
        if version is None:
            return self._require_record(key)
        key = validate_key(key)
        if isinstance(version, str) and version.isdigit():
            version = int(version)
        records = self._version_records(key)
        if isinstance(version, int) and not isinstance(version, bool):
            for rec in records:
                if rec.version == version:
                    return rec
            wanted = f"version {version}"
            matches: list[RefRecord] = []
        elif isinstance(version, str) and version.startswith("sha256:") and len(version) > len("sha256:"):
            prefix = version.lower()
            matches = [r for r in records if r.ref.digest.startswith(prefix)]
            digests = sorted({r.ref.digest for r in matches})
            if len(digests) > 1:
                listed = ", ".join(d[: len("sha256:") + 12] for d in digests)
                raise AmbiguousVersionError(
                    f"{version!r} matches {len(digests)} contents of {key!r} in {self._uri} ({listed}): "
                    "give more hex digits of the digest"
                )
            if matches:
                return matches[-1]  # the newest version with that content
            wanted = f"a version with digest {version}"
        else:
            raise ValueError(f"a version is a number or 'sha256:<hex prefix>', got {version!r}")
        exist = ", ".join(f"{r.version} ({r.ref.digest[:19]})" for r in records) or "none"
        raise ArtifactNotFoundError(
            f"artifact {key!r} in {self._uri} has no {wanted}; its versions are: {exist}. "
            "List them with `scalable versions STORE#KEY`"
        )

    #: How many attempts a read makes (kept for compatibility; objects no longer vanish under readers).
    read_attempts = 10

    def _with_current(self, record: RefRecord, action: Callable[[RefRecord], T]) -> T:
        """Run ``action``; a missing object of a committed record is damage, never a bare ``FileNotFoundError``."""
        try:
            return action(record)
        except ArtifactNotFoundError:
            raise
        except FileNotFoundError:
            raise IntegrityError(
                f"the bytes of artifact {record.ref.key!r} (version {record.version}) in {self._uri} are missing "
                "although its record is committed (damaged bytes are moved to .scalable/quarantine/ by "
                "`scalable gc --verify`); re-put it from its source, or delete it"
            ) from None

    def _check_conflicts(self, key: str) -> None:
        for parent in ancestors(key):
            if self._exists(ref_path(parent)):
                raise KeyConflictError(
                    f"cannot put {key!r}: {parent!r} is already an artifact, and artifacts cannot nest; "
                    f"choose another key or delete {parent!r} first"
                )
        if self._has_children(ref_path(key)):
            raise KeyConflictError(
                f"cannot put {key!r}: artifacts already exist under '{key}/', and artifacts cannot nest; "
                "choose another key or delete those first"
            )

    def _same_as(
        self, previous: RefRecord | None, digest: str, layout: str, kind: ArtifactKind, meta: dict[str, Any]
    ) -> RefRecord | None:
        """The latest record if it already is this content, layout, kind and metadata (and its object is there)."""
        if previous is None or previous.ref.digest != digest or previous.layout != layout:
            return None
        if previous.ref.kind is not kind or previous.ref.metadata != meta:
            return None
        return previous if self._head(previous.object) is not None else None

    # ------------------------------------------------------------------ commit
    def _commit(
        self,
        key: str,
        kind: ArtifactKind,
        digest: str,
        size: int,
        meta: dict[str, Any],
        layout: str,
        previous: RefRecord | bool | None = True,
    ) -> RefRecord:
        """Create the key's next version record (a number no other writer gets), then publish it as the head.

        ``previous`` is the head the caller read (``None``: there was none), or ``True`` to read it here.
        """
        head = self._read_head(key) if previous is True else previous
        start = head.version + 1 if isinstance(head, RefRecord) else None
        made: dict[int, RefRecord] = {}

        from scalable.artifacts.ref import ArtifactRef

        def body(n: int) -> bytes:
            ref = ArtifactRef(
                uri=self.uri_for(key), key=key, kind=kind, digest=digest, size_bytes=size, metadata=meta, version=n
            )
            made[n] = RefRecord(ref, layout)
            return made[n].to_bytes()

        number = self._create_next(key, start, body)
        record = made[number]
        self._publish_head(record)
        if self.keep_versions is not None:
            self._apply_retention(key)
        return record

    def _create_next(self, key: str, start: int | None, body: Callable[[int], bytes]) -> int:
        """Create version record ``start`` (or the one after the highest) exclusively; the number it got."""
        n = start if start is not None else (self._version_numbers(key) or [0])[-1] + 1
        for _ in range(1000):
            if self._create_exclusive(body(n), version_path(key, n)):
                return n
            n = max(n + 1, (self._version_numbers(key) or [0])[-1] + 1)
        raise IntegrityError(f"could not create a version record of {key!r} in {self._uri} after 1000 attempts")

    def _publish_head(self, record: RefRecord) -> None:
        """Write the head record; if a newer version appeared meanwhile, publish that one instead.

        Every writer checks after its own write, so the last head written is the newest version.
        """
        key = record.ref.key
        while True:
            self._write_bytes(record.to_bytes(), ref_path(key))
            numbers = self._version_numbers(key)
            if not numbers or numbers[-1] <= record.version:
                return
            try:
                data = self._read_bytes(version_path(key, numbers[-1]))
            except FileNotFoundError:
                return
            newer = RefRecord.from_bytes(data, key, self._uri)
            if isinstance(newer, Tombstone):  # a delete came after this commit: it wins
                self._remove(ref_path(key))
                return
            record = newer

    def _apply_retention(self, key: str) -> None:
        assert self.keep_versions is not None
        head = self._read_head(key)
        numbers = [n for n in self._version_numbers(key) if head is None or n != head.version]
        keep = self.keep_versions - (1 if head is not None else 0)
        drop = numbers[: max(0, len(numbers) - keep)] if keep > 0 else numbers
        for n in drop:
            self._remove_quietly(version_path(key, n))

    @contextmanager
    def _pending(self, names: Sequence[str]) -> Iterator[None]:
        """Write a marker naming the objects a put relies on, before it checks for them; gc keeps those.

        The marker outlives the put on purpose: gc removes it once it is older than the grace
        period, so a put that committed while a gc was running is still seen by that gc.
        """
        rel = f"{PENDING}/{uuid.uuid4().hex}"
        self._write_bytes(_json_bytes({"objects": sorted(set(names))}), rel)
        yield

    def _present(self, names: Sequence[str]) -> set[str]:
        """Which of the objects ``names`` the store holds: one request each, or a listing of their fan-out folders."""
        names = sorted(set(names))
        if len(names) <= self.list_presence_above:
            flags = self._map(lambda rel: self._head(rel) is not None, names)
            return {rel for rel, ok in zip(names, flags, strict=True) if ok}
        folders = sorted({rel.rsplit("/", 1)[0] for rel in names})
        listed = self._map(lambda folder: [f"{folder}/{n}" for n in self._list_files(folder)], folders)
        held = {rel for found in listed for rel in found}
        return {rel for rel in names if rel in held}

    def _require_objects(self, record: RefRecord) -> None:
        missing = [rel for rel in record.names() if self._head(rel) is None]
        if missing:
            raise IntegrityError(
                f"the bytes of artifact {record.ref.key!r} (version {record.version}) in {self._uri} are missing "
                f"({missing[0]}); re-put it from its source"
            )

    def _remove_objects(self, rels: list[str]) -> None:
        """Remove many objects (gc's sweep), in flight at once; a transport may do it its own faster way."""
        self._map(self._remove, rels)

    def _remove_quietly(self, rel: str, *, recursive: bool = False) -> None:
        try:
            self._remove(rel, recursive=recursive)
        except Exception as exc:  # leftovers are unreferenced: harmless, reclaimable by gc
            log.warning("could not remove %s/%s: %s", self._uri, rel, exc)

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
        mode: str = "copy",
    ) -> RefRecord:
        callback.set_size(st.st_size)
        known = self.digests.lookup(st)
        ingested = self._ingest_by_mode(src, st, known, mode, callback)
        if ingested is not None:  # linked, cloned or moved into the objects (local stores)
            digest, size = ingested
        elif known is None and self._ingest_in_one_read:
            # One read that writes and hashes (local stores); the object gets its name only if whole.
            digest, size = self._ingest_file(src, st, callback)
            self._remember_source(src, st, digest, size)
        else:
            digest, size = (known, st.st_size) if known is not None else self.digests.digest_of(src, st)
        same = self._same_as(previous, digest, Layout.FILE, kind, meta)
        if same is not None:
            return same
        obj = object_path(digest)
        with self._pending([obj]):
            if self._head(obj) is None:
                self._write_file(src, obj, size=size, callback=callback, expected=digest)
            return self._commit(key, kind, digest, size, meta, Layout.FILE, previous)

    #: Whether a new file is written and hashed in one read (:meth:`_ingest_file`) instead of hashed first.
    _ingest_in_one_read = False
    #: Whether objects can share storage with local files (``mode="reflink"``/``"hardlink"``).
    _local_modes = False

    def _ingest_by_mode(
        self, src: Path, st: os.stat_result, known: str | None, mode: str, callback: Callback
    ) -> tuple[str, int] | None:
        """Make the object of ``src`` by ``mode`` without copying it (see ``LocalArtifactStore``); ``None``: copy it."""
        return None

    def _ingest_file(self, src: Path, st: os.stat_result, callback: Callback) -> tuple[str, int]:
        """Write a file of unknown digest into the objects in one read; return its digest and size."""
        raise NotImplementedError

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
        assert entry.digest is not None
        if record.layout == Layout.PACKED:
            offset = sum(e.size for e in files[:index])
            raw = RangeReader(self._open_read(record.object), offset, entry.size)
        else:
            raw = self._open_read(object_path(entry.digest))
        return buffered(VerifyingReader(raw, entry.digest, entry.size, what=what, verify=verify))

    # ------------------------------------------------------------------ directories
    def tree(self, key: str, *, version: VersionSpec = None) -> list[TreeEntry]:
        """The verified tree manifest entries of a directory artifact."""
        record = self._resolve(key, version)
        if record.ref.kind is not ArtifactKind.DIR:
            raise ArtifactKindError(f"artifact {key!r} is a {record.ref.kind.value}, not a directory")
        return self._with_current(record, self._tree_entries)

    def _tree_entries(self, record: RefRecord) -> list[TreeEntry]:
        manifest = self._read_bytes(object_path(record.ref.digest))
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
        mode: str = "copy",
        sources: list[SourceFile] | None = None,
    ) -> RefRecord:
        dirs, files = walk_tree(src)
        if sources is not None:
            sources.extend(files)

        def digest_of(f: SourceFile) -> tuple[str, int]:
            known = self.digests.lookup(f.stat)
            if not pack and (made := self._ingest_by_mode(f.local, f.stat, known, mode, callback)) is not None:
                return made  # this file's object is made already, by link, clone or move
            return (known, f.stat.st_size) if known is not None else self.digests.digest_of(f.local, f.stat)

        if self._local_modes and mode != "copy" and not pack:
            callback.set_size(sum(f.stat.st_size for f in files))
            digests = self._map(digest_of, files)
        else:  # remembered digests cost a dict lookup: only the others go to threads
            digests = [(d, f.stat.st_size) if (d := self.digests.lookup(f.stat)) else None for f in files]
            misses = [i for i, d in enumerate(digests) if d is None]
            if sum(files[i].stat.st_size for i in misses) < 8 * 1024 * 1024:  # small: threads cost more than they save
                hashed = [digest_of(files[i]) for i in misses]
            else:
                hashed = self._map(lambda i: digest_of(files[i]), misses)
            for i, found in zip(misses, hashed, strict=True):
                digests[i] = found
        entries = [TreeEntry(d, "dir") for d in dirs] + [
            TreeEntry(f.path, "file", d, n) for f, (d, n) in zip(files, digests, strict=True)
        ]
        entries.sort(key=lambda e: e.path)
        manifest = tree_manifest_bytes(entries)
        digest = digest_bytes(manifest)
        size = tree_size(entries)
        layout = Layout.PACKED if pack else Layout.TREE
        same = self._same_as(previous, digest, layout, ArtifactKind.DIR, meta)
        if same is not None:
            return same
        callback.set_size(size)
        tree_obj = object_path(digest)
        by_path = {f.path: f for f in files}
        by_digest = {e.digest: by_path[e.path] for e in entries if e.type == "file"}
        if pack:
            names = [tree_obj, pack_path(digest)]
        else:
            names = [tree_obj] + [object_path(d) for d in by_digest if d is not None]
        with self._pending(names):
            if self._head(tree_obj) is None or (pack and self._head(pack_path(digest)) is None):
                if pack:
                    self._write_pack([e for e in entries if e.type == "file"], by_path, pack_path(digest), callback)
                else:
                    wanted = {object_path(d): (d, f) for d, f in by_digest.items() if d is not None}
                    known = self._members_of(previous)  # the key's latest tree holds these: no request for them
                    self._upload_absent([(f, d) for rel, (d, f) in wanted.items() if rel not in known], callback)
                self._write_bytes(manifest, tree_obj)  # absent above: the members are all there now
            return self._commit(key, ArtifactKind.DIR, digest, size, meta, layout, previous)

    def _members_of(self, record: RefRecord | None) -> set[str]:
        """The member objects of an unpacked tree version (a committed record's, so held), or none if unreadable.

        Its manifest being there means its members are: gc keeps them while the record is
        retained (and the put's marker, written before this, covers them), and gc --verify
        moves a tree's manifest out with any damaged member.
        """
        if record is None or record.layout != Layout.TREE:
            return set()
        try:
            entries = self._tree_entries(record)
        except (FileNotFoundError, IntegrityError):
            return set()
        return {object_path(e.digest) for e in entries if e.type == "file" and e.digest}

    def _upload_absent(self, items: list[tuple[SourceFile, str]], callback: Callback) -> None:
        """Upload the files whose objects the store does not hold.

        Few objects: one pass of requests in flight, each a ``HEAD`` then (if absent) the
        upload. Many: the fan-out folders are listed (:meth:`_present`), then the absent
        ones are uploaded by :meth:`_upload_objects` (which a transport may batch).
        """
        if len(items) <= 4 * self.list_presence_above and self._head_then_upload(items, callback):
            return
        held = self._present([object_path(d) for _, d in items])
        self._upload_objects([(f, d) for f, d in items if object_path(d) not in held], callback)

    def _head_then_upload(self, items: list[tuple[SourceFile, str]], callback: Callback) -> bool:
        """``HEAD`` each object and upload it if absent, all in flight at once; ``False``: not done (batch instead)."""
        if type(self)._upload_objects is not BaseArtifactStore._upload_objects:
            return False  # this transport batches its uploads: presence first, then its batch

        def one(item: tuple[SourceFile, str]) -> None:
            f, digest = item
            rel = object_path(digest)
            if self._head(rel) is None:
                self._write_file(f.local, rel, size=f.stat.st_size, callback=callback, expected=digest)

        self._map(one, items)
        return True

    def _upload_objects(self, todo: list[tuple[SourceFile, str]], callback: Callback) -> None:
        """Upload each source file to the object of its (already computed) digest, verified on the way."""

        def one(item: tuple[SourceFile, str]) -> None:
            f, digest = item
            self._write_file(f.local, object_path(digest), size=f.stat.st_size, callback=callback, expected=digest)

        self._map(one, todo)

    def _write_pack(self, files: list[TreeEntry], by_path: dict[str, SourceFile], rel: str, callback: Callback) -> None:
        with self._open_write(rel) as out:
            for e in files:
                f = by_path[e.path]
                with open(f.local, "rb", buffering=0) as fh:
                    digest, size = copy_hashing(fh, out.write, size_hint=f.stat.st_size, callback=callback)
                if digest != e.digest or size != e.size:
                    raise _source_changed(f.local)

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
                    digest = self._download(object_path(e.digest), tmp / e.path, size=e.size, callback=callback)
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
            if verify and pack.read(1):
                raise IntegrityError(
                    f"the pack of directory artifact {record.ref.key!r} in {self._uri} has bytes past its "
                    "last member; re-put the directory from its source"
                )

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
    def fetch(self, key: str, version: VersionSpec = None) -> Path:
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


# Layout names, re-exported for code that imported them from here.
__all__ = [
    "OBJECTS",
    "REFS",
    "SHA256_OBJECTS",
    "TMP",
    "VERSIONS",
    "BaseArtifactStore",
    "Layout",
    "RefRecord",
    "Tombstone",
    "VersionSpec",
]
