"""``LocalArtifactStore``: artifacts on a local (or mounted) filesystem.

Every write goes to a temporary file under ``.scalable/tmp`` on the same filesystem, is
fsynced, and is renamed into place, so an object either exists whole or not at all,
even across a power cut. A writer holds a lock on its temporary file; a file left there
by a killed writer (unlocked, untouched for :data:`STALE_TMP_SECONDS`) is removed the
next time a store is opened on the root. Large writes start their write-back early (Linux
``sync_file_range``) so the final fsync overlaps with hashing instead of following it.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from scalable.artifacts.base import PathLike
from scalable.artifacts.callbacks import Callback
from scalable.artifacts.digests import DigestCache
from scalable.artifacts.direct import DirectUnsupported, copy_hashing_direct, open_direct
from scalable.artifacts.layout import OBJECTS, PENDING, REFS, SHA256_OBJECTS, TMP, VERSIONS, object_path
from scalable.artifacts.primitives import ObjectStat
from scalable.artifacts.putmodes import CloneUnsupported, clone_file, make_read_only, remember_linked, same_content_stat
from scalable.artifacts.store import BaseArtifactStore, _source_changed
from scalable.artifacts.transfer import LocalFileWriter, copy_hashing
from scalable.errors import PutModeError, StoreNotFoundError, StoreUnavailableError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, so leftovers are never swept
    fcntl = None  # type: ignore[assignment]

#: A temporary file untouched this long, and locked by no writer, was left by a killed put.
STALE_TMP_SECONDS = 600.0


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class LocalArtifactStore(BaseArtifactStore):
    """Artifacts under a local directory; ``root`` may be relative or start with ``~``.

    ``durable=False`` skips the fsyncs (faster on scratch space, not crash-safe against
    power loss; still atomic against a killed process). Opening a store creates nothing:
    its folders appear at the first write.
    """

    default_max_concurrency = 4

    def __init__(
        self,
        root: PathLike,
        *,
        durable: bool = True,
        max_concurrency: int | None = None,
        digest_cache: DigestCache | None = None,
        keep_versions: int | None = None,
    ) -> None:
        self.root = Path(os.path.expanduser(os.fspath(root))).resolve()
        self._root_prefix = str(self.root).rstrip(os.sep) + os.sep
        if self.root.exists() and not self.root.is_dir():
            raise StoreUnavailableError(f"store root {self.root} exists and is not a directory: choose another path")
        self.durable = durable
        self._clone_fails: set[int] = set()  # source devices that cannot clone into this store
        super().__init__(
            self.root.as_uri(), max_concurrency=max_concurrency, digest_cache=digest_cache, keep_versions=keep_versions
        )
        self.sweep_tmp()

    def _tmp_file(self) -> Path:
        """A fresh temporary path in ``.scalable/tmp`` (created at the first write)."""
        folder = self.root / TMP
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailableError(
                f"cannot create the store at {self.root}: {exc.strerror}; choose a writable directory"
            ) from exc
        return folder / uuid.uuid4().hex

    def sweep_tmp(self, older_than: float = STALE_TMP_SECONDS) -> int:
        """Remove temporary files left by killed writers; return how many were removed.

        A file counts as left behind when no process holds its lock, it has not been
        written for ``older_than`` seconds, and it is its file's only name (a hard link that
        ``mode="hardlink"``/``"move"`` makes carries the source's old mtime; gc removes such
        leftovers after its grace period); a live writer's file is never touched.
        """
        if fcntl is None:
            return 0
        removed = 0
        cutoff = time.time() - older_than
        folder = self._path(TMP)  # a symlinked tmp folder is refused here, before anything is read
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return 0
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
                if not entry.is_file(follow_symlinks=False) or st.st_mtime > cutoff:
                    continue
                if st.st_nlink > 1:  # a hard link a put is making (mode="hardlink"/"move"): its mtime is the source's
                    continue
                with open(entry.path, "rb") as f:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if a writer holds it
                    os.unlink(entry.path)
                removed += 1
            except OSError:  # locked by a live writer, already gone, or not ours to remove
                continue
        return removed

    def check(self) -> None:
        """Return if the store exists; else raise ``StoreNotFoundError`` (see ``BaseArtifactStore.check``)."""
        if not self.root.is_dir():
            raise StoreNotFoundError(
                f"no artifact store at {self.root}: the folder does not exist; check the path "
                "(a store is created by its first put)"
            )
        if not (self.root / ".scalable").is_dir():
            raise StoreNotFoundError(
                f"{self.root} is not an artifact store (it has no .scalable folder): check the path "
                "(a store is created by its first put)"
            )

    def _path(self, rel: str) -> Path:
        """``root / rel``, refused if a symlink inside the root leads it outside the root."""
        path = self.root / rel
        real = os.path.realpath(path)
        if real != str(path) and not real.startswith(self._root_prefix):
            raise StoreUnavailableError(
                f"refusing {rel!r} in the store at {self.root}: a symlink inside the store leads to {real}, "
                "outside the store; remove the link (a store keeps all its files under its root)"
            )
        return path

    @contextmanager
    def _open_write(self, rel: str) -> Iterator[LocalFileWriter]:
        target = self._path(rel)
        tmp = self._tmp_file()
        f = open(tmp, "wb", buffering=0)  # noqa: SIM115 - closed in the finally below, after the rename
        if fcntl is not None:  # held until close: tells sweep_tmp this file is in use
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield LocalFileWriter(f)
            if self.durable:
                os.fsync(f.fileno())
            f.close()
            for _ in range(3):  # a concurrent delete may prune the parent between mkdir and rename
                self._path(rel).parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.replace(tmp, target)
                    break
                except FileNotFoundError:
                    continue
            else:
                os.replace(tmp, target)
            if self.durable:
                _fsync_dir(target.parent)
        finally:
            f.close()
            tmp.unlink(missing_ok=True)

    def _open_read(self, rel: str) -> BinaryIO:
        return open(self._path(rel), "rb")

    def _read_bytes(self, rel: str) -> bytes:
        return self._path(rel).read_bytes()

    def _exists(self, rel: str) -> bool:
        return self._path(rel).is_file()

    def _remove(self, rel: str, *, recursive: bool = False) -> None:
        path = self._path(rel)
        if path.is_dir() and not path.is_symlink():
            if recursive:
                shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        self._prune(path.parent)

    def _prune(self, folder: Path) -> None:
        """Remove folders emptied by a delete, up to the refs or objects root."""
        stops = {self.root / d for d in (REFS, OBJECTS, SHA256_OBJECTS, VERSIONS, PENDING, TMP)} | {self.root}
        while folder not in stops and self.root in folder.parents:
            try:
                folder.rmdir()
            except OSError:  # not empty, or already gone
                return
            folder = folder.parent

    def _list_files(self, rel_dir: str) -> list[str]:
        base = self._path(rel_dir)
        found: list[str] = []
        for dirpath, _dirnames, filenames in os.walk(base):
            rel = os.path.relpath(dirpath, base)
            prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            found.extend(prefix + name for name in filenames)
        return found

    def _create_exclusive(self, data: bytes, rel: str) -> bool:
        # A whole temporary file linked to its name: link fails if the name exists, atomically.
        tmp = self._tmp_file()
        try:
            with open(tmp, "wb", buffering=0) as f:
                f.write(data)
                if self.durable:
                    os.fsync(f.fileno())
            target = self._path(rel)
            for _ in range(3):  # a concurrent delete may prune the parent between mkdir and link
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(tmp, target)
                    break
                except FileExistsError:
                    return False
                except FileNotFoundError:
                    continue
            else:
                os.link(tmp, target)
            if self.durable:
                _fsync_dir(target.parent)
            return True
        finally:
            tmp.unlink(missing_ok=True)

    _ingest_in_one_read = True

    #: Files at least this large are written with ``O_DIRECT`` where the filesystem allows it
    #: (:mod:`scalable.artifacts.direct`); ``None``: always through the page cache.
    direct_io_min_bytes: int | None = 64 * 1024 * 1024

    def _ingest_file(self, src: Path, st: os.stat_result, callback: Callback) -> tuple[str, int]:
        # Write and hash in one read into a temporary file, then give it its digest name (if absent).
        tmp = self._tmp_file()
        try:
            direct = self._ingest_direct(src, st, tmp, callback)
            if direct is not None:
                digest, size = direct
            else:
                with open(src, "rb", buffering=0) as fin, open(tmp, "wb", buffering=0) as out:
                    if fcntl is not None:
                        fcntl.flock(out.fileno(), fcntl.LOCK_EX)
                    digest, size = copy_hashing(
                        fin, LocalFileWriter(out).write, size_hint=st.st_size, callback=callback
                    )
                    if self.durable:
                        os.fsync(out.fileno())
            target = self._path(object_path(digest))
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(tmp, target)
            except FileExistsError:
                if os.stat(target).st_nlink == 1:  # not a user's file behind a hard link
                    os.utime(target)  # the content is there: refresh its time for gc's grace period
            if self.durable:
                _fsync_dir(target.parent)
        finally:
            tmp.unlink(missing_ok=True)
        return digest, size

    def _ingest_direct(self, src: Path, st: os.stat_result, tmp: Path, callback: Callback) -> tuple[str, int] | None:
        """Copy a large file to ``tmp`` with ``O_DIRECT`` writes, hashing it; ``None`` if the filesystem refuses."""
        if self.direct_io_min_bytes is None or st.st_size < self.direct_io_min_bytes:
            return None
        try:
            fd, plain = open_direct(tmp)
        except DirectUnsupported:
            return None
        try:
            if fcntl is not None:  # held until close: tells sweep_tmp this file is in use
                fcntl.flock(plain, fcntl.LOCK_EX)
            with open(src, "rb", buffering=0) as fin:
                digest, size = copy_hashing_direct(fin, fd, plain, callback=callback)
            if self.durable:
                os.fsync(fd)
            return digest, size
        finally:
            os.close(fd)
            os.close(plain)

    _local_modes = True

    def _ingest_by_mode(
        self, src: Path, st: os.stat_result, known: str | None, mode: str, callback: Callback
    ) -> tuple[str, int] | None:
        """Link, clone or move ``src`` into the objects and hash it there (one read); ``None``: copy it.

        The new name is made in ``.scalable/tmp`` first (a hard link or a clone), made
        read-only, hashed, and only then linked to its digest name, so the object is always
        the bytes that were hashed. A hard link that changed while it was hashed is refused.
        """
        if mode == "copy" or (known is not None and self._head(object_path(known)) is not None):
            return None  # nothing to make: the store holds this content already (or a plain copy was asked)
        cloning = mode in ("reflink", "auto")
        if cloning and st.st_dev in self._clone_fails and mode == "auto":
            return None
        tmp = self._tmp_file()
        try:
            if cloning:
                try:
                    clone_file(src, tmp)
                except CloneUnsupported as exc:
                    if mode == "auto":
                        self._clone_fails.add(st.st_dev)
                        return None
                    raise PutModeError(
                        f"cannot put {src} with mode='reflink': the filesystem cannot clone it into the store at "
                        f"{self.root} ({exc.strerror}). Clones need both on one btrfs, XFS (reflink=1) or APFS "
                        "filesystem; use mode='auto' (clone if possible, else copy), 'copy' or 'hardlink'"
                    ) from None
            else:
                try:
                    os.link(src, tmp)
                except OSError as exc:
                    if mode == "move":  # another filesystem: copy here, remove the source once committed
                        return None
                    why = "it is on another filesystem" if exc.errno == errno.EXDEV else exc.strerror
                    raise PutModeError(
                        f"cannot put {src} with mode='hardlink' into the store at {self.root}: {why}. A hard link "
                        "needs the source on the store's filesystem; use mode='copy' or 'move' (copies, then "
                        "removes the source)"
                    ) from None
            return self._name_object(src, st, tmp, shared=not cloning, callback=callback)
        finally:
            tmp.unlink(missing_ok=True)

    def _name_object(
        self, src: Path, st: os.stat_result, tmp: Path, *, shared: bool, callback: Callback
    ) -> tuple[str, int]:
        """Hash the linked or cloned ``tmp``, then give it its digest name; ``shared``: it is ``src``'s inode.

        A clone is hashed through its source, whose pages are likely cached (the clone's are
        not): the source kept its inode, size and mtime from before the clone until after the
        hash, so the clone holds the bytes hashed, or the put is refused as for a hard link.
        """
        try:
            old_mode = make_read_only(tmp)
        except FileNotFoundError:  # gc took the temporary name of a hard link: the source is the same inode
            if not shared:
                raise
            old_mode = make_read_only(src)
        named = False
        try:
            try:
                held = open(tmp, "rb", buffering=0)  # noqa: SIM115 - closed by the with below
            except FileNotFoundError:
                if not shared:
                    raise
                held = open(src, "rb", buffering=0)  # noqa: SIM115 - gc took the name: the same inode
            with held as f, open(src, "rb", buffering=0) as source:
                if fcntl is not None:  # tells sweep_tmp this name is in use
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX)
                digest, size = copy_hashing(source, _discard, size_hint=st.st_size, callback=callback)
                if size != st.st_size or not same_content_stat(st, os.fstat(source.fileno())):
                    raise _source_changed(src)
                if shared and not same_content_stat(st, os.fstat(f.fileno())):
                    raise _source_changed(src)  # src was replaced: the linked file is not what was hashed
                if self.durable:
                    os.fsync(f.fileno())
            target = self._path(object_path(digest))
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                try:
                    os.link(tmp, target)
                except FileNotFoundError:
                    # gc took the temporary name (it carries the source's old mtime): link the source itself,
                    # if it is still the file that was hashed.
                    if not shared or not same_content_stat(st, os.stat(src)):
                        raise _source_changed(src) from None
                    os.link(src, target)
                named = True
            except FileExistsError:
                if os.stat(target).st_nlink == 1:  # not a user's file behind a hard link: refresh for gc
                    os.utime(target)
            if self.durable:
                _fsync_dir(target.parent)
            if named:
                remember_linked(self.digests, target, st if shared else os.stat(target), digest)
            return digest, size
        finally:
            if shared and not named:  # the source is not an object after all: give it back its mode
                try:
                    os.chmod(tmp, old_mode)
                except OSError:
                    pass

    def _read_range(self, rel: str, start: int, n: int) -> bytes:
        with open(self._path(rel), "rb") as f:
            f.seek(start)
            return f.read(n)

    def _head(self, rel: str) -> ObjectStat | None:
        try:
            st = os.stat(self._path(rel))
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        return ObjectStat(st.st_size, datetime.fromtimestamp(st.st_mtime, timezone.utc))

    def _list_stats(self, rel_dir: str) -> dict[str, ObjectStat]:
        # os.scandir: no path joins or relpath per entry, and the folder walk itself stats nothing.
        found: dict[str, ObjectStat] = {}
        fromtimestamp = datetime.fromtimestamp
        utc = timezone.utc
        stack = [(os.fspath(self._path(rel_dir)), "")]
        while stack:
            folder, prefix = stack.pop()
            try:
                it = os.scandir(folder)
            except (FileNotFoundError, NotADirectoryError):
                continue
            with it:
                for entry in it:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append((entry.path, prefix + entry.name + "/"))
                            continue
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    if stat.S_ISREG(st.st_mode):
                        found[prefix + entry.name] = ObjectStat(st.st_size, fromtimestamp(st.st_mtime, utc))
        return found

    def _remove_objects(self, rels: list[str]) -> None:
        """Unlink many files (gc's sweep) in threads, then prune each emptied folder once."""
        root = os.fspath(self.root)
        for folder in {rel.rpartition("/")[0] for rel in rels}:
            self._path(folder)  # once per folder, as _remove does per file: no symlink leads outside the root
        paths = [os.path.join(root, rel) for rel in rels]

        def unlink(path: str) -> None:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

        if self.max_concurrency == 1 or len(paths) < 64:
            for path in paths:
                unlink(path)
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(self.max_concurrency, 8)) as pool:
                for _ in pool.map(unlink, paths, chunksize=64):
                    pass
        for folder in sorted({os.path.dirname(p) for p in paths}, reverse=True):
            self._prune(Path(folder))

    def _copy_within(self, src: str, dst: str) -> None:
        with self._open_read(src) as f, self._open_write(dst) as out:
            copy_hashing(f, out.write)

    def _has_children(self, rel_dir: str) -> bool:
        try:
            with os.scandir(self._path(rel_dir)) as it:
                return any(True for _ in it)
        except (FileNotFoundError, NotADirectoryError):
            return False


def _discard(_: memoryview) -> None:
    return None


__all__ = ["LocalArtifactStore"]
