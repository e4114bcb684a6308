"""The local mirror: verified, read-only local copies of artifacts, keyed by digest.

``store.fetch(key)`` reads the key's ref (one ``info``), and if the mirror already holds
that digest returns its local path without a download; otherwise it downloads the
artifact once (``store.get``, verified), makes it read-only and records it. Equal content
under any key, in any store, is held once. Only the stores' public API is used.

Layout under the mirror's root::

    entries/<hex>/<name>    the content: a file, or a directory tree (read-only)
    entries/<hex>.json      the entry's record, written last: the commit point
    locks/<hex>.use         shared-locked by every process using the entry; mtime = last use
    locks/<hex>.fetch       exclusive while one process downloads the entry
    tmp/                    downloads in flight

Locks are ``flock``s, released by the kernel when a process exits. A process that fetched
an entry holds a shared lock on its ``.use`` file until it exits or calls
:meth:`Mirror.release`; eviction takes that lock exclusively without waiting and skips
entries it cannot lock, so content another process is using is never removed. Eight
processes fetching one digest queue on its ``.fetch`` lock: the first downloads, the others
find the entry when they get the lock.

Every fetch compares the inode, size, mtime and ctime of each path of the entry with those
recorded when it was written (one ``stat`` for a file). An entry changed behind scalable's
back is re-hashed; if its digest no longer matches it is discarded and fetched again.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scalable.artifacts.base import ArtifactStore
from scalable.artifacts.digests import DigestCache, shared_digest_cache
from scalable.artifacts.ref import ArtifactKind, ArtifactRef
from scalable.errors import ArtifactChangingError, ArtifactNotFoundError, MirrorError, MirrorFullError, ScalableError

log = logging.getLogger("scalable.artifacts.mirror")

ENV_DIR = "SCALABLE_MIRROR_DIR"
ENV_MAX_BYTES = "SCALABLE_MIRROR_MAX_BYTES"
RECORD_FORMAT = "scalable.mirror/1"
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def is_digest(text: str) -> bool:
    """Whether ``text`` is a ``sha256:<64 hex>`` digest rather than a key."""
    algo, _, hexdigest = text.partition(":")
    return algo == "sha256" and len(hexdigest) == 64 and all(c in "0123456789abcdef" for c in hexdigest)


@dataclass(frozen=True)
class MirrorEntry:
    """One mirrored artifact: its digest, what it is, where it is and when it was last used."""

    digest: str
    kind: str
    size_bytes: int
    path: Path
    key: str
    store: str
    fetched_at: float
    last_used: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (times as UNIX seconds)."""
        return {
            "digest": self.digest,
            "kind": self.kind,
            "size_bytes": self.size_bytes,
            "path": str(self.path),
            "key": self.key,
            "store": self.store,
            "fetched_at": self.fetched_at,
            "last_used": self.last_used,
        }


# Shared locks this process holds, by lock path: one descriptor each (flock locks belong to it).
_held: dict[str, int] = {}
_held_lock = threading.Lock()


def _fingerprint(st: os.stat_result) -> list[int]:
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _paths_below(root: Path) -> Iterator[Path]:
    yield root
    if root.is_dir() and not root.is_symlink():
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(dirnames) + sorted(filenames):
                yield Path(dirpath) / name


def _make_read_only(root: Path) -> None:
    # Deepest first, so a folder loses its write bit after its contents were changed.
    for path in sorted(_paths_below(root), key=lambda p: len(p.parts), reverse=True):
        mode = stat.S_IMODE(path.lstat().st_mode)
        os.chmod(path, mode & ~0o222)


def _remove_tree(path: Path) -> None:
    """Remove a file or folder of the mirror, giving back the write bits the entry took away."""
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir() and not path.is_symlink():
        for p in _paths_below(path):
            if p.is_dir() and not p.is_symlink():
                os.chmod(p, stat.S_IMODE(p.lstat().st_mode) | 0o700)
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _disk_full(exc: BaseException) -> OSError | None:
    """The disk-full ``OSError`` behind ``exc`` (itself, or a cause or context), if there is one."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _FULL_ERRNOS:
            return current
        current = current.__cause__ or current.__context__
    return None


class Mirror:
    """A folder of verified, read-only artifact content keyed by digest, bounded by ``max_bytes``."""

    def __init__(self, root: str | os.PathLike[str], *, max_bytes: int | None = None):
        self.root = Path(root).expanduser().absolute()
        self.max_bytes = max_bytes

    def __repr__(self) -> str:
        return f"Mirror({str(self.root)!r}, max_bytes={self.max_bytes!r})"

    # ------------------------------------------------------------------ paths
    def _entry_dir(self, hexdigest: str) -> Path:
        return self.root / "entries" / hexdigest

    def _record_path(self, hexdigest: str) -> Path:
        return self.root / "entries" / f"{hexdigest}.json"

    def _lock_path(self, hexdigest: str, what: str) -> Path:
        return self.root / "locks" / f"{hexdigest}.{what}"

    def _ensure_dirs(self) -> None:
        for sub in ("entries", "locks", "tmp"):
            try:
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise MirrorError(
                    f"cannot create the local mirror at {self.root}: {exc.strerror}; point {ENV_DIR} or the "
                    "manifest's project.local_mirror at a writable folder"
                ) from None

    # ------------------------------------------------------------------ public API
    def fetch(self, store: ArtifactStore, key: str, *, version: int | str | None = None) -> Path:
        """A local, read-only path to the verified content of ``key`` (or of a ``sha256:`` digest).

        A digest already mirrored is served without any call to ``store``; a key costs one
        ``store.info``, plus a download only when its digest is not mirrored yet.
        """
        self._ensure_dirs()
        if is_digest(key) and version is None:
            path = self._serve(key.partition(":")[2])
            if path is not None:
                return path
            self.release(key)  # nothing to hold unless a download succeeds
            ref = self._find_digest(store, key)
        else:
            ref = _call_with_version(store, "info", version, key)
        return self.fetch_ref(store, ref, version=version)

    def fetch_ref(self, store: ArtifactStore, ref: ArtifactRef, *, version: int | str | None = None) -> Path:
        """The local path of the content ``ref`` names (a ref just read from ``store``), downloading it if needed."""
        self._ensure_dirs()
        path = self._serve(ref.hexdigest)
        if path is not None:
            return path
        try:
            return self._download(store, ref, version)
        except BaseException:
            if not self._record_path(ref.hexdigest).exists():
                self.release(ref.digest)
            raise

    def path_of(self, digest: str) -> Path | None:
        """The local path of ``digest`` if it is mirrored and intact (and then held), else ``None``."""
        if not is_digest(digest) or not self._record_path(digest.partition(":")[2]).exists():
            return None
        return self._serve(digest.partition(":")[2])

    def contains(self, digest: str) -> bool:
        """Whether ``digest`` is mirrored and intact; creates and holds nothing."""
        if not is_digest(digest):
            return False
        hexdigest = digest.partition(":")[2]
        record = self._read_record(hexdigest)
        return record is not None and (self._unchanged(hexdigest, record) or self._rehash_ok(hexdigest, record))

    def release(self, digest: str | None = None) -> None:
        """Stop holding ``digest`` (or every entry this process holds), so eviction may remove it."""
        prefix = str(self.root / "locks") + os.sep
        with _held_lock:
            for path in list(_held):
                if not path.startswith(prefix):
                    continue
                if digest is not None and Path(path).name != f"{digest.partition(':')[2]}.use":
                    continue
                os.close(_held.pop(path))

    def entries(self) -> list[MirrorEntry]:
        """Every committed entry, least recently used first; reads only, creates nothing."""
        folder = self.root / "entries"
        if not folder.is_dir():
            return []
        found = []
        for record_file in folder.glob("*.json"):
            hexdigest = record_file.stem
            record = self._read_record(hexdigest)
            if record is None:
                continue
            found.append(self._entry_of(hexdigest, record))
        return sorted(found, key=lambda e: e.last_used)

    def total_bytes(self) -> int:
        """The size of the mirrored content (the sum of its entries' sizes)."""
        return sum(e.size_bytes for e in self.entries())

    def in_use(self, digest: str) -> bool:
        """Whether some process (this one included) holds the entry of ``digest``."""
        lock = self._lock_path(digest.partition(":")[2], "use")
        try:
            fd = os.open(lock, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def prune(
        self, *, max_bytes: int | None = None, older_than: float | None = None, everything: bool = False
    ) -> list[MirrorEntry]:
        """Evict entries no process uses: all of them (``everything``), those unused for ``older_than``
        seconds, and least recently used ones until the mirror fits ``max_bytes`` (default: the bound).

        Returns the entries removed.
        """
        bound = self.max_bytes if max_bytes is None else max_bytes
        entries = self.entries()
        total = sum(e.size_bytes for e in entries)
        now = time.time()
        removed = []
        for e in entries:
            stale = older_than is not None and now - e.last_used >= older_than
            over = bound is not None and total > bound
            if (everything or stale or over) and self._evict(e.digest.partition(":")[2]):
                removed.append(e)
                total -= e.size_bytes
        self._remove_orphan_locks()
        return removed

    def _remove_orphan_locks(self) -> None:
        """Lock files of digests with no entry (a failed fetch) that no process holds."""
        folder = self.root / "locks"
        if not folder.is_dir():
            return
        for lock in folder.glob("*.use"):
            if not self._record_path(lock.stem).exists():
                self._evict(lock.stem)

    # ------------------------------------------------------------------ serving
    def _serve(self, hexdigest: str, *, fetch_locked: bool = False) -> Path | None:
        """Hold the entry and return its path if it is committed and intact; discard it if it was altered."""
        self._hold(hexdigest)
        record = self._read_record(hexdigest)
        if record is None:
            return None
        if self._unchanged(hexdigest, record):
            return self._entry_dir(hexdigest) / record["name"]
        if self._rehash_ok(hexdigest, record):
            # Touched or chmod-ed but the same bytes: remember the new stat, serve it.
            self._write_record(hexdigest, {**record, "paths": self._stat_paths(hexdigest, record["name"])})
            return self._entry_dir(hexdigest) / record["name"]
        log.warning("mirror entry %s was changed behind scalable's back: discarding it and fetching again", hexdigest)
        if fetch_locked:
            self._discard(hexdigest)
        else:
            with self._fetch_lock(hexdigest):
                self._discard(hexdigest)
        return None

    def _unchanged(self, hexdigest: str, record: dict[str, Any]) -> bool:
        base = self._entry_dir(hexdigest)
        try:
            for rel, fingerprint in record["paths"]:
                if _fingerprint(os.lstat(base / rel)) != fingerprint:
                    return False
        except (OSError, ValueError, TypeError):
            return False
        # A folder whose mtime is unchanged has had no name added or removed; so the walk is complete.
        return True

    def _rehash_ok(self, hexdigest: str, record: dict[str, Any]) -> bool:
        content = self._entry_dir(hexdigest) / record["name"]
        try:
            return DigestCache(None).path_digest(content) == record["digest"]
        except (OSError, ScalableError):
            return False

    def _hold(self, hexdigest: str) -> None:
        path = self._lock_path(hexdigest, "use")
        key = str(path)
        with _held_lock:
            fd = _held.get(key)
            if fd is not None:
                try:
                    if os.fstat(fd).st_ino == os.stat(path).st_ino:
                        os.utime(fd)
                        return
                except OSError:
                    pass
                os.close(_held.pop(key))
            _held[key] = self._lock(path, fcntl.LOCK_SH)
            os.utime(_held[key])

    @staticmethod
    def _lock(path: Path, how: int) -> int:
        """A descriptor of ``path`` locked with ``how``, for the lock file now at ``path`` (not a removed one)."""
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, how)
                if os.fstat(fd).st_ino == os.stat(path).st_ino:
                    return fd
            except FileNotFoundError:
                pass  # evicted between the open and the lock: lock the new file
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)

    @contextmanager
    def _fetch_lock(self, hexdigest: str) -> Iterator[None]:
        fd = self._lock(self._lock_path(hexdigest, "fetch"), fcntl.LOCK_EX)
        try:
            yield
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ records
    def _read_record(self, hexdigest: str) -> dict[str, Any] | None:
        try:
            doc = json.loads(self._record_path(hexdigest).read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.get("format") != RECORD_FORMAT:
            return None
        if doc.get("digest") != f"sha256:{hexdigest}":
            return None
        name = doc.get("name")
        if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\0" in name:
            return None
        return doc

    def _write_record(self, hexdigest: str, doc: dict[str, Any]) -> None:
        target = self._record_path(hexdigest)
        fd, tmp = tempfile.mkstemp(dir=self.root / "tmp", prefix=f"{hexdigest}.", suffix=".json")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(json.dumps(doc, sort_keys=True).encode("utf-8"))
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _stat_paths(self, hexdigest: str, name: str) -> list[list[Any]]:
        # The content only: the entry's own folder changes when it is renamed into place.
        base = self._entry_dir(hexdigest)
        return [[os.path.relpath(p, base), _fingerprint(p.lstat())] for p in _paths_below(base / name)]

    def _entry_of(self, hexdigest: str, record: dict[str, Any]) -> MirrorEntry:
        try:
            last_used = self._lock_path(hexdigest, "use").stat().st_mtime
        except OSError:
            last_used = float(record.get("fetched_at", 0))
        return MirrorEntry(
            digest=record["digest"],
            kind=str(record.get("kind", "")),
            size_bytes=int(record.get("size_bytes", 0)),
            path=self._entry_dir(hexdigest) / record["name"],
            key=str(record.get("key", "")),
            store=str(record.get("store", "")),
            fetched_at=float(record.get("fetched_at", 0)),
            last_used=last_used,
        )

    # ------------------------------------------------------------------ downloading
    def _find_digest(self, store: ArtifactStore, digest: str) -> ArtifactRef:
        for ref in store.iter_refs():
            if ref.digest == digest:
                return ref
        raise ArtifactNotFoundError(
            f"{digest} is not in the local mirror at {self.root}, and no artifact in {store.uri} has that digest; "
            "fetch it by key from the store that holds it"
        )

    def _download(self, store: ArtifactStore, ref: ArtifactRef, version: int | str | None) -> Path:
        hexdigest = ref.hexdigest
        with self._fetch_lock(hexdigest):
            path = self._serve(hexdigest, fetch_locked=True)  # another process may have fetched it meanwhile
            if path is not None:
                return path
            self._discard(hexdigest)  # content left without a record by a killed fetch
            self._remove_leftovers(hexdigest)
            self._make_room(ref, keep=hexdigest)
            name = ref.key.rsplit("/", 1)[-1]
            staging = self.root / "tmp" / f"{hexdigest}.unused"
            try:
                staging = Path(tempfile.mkdtemp(dir=self.root / "tmp", prefix=f"{hexdigest}."))
                content = staging / name
                _call_with_version(store, "get", version, ref.key, content)
                digests = getattr(store, "digests", None)
                cache = digests if isinstance(digests, DigestCache) else shared_digest_cache()
                got = cache.path_digest(content)  # remembered by the get that just verified it: no re-read
                if got != ref.digest:
                    raise ArtifactChangingError(
                        f"artifact {ref.key!r} in {store.uri} changed while it was fetched ({ref.digest} became "
                        f"{got}); fetch it again"
                    )
                _make_read_only(content)
                os.replace(staging, self._entry_dir(hexdigest))
                paths = self._stat_paths(hexdigest, name)
                self._write_record(
                    hexdigest,
                    {
                        "format": RECORD_FORMAT,
                        "digest": ref.digest,
                        "kind": ArtifactKind(ref.kind).value,
                        "size_bytes": ref.size_bytes,
                        "name": name,
                        "key": ref.key,
                        "store": store.uri,
                        "fetched_at": time.time(),
                        "paths": paths,
                    },
                )
            except BaseException as exc:
                _remove_tree(staging)
                if self._read_record(hexdigest) is None:
                    _remove_tree(self._entry_dir(hexdigest))
                full = _disk_full(exc) if isinstance(exc, Exception) else None
                if full is not None:
                    raise MirrorFullError(
                        full.errno,
                        f"the disk of the local mirror at {self.root} is full ({full.strerror}) while fetching "
                        f"{ref.key!r} ({ref.size_bytes} bytes); nothing was left in the mirror. Free space "
                        f"(scalable mirror prune), set mirror_max_bytes, or point {ENV_DIR} at a larger disk",
                    ) from None
                raise
        path = self._entry_dir(hexdigest) / name
        return path

    def _remove_leftovers(self, hexdigest: str) -> None:
        """Staging folders of this digest left by killed fetches (the caller holds its fetch lock)."""
        for leftover in (self.root / "tmp").glob(f"{hexdigest}.*"):
            if leftover.is_dir() and not leftover.is_symlink():
                _remove_tree(leftover)

    def _make_room(self, ref: ArtifactRef, *, keep: str) -> None:
        if self.max_bytes is None:
            return
        if ref.size_bytes > self.max_bytes:
            raise MirrorError(
                f"artifact {ref.key!r} ({ref.size_bytes} bytes) is larger than the local mirror's bound "
                f"mirror_max_bytes={self.max_bytes}; raise the bound ({ENV_MAX_BYTES} or the manifest's "
                "project.mirror_max_bytes), or use store.get(key, path) instead"
            )
        entries = [e for e in self.entries() if e.digest.partition(":")[2] != keep]
        total = sum(e.size_bytes for e in entries)
        for e in entries:
            if total + ref.size_bytes <= self.max_bytes:
                return
            if self._evict(e.digest.partition(":")[2]):
                total -= e.size_bytes
        if total + ref.size_bytes > self.max_bytes:
            log.warning(
                "local mirror at %s holds %d bytes in use by running processes: it exceeds its bound of %d bytes",
                self.root,
                total + ref.size_bytes,
                self.max_bytes,
            )

    def _evict(self, hexdigest: str) -> bool:
        """Remove an entry unless a process holds it; ``False`` if it was in use."""
        path = self._lock_path(hexdigest, "use")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return False
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            if os.fstat(fd).st_ino != os.stat(path).st_ino:
                return False
            self._discard(hexdigest)
            self._lock_path(hexdigest, "fetch").unlink(missing_ok=True)
            path.unlink(missing_ok=True)  # under the lock: a waiting process re-opens the new file
            return True
        except FileNotFoundError:
            return False
        finally:
            os.close(fd)

    def _discard(self, hexdigest: str) -> None:
        """Drop the record (the commit point) first, then the content."""
        self._record_path(hexdigest).unlink(missing_ok=True)
        entry = self._entry_dir(hexdigest)
        if entry.exists():
            doomed = Path(tempfile.mkdtemp(dir=self.root / "tmp", prefix=f"{hexdigest}.gone."))
            os.replace(entry, doomed / "entry")
            _remove_tree(doomed)


def _call_with_version(store: ArtifactStore, method: str, version: str | None, *args: Any) -> Any:
    """``store.<method>(*args)``, with ``version=`` only when one is given and the store takes it."""
    fn = getattr(store, method)
    if version is None:
        return fn(*args)
    import inspect

    if "version" not in inspect.signature(fn).parameters:
        raise MirrorError(
            f"{type(store).__name__} does not support versions yet: fetch({args[0]!r}) without version=, "
            "which fetches the current version"
        )
    return fn(*args, version=version)


# ---------------------------------------------------------------------- the default mirror
_default_cache: dict[tuple[Any, ...], Mirror] = {}


def _manifest_file() -> Path | None:
    named = os.environ.get("SCALABLE_MANIFEST")
    if named:
        return Path(named).expanduser().absolute()
    here = Path("scalable.yaml")
    return here.absolute() if here.is_file() else None


def default_mirror() -> Mirror:
    """The mirror settings name: ``SCALABLE_MIRROR_DIR`` > the manifest's ``project.local_mirror`` >
    the user cache folder (``platformdirs.user_cache_dir("scalable")/mirror``); the bound from
    ``SCALABLE_MIRROR_MAX_BYTES`` > ``project.mirror_max_bytes`` > none.
    """
    env_dir = os.environ.get(ENV_DIR) or None
    env_max = os.environ.get(ENV_MAX_BYTES) or None
    manifest = _manifest_file() if env_dir is None or env_max is None else None
    try:
        stamp = manifest.stat().st_mtime_ns if manifest is not None else None
    except OSError:
        stamp = None
    cache_key = (env_dir, env_max, str(manifest), stamp, os.getcwd())
    found = _default_cache.get(cache_key)
    if found is not None:
        return found
    directory: str | None = env_dir
    bound: str | None = env_max
    if manifest is not None and stamp is not None:
        from scalable.manifest import load_manifest  # settings sit below artifacts: read them only when asked

        project = load_manifest(manifest).project
        if directory is None and project.local_mirror:
            directory = os.path.join(manifest.parent, os.path.expanduser(project.local_mirror))
        if bound is None:
            bound = project.mirror_max_bytes
    if directory is None:
        import platformdirs

        directory = os.path.join(platformdirs.user_cache_dir("scalable"), "mirror")
    max_bytes = None
    if bound is not None:
        from scalable.cache.config import parse_size

        try:
            max_bytes = parse_size(bound, ENV_MAX_BYTES if env_max is not None else "project.mirror_max_bytes")
        except ValueError as exc:
            raise MirrorError(str(exc)) from None
    mirror = Mirror(directory, max_bytes=max_bytes)
    _default_cache.clear()
    _default_cache[cache_key] = mirror
    return mirror


def fetch(store: ArtifactStore, key: str, *, version: int | str | None = None, mirror: Mirror | None = None) -> Path:
    """``store.fetch``: a local read-only path to the verified content of ``key``, through the mirror."""
    return (mirror or default_mirror()).fetch(store, key, version=version)


def is_fetched(store: ArtifactStore, key: str, *, mirror: Mirror | None = None) -> bool:
    """``store.is_fetched``: whether the content ``key`` names now is in the mirror (one ref read)."""
    m = mirror or default_mirror()
    digest = key if is_digest(key) else store.info(key).digest
    return m.contains(digest)


__all__ = [
    "ENV_DIR",
    "ENV_MAX_BYTES",
    "Mirror",
    "MirrorEntry",
    "MirrorError",
    "MirrorFullError",
    "default_mirror",
    "fetch",
    "is_digest",
    "is_fetched",
]
