"""SHA-256 digests of bytes, files and directory trees, and the stat-keyed digest cache.

A directory's digest is the SHA-256 of its *canonical tree manifest*: a JSON document

    {"format": "scalable.tree/1",
     "entries": [{"path": "a", "type": "dir"},
                 {"path": "a/b.txt", "type": "file", "digest": "sha256:...", "size": 12}]}

with one entry per file and per sub-directory (so empty folders count), ``path`` the
POSIX path relative to the tree's root, entries sorted by ``path`` (code-point order), and
the whole encoded as UTF-8 JSON with sorted keys, no whitespace (``separators=(",", ":")``)
and non-ASCII characters unescaped. Equal trees give equal bytes, hence equal digests, on
every backend and machine.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scalable.errors import ArtifactKindError, ArtifactNotFoundError

ALGORITHM = "sha256"
TREE_FORMAT = "scalable.tree/1"
CHUNK_SIZE = 8 * 1024 * 1024


def format_digest(hexdigest: str) -> str:
    """``"<hex>"`` -> ``"sha256:<hex>"``."""
    return f"{ALGORITHM}:{hexdigest}"


def sha256(data: bytes | bytearray | memoryview = b"") -> Any:
    """``hashlib.sha256(data)``, importing hashlib (OpenSSL, ~4 ms) on the first hash rather than when a store opens."""
    import hashlib

    return hashlib.sha256(data)


def digest_bytes(data: bytes | bytearray | memoryview) -> str:
    """The ``sha256:<hex>`` digest of ``data``."""
    return format_digest(sha256(data).hexdigest())


def hash_file(path: str | os.PathLike[str], chunk_size: int = CHUNK_SIZE) -> tuple[str, int]:
    """Read a local file once; return its ``sha256:<hex>`` digest and its size."""
    h = sha256()
    size = 0
    with open(path, "rb", buffering=0) as f:
        expected = os.fstat(f.fileno()).st_size
        if expected < chunk_size:  # a small file: one read, no 8 MiB buffer to allocate and zero
            data = f.readall()
            h.update(data)
            return format_digest(h.hexdigest()), len(data)
        buf = bytearray(chunk_size)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
            size += n
    return format_digest(h.hexdigest()), size


@dataclass(frozen=True)
class TreeEntry:
    """One file or sub-directory of a tree; ``digest``/``size`` are set for files only."""

    path: str
    type: str  # "file" or "dir"
    digest: str | None = None
    size: int = 0

    def to_json(self) -> dict[str, Any]:
        if self.type == "dir":
            return {"path": self.path, "type": "dir"}
        return {"path": self.path, "type": "file", "digest": self.digest, "size": self.size}


def tree_manifest_bytes(entries: Iterable[TreeEntry]) -> bytes:
    """The canonical manifest bytes of a tree (see the module docstring)."""
    ordered = sorted(entries, key=lambda e: e.path)
    doc = {"format": TREE_FORMAT, "entries": [e.to_json() for e in ordered]}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def parse_tree_manifest(data: bytes) -> list[TreeEntry]:
    """Read manifest bytes back into entries (sorted by path)."""
    doc = json.loads(data)
    if doc.get("format") != TREE_FORMAT:
        raise ValueError(f"not a {TREE_FORMAT} manifest")
    return [TreeEntry(e["path"], e["type"], e.get("digest"), int(e.get("size", 0))) for e in doc["entries"]]


def tree_size(entries: Iterable[TreeEntry]) -> int:
    """Bytes in a tree's files."""
    return sum(e.size for e in entries if e.type == "file")


@dataclass(frozen=True)
class SourceFile:
    """A regular file found by :func:`walk_tree`: its tree path and where it is on disk."""

    path: str
    local: Path
    stat: os.stat_result


def walk_tree(root: Path) -> tuple[list[str], list[SourceFile]]:
    """List a local directory: sub-directory paths and files, both relative POSIX paths.

    Symlinks are followed, as ``cp -rL`` and ``aws s3 sync`` do; a symlink cycle or a
    special file (socket, FIFO, device) raises ``ArtifactKindError`` naming it.
    """
    dirs: list[str] = []
    files: list[SourceFile] = []
    seen: set[tuple[int, int]] = set()

    def visit(directory: Path, rel: str) -> None:
        st = directory.stat()
        ident = (st.st_dev, st.st_ino)
        if ident in seen:
            raise ArtifactKindError(f"symlink cycle at {directory}: remove the link or put a subfolder")
        seen.add(ident)
        with os.scandir(directory) as it:
            children = sorted(it, key=lambda d: d.name)
        for child in children:
            child_rel = f"{rel}/{child.name}" if rel else child.name
            try:
                cst = os.stat(child.path)
            except FileNotFoundError:
                raise ArtifactKindError(f"broken symlink in the source tree: {child.path}") from None
            if stat.S_ISDIR(cst.st_mode):
                dirs.append(child_rel)
                visit(Path(child.path), child_rel)
            elif stat.S_ISREG(cst.st_mode):
                files.append(SourceFile(child_rel, Path(child.path), cst))
            else:
                raise ArtifactKindError(
                    f"{child.path} is not a regular file or directory (socket, FIFO or device): "
                    "remove it from the tree before putting it"
                )
        seen.discard(ident)

    visit(root, "")
    return dirs, files


class DigestCache:
    """Remembers local files' digests by ``(device, inode, size, mtime_ns, ctime_ns)``.

    Re-putting an unchanged file then costs a ``stat``, not a re-hash. Any write to the
    file changes its mtime/ctime, and so its cache key. Entries live in memory and, when
    a directory is given, in a diskcache shared by every process on the machine (the
    cache is derived data: deleting it only costs re-hashing).
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None, max_memory_entries: int = 100_000):
        self._memory: dict[tuple[int, ...], str] = {}
        self._max = max_memory_entries
        self._lock = threading.Lock()
        self._directory = Path(directory) if directory else None
        self._disk: Any = None
        self._disk_failed = False

    @staticmethod
    def stat_key(st: os.stat_result) -> tuple[int, ...]:
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def _disk_cache(self) -> Any:
        if self._disk is None and self._directory is not None and not self._disk_failed:
            try:
                import diskcache

                self._disk = diskcache.Cache(str(self._directory), size_limit=256 * 1024 * 1024)
            except Exception:  # an unwritable home must not break puts: memory only
                self._disk_failed = True
        return self._disk

    def lookup(self, st: os.stat_result) -> str | None:
        """The remembered digest of the file with this stat, or ``None``."""
        key = self.stat_key(st)
        found = self._memory.get(key)
        if found is None and (disk := self._disk_cache()) is not None:
            try:
                found = disk.get(":".join(map(str, key)))
            except Exception:
                found = None
            if found is not None:
                self._remember_memory(key, found)
        return found

    def remember(self, st: os.stat_result, digest: str) -> None:
        """Record ``digest`` for the file with this stat."""
        key = self.stat_key(st)
        self._remember_memory(key, digest)
        if (disk := self._disk_cache()) is not None:
            try:
                disk.set(":".join(map(str, key)), digest)
            except Exception:
                pass

    def _remember_memory(self, key: tuple[int, ...], digest: str) -> None:
        with self._lock:
            if len(self._memory) >= self._max:
                self._memory.clear()
            self._memory[key] = digest

    def digest_of(self, local: Path, st: os.stat_result) -> tuple[str, int]:
        """The digest and size of the file ``local`` whose stat is ``st``, hashing if needed."""
        found = self.lookup(st)
        if found is not None:
            return found, st.st_size
        digest, size = hash_file(local)
        if size == st.st_size:  # a file that changed while it was read is not remembered
            self.remember(st, digest)
        return digest, size

    def file_digest(self, path: str | os.PathLike[str]) -> tuple[str, int]:
        """The digest and size of a local file, hashing only if its stat is new."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise ArtifactNotFoundError(f"local path {os.fspath(path)!r} does not exist") from None
        return self.digest_of(Path(path), st)

    def tree_entries(self, dirs: Iterable[str], files: Iterable[SourceFile]) -> list[TreeEntry]:
        """Manifest entries for what :func:`walk_tree` found (files hashed only if changed)."""
        entries = [TreeEntry(d, "dir") for d in dirs]
        for f in files:
            digest, size = self.digest_of(f.local, f.stat)
            entries.append(TreeEntry(f.path, "file", digest, size))
        return entries

    def tree(self, root: str | os.PathLike[str]) -> list[TreeEntry]:
        """The tree manifest entries of a local directory."""
        return self.tree_entries(*walk_tree(Path(root)))

    def path_digest(self, path: str | os.PathLike[str]) -> str:
        """The digest of a file, or the tree digest of a directory."""
        p = Path(path)
        if p.is_dir():
            return digest_bytes(tree_manifest_bytes(self.tree(p)))
        return self.file_digest(p)[0]


def default_digest_cache_dir() -> Path | None:
    """``SCALABLE_DIGEST_CACHE`` (``off`` disables), else ``$XDG_CACHE_HOME/scalable/digests``."""
    configured = os.environ.get("SCALABLE_DIGEST_CACHE")
    if configured is not None:
        return None if configured.lower() in ("", "0", "off", "false", "none") else Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "scalable" / "digests"


_shared_cache: DigestCache | None = None


def shared_digest_cache() -> DigestCache:
    """The process-wide digest cache that stores and the cache keys share."""
    global _shared_cache
    if _shared_cache is None:
        _shared_cache = DigestCache(default_digest_cache_dir())
    return _shared_cache


def iter_chunks(f: Any, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Read a binary file object in chunks until EOF."""
    while chunk := f.read(chunk_size):
        yield chunk


__all__ = [
    "ALGORITHM",
    "DigestCache",
    "SourceFile",
    "TreeEntry",
    "default_digest_cache_dir",
    "digest_bytes",
    "format_digest",
    "hash_file",
    "parse_tree_manifest",
    "shared_digest_cache",
    "tree_manifest_bytes",
    "tree_size",
    "walk_tree",
]
