"""How a local file becomes an object: copied, cloned (reflink), hard-linked or moved.

``put(path, key, mode=...)`` takes one of :data:`PUT_MODES`:

``"copy"``
    The object is a new file with the source's bytes; the source is not touched.
``"reflink"``
    The object is a copy-on-write clone of the source (Linux ``FICLONE`` on btrfs, XFS,
    bcachefs...; ``clonefile`` on APFS): no data is copied, and later writes to either file
    do not reach the other. Needs a filesystem that clones, and the store on it.
``"hardlink"``
    The object *is* the source file under a second name (one inode). Nothing is copied,
    and the shared file is made read-only, but whoever can write the source can still
    change the stored bytes: ``verify``/``get`` then raise ``IntegrityError``.
``"move"``
    The source is removed once the artifact is committed. On the store's filesystem the
    file is renamed into the objects (by a link, then removing the source's name); anywhere
    else (another disk, a bucket) it is copied or uploaded first.
``"auto"`` (the default)
    ``"reflink"`` where the filesystem can clone, else ``"copy"``.

This module holds what does not depend on a store: the checks of a mode, the clone
system calls, and the removal of a moved source.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import stat
import sys
from pathlib import Path
from typing import Any, Literal

from scalable.artifacts.digests import DigestCache, SourceFile
from scalable.errors import PutModeError

log = logging.getLogger("scalable.artifacts")

#: What ``put(..., mode=)`` accepts.
PutMode = Literal["auto", "copy", "reflink", "hardlink", "move"]
PUT_MODES: tuple[str, ...] = ("auto", "copy", "reflink", "hardlink", "move")

#: Modes that make the object share storage with the source (and so are only possible on local disk).
SHARING_MODES = ("reflink", "hardlink")

# _IOW(0x94, 9, int): clone a whole file (linux/fs.h).
FICLONE = 0x40049409

#: errnos meaning "this filesystem (or this pair of files) cannot be cloned", not a failure of the disk.
_CLONE_UNSUPPORTED = {
    errno.EOPNOTSUPP,
    errno.ENOTSUP,
    errno.EXDEV,
    errno.EINVAL,
    errno.ENOTTY,
    errno.ENOSYS,
    errno.EPERM,
    errno.EBADF,
}


def check_mode(mode: object) -> str:
    """``mode`` if it is one of :data:`PUT_MODES`, else ``PutModeError`` listing them."""
    if not isinstance(mode, str) or mode not in PUT_MODES:
        raise PutModeError(f"unknown put mode {mode!r}: use one of {', '.join(PUT_MODES)} (default 'auto')")
    return mode


def refuse_remote(mode: str, uri: str) -> None:
    """Refuse a sharing mode for a store that is not on local disk (its objects cannot share an inode)."""
    if mode in SHARING_MODES:
        raise PutModeError(
            f"mode={mode!r} needs the store on local disk, and {uri} is not: its objects cannot share "
            "storage with a local file. Use mode='copy' (the default) or mode='move' (upload, then remove "
            "the source once committed)"
        )


def refuse_packed(mode: str) -> None:
    """A packed directory is one new object (its files concatenated): nothing can be linked or cloned into it."""
    if mode in SHARING_MODES:
        raise PutModeError(
            f"mode={mode!r} cannot store a packed directory: a pack is one new object holding all the files, "
            "so there is nothing to link or clone. Put it unpacked (pack=False) or use mode='copy' or 'move'"
        )


class CloneUnsupported(OSError):
    """The filesystem (or this pair of files) cannot make a copy-on-write clone."""


@functools.cache
def _load_clonefile() -> Any:
    """macOS ``clonefile(2)`` via ctypes (imported here: only a reflink put on macOS needs it), or None."""
    if sys.platform != "darwin":
        return None
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.dylib", use_errno=True)
        fn = libc.clonefile
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint32]
    fn.restype = ctypes.c_int
    return fn


def clone_file(src: Path, dst: Path) -> None:
    """Make ``dst`` (which must not exist) a copy-on-write clone of ``src``; ``CloneUnsupported`` if it cannot be."""
    clonefile = _load_clonefile()
    if clonefile is not None:  # APFS: clonefile creates dst itself
        import ctypes

        if clonefile(os.fsencode(src), os.fsencode(dst), 0) == 0:
            return
        err = ctypes.get_errno()
        if err in _CLONE_UNSUPPORTED:
            raise CloneUnsupported(err, os.strerror(err), str(src))
        raise OSError(err, os.strerror(err), str(src))
    try:
        import fcntl
    except ImportError:  # Windows: no clones here (ReFS block cloning is not wired up)
        raise CloneUnsupported(errno.ENOTSUP, "clones are not supported on this platform", str(src)) from None
    fd_in = os.open(src, os.O_RDONLY)
    try:
        fd_out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            fcntl.ioctl(fd_out, FICLONE, fd_in)
        except OSError as exc:
            os.close(fd_out)
            fd_out = -1
            os.unlink(dst)
            if exc.errno in _CLONE_UNSUPPORTED:
                raise CloneUnsupported(exc.errno, exc.strerror, str(src)) from None
            raise
        finally:
            if fd_out >= 0:
                os.close(fd_out)
    finally:
        os.close(fd_in)


def make_read_only(path: Path) -> int:
    """Clear the write bits of ``path``; return its previous permission bits (to restore them on failure)."""
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o222:
        os.chmod(path, mode & ~0o222)
    return mode


def same_content_stat(before: os.stat_result, after: os.stat_result) -> bool:
    """Whether a file kept its inode, size and mtime (a link or chmod changes only its ctime)."""
    return (before.st_dev, before.st_ino, before.st_size, before.st_mtime_ns) == (
        after.st_dev,
        after.st_ino,
        after.st_size,
        after.st_mtime_ns,
    )


def remove_moved_file(path: Path, before: os.stat_result) -> bool:
    """Remove a moved source file, unless it was changed since it was put (then keep it and warn)."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return True
    if not same_content_stat(before, now):
        log.warning("%s changed after it was put with mode='move': it was kept; the store holds its old bytes", path)
        return False
    os.unlink(path)
    return True


def remove_moved_tree(root: Path, files: list[SourceFile]) -> None:
    """Remove the files of a moved directory, then the folders left empty (never anything else)."""
    for f in files:
        remove_moved_file(f.local, f.stat)
    for dirpath, _dirnames, _filenames in os.walk(root, topdown=False):  # deepest first
        try:
            os.rmdir(dirpath)
        except OSError:  # holds something that was not put (a file added meanwhile): keep it
            pass


def remember_linked(digests: DigestCache, path: Path, before: os.stat_result, digest: str) -> None:
    """Remember the digest of a file now linked as an object, if its content did not change meanwhile."""
    try:
        now = os.stat(path)
    except OSError:
        return
    if same_content_stat(before, now):
        digests.remember(now, digest)


__all__ = [
    "FICLONE",
    "PUT_MODES",
    "SHARING_MODES",
    "CloneUnsupported",
    "PutMode",
    "check_mode",
    "clone_file",
    "make_read_only",
    "refuse_packed",
    "refuse_remote",
    "remove_moved_file",
    "remove_moved_tree",
    "same_content_stat",
]
