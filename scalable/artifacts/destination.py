"""Where a ``get`` writes, and what it may do to local files that are already there.

One rule for files and directories alike: ``DEST`` is the path the artifact will have,
and a ``DEST`` that ends with ``/`` means "inside this folder", as ``DEST/<name>`` where
``<name>`` is the last segment of the key. Nothing a user already has is removed or
replaced unless the call says so:

=======================  ====================  ==========================================
what is at the target     file artifact         directory artifact
=======================  ====================  ==========================================
nothing                   written               written
the same bytes            left as it is         (a directory: see the next rows)
another file              refused (overwrite)   refused (overwrite)
an empty directory        refused (overwrite)   filled
a non-empty directory     refused (overwrite)   refused (merge or overwrite)
=======================  ====================  ==========================================

``overwrite=True`` (``--force``) replaces what is there; ``merge=True`` (``--merge``) adds a
directory artifact's files to an existing directory, keeping the files it does not name,
and refuses (before anything moves) files that differ unless ``overwrite`` is given too.
The new bytes are always fetched whole and verified in a temporary name beside the
target first, so a refused or failed ``get`` leaves the destination as it was.
"""

from __future__ import annotations

import os
import shutil
import stat
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scalable.artifacts.digests import TreeEntry
from scalable.errors import DestinationExistsError, LocalPathError

#: ``same_file(path, st, digest)``: whether the local file at ``path`` holds the bytes of ``digest``.
SameFile = Callable[[Path, os.stat_result, str], bool]

#: How many differing paths a refused merge names.
_SHOWN = 5


def local_path(value: str | os.PathLike[str], what: str) -> Path:
    """``value`` as a ``Path`` with ``~`` expanded; a NUL byte is a ``LocalPathError``, not a ``ValueError``."""
    text = os.fspath(value)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if "\0" in text:
        raise LocalPathError(f"{what} {text[:80]!r} contains a NUL byte, which no file name can hold: fix the path")
    return Path(text).expanduser()


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None  # an ancestor is a file: check_parents says so


def _is_dir(st: os.stat_result | None, path: Path) -> bool:
    """A directory, or a symlink to one (followed, as ``cp`` does)."""
    if st is None:
        return False
    return stat.S_ISDIR(st.st_mode) or (stat.S_ISLNK(st.st_mode) and path.is_dir())


@dataclass(frozen=True)
class Target:
    """The checked destination of one ``get``: where it lands and what it may replace."""

    path: Path
    overwrite: bool
    merge: bool
    #: What is at ``path`` now: ``None`` (nothing), ``"file"`` or ``"dir"``.
    existing: str | None
    #: A file artifact whose bytes are already at ``path``: nothing to fetch.
    unchanged: bool = False

    def staging(self) -> Path:
        """A fresh temporary name beside the target (same filesystem, so the final rename is atomic)."""
        return self.path.parent / f".{self.path.name}.{uuid.uuid4().hex[:12]}.part"


def check_parents(path: Path) -> None:
    """Refuse a target whose folder cannot be made because a file stands where a folder must be."""
    for parent in path.parents:
        st = _lstat(parent)
        if st is None:
            continue
        if not _is_dir(st, parent):
            raise DestinationExistsError(
                f"cannot write {path}: {parent} is a file, not a folder; choose another destination"
            )
        return


def plan(
    dest: str | os.PathLike[str],
    *,
    key: str,
    is_dir: bool,
    overwrite: bool,
    merge: bool,
    digest: str,
    same_file: SameFile,
) -> Target:
    """Check ``dest`` for the artifact at ``key`` before any byte is fetched; raise if it would lose files.

    ``same_file(path, st, digest)`` says whether a local file already holds the bytes of ``digest``.
    """
    text = os.fspath(dest)
    path = local_path(dest, "destination")
    if isinstance(text, str) and text.endswith(("/", os.sep)):
        path = path / key.rsplit("/", 1)[-1]
    check_parents(path)
    st = _lstat(path)
    if st is None:
        return Target(path, overwrite, merge, None)
    if _is_dir(st, path):
        if is_dir and (merge or overwrite or not any(path.iterdir())):
            return Target(path, overwrite, merge, "dir")
        if overwrite:
            return Target(path, overwrite, merge, "dir")
        if is_dir:
            raise DestinationExistsError(
                f"{path} exists and is not empty: pass merge=True (--merge) to add the artifact's files to it "
                "(files that differ are refused unless overwrite=True), or overwrite=True (--force) to replace it"
            )
        raise DestinationExistsError(
            f"{path} is a directory: end the destination with '/' to write the file inside it "
            f"({path}/{key.rsplit('/', 1)[-1]}), or pass overwrite=True (--force) to replace the directory"
        )
    if not is_dir and stat.S_ISREG(st.st_mode) and same_file(path, st, digest):
        return Target(path, overwrite, merge, "file", unchanged=True)
    if overwrite:
        return Target(path, overwrite, merge, "file")
    raise DestinationExistsError(
        f"{path} already exists: pass overwrite=True (--force) to replace it, or choose another destination"
    )


def install_file(staged: Path, target: Target) -> None:
    """Move a verified file into place: atomically over a file, or over a directory the call may replace."""
    if target.existing == "dir" and target.path.is_dir() and not target.path.is_symlink():
        old = _aside(target.path)
        os.replace(staged, target.path)
        shutil.rmtree(old, ignore_errors=True)
        return
    os.replace(staged, target.path)


def install_tree(
    staged: Path,
    target: Target,
    entries: list[TreeEntry],
    same_file: SameFile,
) -> None:
    """Move a verified directory into place: new, filling an empty folder, merged, or replacing."""
    path = target.path
    if target.existing is None:
        os.rename(staged, path)
        return
    if target.existing == "file":
        path.unlink()
        os.rename(staged, path)
        return
    if target.merge:
        _merge(staged, path, entries, target.overwrite, same_file)
        shutil.rmtree(staged, ignore_errors=True)
        return
    if not target.overwrite:  # an empty folder: nothing to keep
        try:
            path.rmdir()
        except OSError:
            raise DestinationExistsError(
                f"{path} is no longer empty (something wrote to it during the get): nothing was changed; "
                "pass merge=True (--merge) or overwrite=True (--force)"
            ) from None
        os.rename(staged, path)
        return
    old = _aside(path)
    os.rename(staged, path)
    shutil.rmtree(old, ignore_errors=True)


def _aside(path: Path) -> Path:
    old = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.old"
    os.rename(path, old)
    return old


def _holds(local: Path, st: os.stat_result, e: TreeEntry, same_file: SameFile) -> bool:
    return stat.S_ISREG(st.st_mode) and st.st_size == e.size and e.digest is not None and same_file(local, st, e.digest)


def _merge(
    staged: Path,
    dest: Path,
    entries: list[TreeEntry],
    overwrite: bool,
    same_file: SameFile,
) -> None:
    """Add the staged tree's entries to ``dest``; refuse, before moving anything, what would replace a file."""
    conflicts: list[str] = []
    moves: list[TreeEntry] = []
    for e in entries:
        local = dest / e.path
        st = _lstat(local)
        if e.type == "dir":
            if st is not None and not _is_dir(st, local):
                conflicts.append(f"{e.path} (a file here, a folder in the artifact)")
            continue
        if st is None:
            moves.append(e)
        elif _is_dir(st, local):
            conflicts.append(f"{e.path} (a folder here, a file in the artifact)")
        elif _holds(local, st, e, same_file):
            continue  # already these bytes
        else:
            conflicts.append(f"{e.path} (differs)")
            moves.append(e)
    if conflicts and not overwrite:
        more = len(conflicts) - _SHOWN
        shown = ", ".join(conflicts[:_SHOWN]) + (f" and {more} more" if more > 0 else "")
        raise DestinationExistsError(
            f"cannot merge into {dest}: {len(conflicts)} path{'s' if len(conflicts) != 1 else ''} would be "
            f"replaced: {shown}; nothing was changed. Pass overwrite=True (--force) with merge=True to replace them"
        )
    for e in entries:
        local = dest / e.path
        if e.type == "dir":
            if overwrite and local.is_file():
                local.unlink()
            local.mkdir(parents=True, exist_ok=True)
    for e in moves:
        local = dest / e.path
        local.parent.mkdir(parents=True, exist_ok=True)
        if local.is_dir() and not local.is_symlink():
            shutil.rmtree(local)
        os.replace(staged / e.path, local)


__all__ = ["SameFile", "Target", "check_parents", "install_file", "install_tree", "local_path", "plan"]
