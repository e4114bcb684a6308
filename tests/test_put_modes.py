"""``put(mode=...)``: copy, reflink, hardlink and move, as a user sees them on disk.

Hard links and moves run on any local disk. Clones need a filesystem that makes them: the
``xfs`` fixture loop-mounts a small XFS image (root, ``mkfs.xfs`` and loop devices needed),
and the tests that use it are skipped with the reason otherwise.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from scalable import IntegrityError, KeyConflictError, LocalArtifactStore, PutModeError, build_artifact_store
from scalable.artifacts.digests import DigestCache
from scalable.artifacts.store import BaseArtifactStore
from scalable.cli.app import main


def local_store(root: Path) -> LocalArtifactStore:
    store = build_artifact_store(root)
    assert isinstance(store, LocalArtifactStore)
    store.digests = DigestCache()  # private, in memory: each test sees its own stats
    return store


@pytest.fixture
def local(tmp_path: Path) -> LocalArtifactStore:
    return local_store(tmp_path / "store")


def object_file(store: LocalArtifactStore, key: str) -> Path:
    record = store._read_record(key)
    assert record is not None
    return store.root / record.object


def writable(path: Path) -> bool:
    return bool(stat.S_IMODE(path.stat().st_mode) & 0o222)


def edit_in_place(path: Path) -> None:
    """What a user does to a read-only file they mean to change: give it a write bit, write into it."""
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.write(b"EDITED")


# ---------------------------------------------------------------------- hardlink
def test_hardlink_stores_the_source_file_itself_read_only(local: LocalArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "data.bin"
    data = os.urandom(3 * 1024 * 1024)
    src.write_bytes(data)
    ref = local.put(src, "runs/data.bin", mode="hardlink")
    obj = object_file(local, "runs/data.bin")
    assert obj.stat().st_ino == src.stat().st_ino  # one file, two names: no byte was copied
    assert not writable(src) and not writable(obj)
    assert local.get_bytes("runs/data.bin") == data
    assert local.verify("runs/data.bin") == ref


def test_a_source_edited_behind_a_hard_link_is_detected(local: LocalArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "data.bin"
    src.write_bytes(os.urandom(200_000))
    local.put(src, "data.bin", mode="hardlink")
    edit_in_place(src)
    with pytest.raises(IntegrityError, match="'data.bin'"):
        local.verify("data.bin")
    with pytest.raises(IntegrityError, match="'data.bin'"):
        local.get("data.bin", tmp_path / "out.bin")
    assert not (tmp_path / "out.bin").exists()


def test_hardlink_of_a_directory_links_each_file(local: LocalArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha")
    (src / "sub" / "b.bin").write_bytes(os.urandom(50_000))
    (src / "empty").mkdir()
    ref = local.put(src, "tree", mode="hardlink")
    for rel in ("a.txt", "sub/b.bin"):
        f = src / rel
        assert f.stat().st_nlink == 2 and not writable(f)
    assert {e.path for e in local.tree("tree")} == {"a.txt", "empty", "sub", "sub/b.bin"}
    assert ref.digest == local_store(tmp_path / "copy").put(src, "tree", mode="copy").digest
    edit_in_place(src / "sub" / "b.bin")
    with pytest.raises(IntegrityError, match="sub/b.bin"):
        local.verify("tree")


def test_hardlink_of_content_already_stored_leaves_the_source_alone(local: LocalArtifactStore, tmp_path: Path) -> None:
    (tmp_path / "first").write_bytes(b"same bytes" * 1000)
    (tmp_path / "second").write_bytes(b"same bytes" * 1000)
    local.put(tmp_path / "first", "first", mode="copy")
    local.put(tmp_path / "second", "second", mode="hardlink")
    assert (tmp_path / "second").stat().st_nlink == 1 and writable(tmp_path / "second")
    assert local.get_bytes("second") == b"same bytes" * 1000


def test_hardlink_across_filesystems_is_refused_with_advice(tmp_path: Path) -> None:
    other = Path("/dev/shm")
    if not other.is_dir() or os.stat(other).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the test's temporary folder")
    store = local_store(tmp_path / "store")
    src = other / f"scalable-test-{uuid.uuid4().hex}"
    src.write_bytes(b"elsewhere")
    try:
        with pytest.raises(PutModeError, match="another filesystem.*mode='copy' or 'move'"):
            store.put(src, "x", mode="hardlink")
        assert not store.exists("x") and writable(src)
        store.put(src, "x", mode="move")  # copies across, then removes the source
        assert not src.exists()
        assert store.get_bytes("x") == b"elsewhere"
    finally:
        src.unlink(missing_ok=True)


# ---------------------------------------------------------------------- move
def test_move_removes_the_source_once_committed(local: LocalArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "result.bin"
    data = os.urandom(2 * 1024 * 1024)
    src.write_bytes(data)
    ino = src.stat().st_ino
    ref = local.put(src, "result.bin", mode="move")
    assert not src.exists()
    obj = object_file(local, "result.bin")
    assert obj.stat().st_ino == ino and not writable(obj)  # renamed into the store, not copied
    assert local.get_bytes("result.bin") == data and local.verify("result.bin") == ref


def test_move_of_a_directory_removes_it(local: LocalArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "out"
    (src / "deep" / "er").mkdir(parents=True)
    (src / "deep" / "x.txt").write_text("x")
    (src / "y.txt").write_text("y")
    local.put(src, "out", mode="move")
    assert not src.exists()
    local.get("out", tmp_path / "back")
    assert (tmp_path / "back" / "deep" / "x.txt").read_text() == "x"
    assert (tmp_path / "back" / "deep" / "er").is_dir()


def test_a_failed_move_keeps_the_source(local: LocalArtifactStore, tmp_path: Path) -> None:
    (tmp_path / "a").write_text("a")
    local.put(tmp_path / "a", "a", mode="copy")
    src = tmp_path / "b.txt"
    src.write_text("b")
    with pytest.raises(KeyConflictError):
        local.put(src, "a/b.txt", mode="move")  # "a" is an artifact: nothing can nest under it
    assert src.read_text() == "b" and writable(src)


def test_move_of_content_already_stored_removes_the_source(local: LocalArtifactStore, tmp_path: Path) -> None:
    (tmp_path / "one").write_text("twin")
    (tmp_path / "two").write_text("twin")
    local.put(tmp_path / "one", "one", mode="copy")
    local.put(tmp_path / "two", "two", mode="move")
    assert not (tmp_path / "two").exists() and (tmp_path / "one").exists()
    assert local.get_bytes("two") == b"twin"


# ---------------------------------------------------------------------- modes on every store
def test_remote_stores_copy_and_move_and_refuse_links(store: BaseArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "f.bin"
    data = os.urandom(100_000)
    src.write_bytes(data)
    if not isinstance(store, LocalArtifactStore):
        for mode in ("hardlink", "reflink"):
            with pytest.raises(PutModeError, match="needs the store on local disk.*mode='copy'"):
                store.put(src, "f.bin", mode=mode)  # type: ignore[arg-type]
        assert not store.exists("f.bin")
    store.put(src, "f.bin", mode="auto")
    assert src.exists() and store.get_bytes("f.bin") == data
    folder = tmp_path / "folder"
    (folder / "s").mkdir(parents=True)
    (folder / "s" / "1.txt").write_text("one")
    store.put(src, "moved.bin", mode="move")
    store.put(folder, "folder", mode="move")
    assert not src.exists() and not folder.exists()
    assert store.get_bytes("moved.bin") == data
    assert [e.path for e in store.tree("folder")] == ["s", "s/1.txt"]


def test_bad_modes_are_refused_before_any_write(local: LocalArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_text("f")
    with pytest.raises(PutModeError, match="unknown put mode 'symlink'.*auto, copy, reflink, hardlink, move"):
        local.put(src, "f", mode="symlink")  # type: ignore[arg-type]
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("x")
    with pytest.raises(PutModeError, match="packed directory.*pack=False"):
        local.put(tmp_path / "d", "d", pack=True, mode="hardlink")
    assert local.list_artifacts() == []


def test_reflink_where_the_filesystem_cannot_clone(tmp_path: Path) -> None:
    if _can_clone(tmp_path):
        pytest.skip(f"{tmp_path} clones files: nothing to refuse")
    store = local_store(tmp_path / "store")
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(10_000))
    with pytest.raises(PutModeError, match="cannot clone.*mode='auto'"):
        store.put(src, "f.bin", mode="reflink")
    assert not store.exists("f.bin")
    store.put(src, "f.bin")  # auto: a copy here
    obj = object_file(store, "f.bin")
    assert obj.stat().st_ino != src.stat().st_ino and writable(src)


def test_cli_put_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SCALABLE_MANIFEST", raising=False)
    Path("r.csv").write_text("a,b\n1,2\n")
    assert main(["put", "--mode", "move", "r.csv", "./st#r.csv", "--quiet"]) == 0
    assert capsys.readouterr().out.startswith("sha256:")
    assert not Path("r.csv").exists()
    Path("s.csv").write_text("s")
    assert main(["put", "--mode", "linky", "s.csv", "./st#s.csv"]) == 1
    err = capsys.readouterr().err
    assert "unknown put mode 'linky'" in err and err.count("\n") == 1
    assert Path("s.csv").exists()


# ---------------------------------------------------------------------- reflink (needs a cloning filesystem)
def _can_clone(folder: Path) -> bool:
    from scalable.artifacts.putmodes import CloneUnsupported, clone_file

    a, b = folder / f".probe-{uuid.uuid4().hex}", folder / f".probe-{uuid.uuid4().hex}"
    a.write_bytes(b"probe")
    try:
        clone_file(a, b)
        return True
    except CloneUnsupported:
        return False
    finally:
        a.unlink(missing_ok=True)
        b.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def xfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A freshly made XFS filesystem (with reflink) loop-mounted for these tests."""
    if os.geteuid() != 0:
        pytest.skip("reflink tests make an XFS filesystem: they need root (loop mount)")
    if shutil.which("mkfs.xfs") is None:
        pytest.skip("reflink tests make an XFS filesystem: install xfsprogs (mkfs.xfs)")
    base = tmp_path_factory.mktemp("xfs")
    image, mnt = base / "xfs.img", base / "mnt"
    mnt.mkdir()
    with open(image, "wb") as f:
        f.truncate(400 * 1024 * 1024)
    run: Callable[..., subprocess.CompletedProcess[str]] = lambda *cmd: subprocess.run(  # noqa: E731
        cmd, capture_output=True, text=True, timeout=120
    )
    made = run("mkfs.xfs", "-q", "-m", "reflink=1", str(image))
    if made.returncode != 0:
        pytest.skip(f"mkfs.xfs failed: {made.stderr.strip()[:200]}")
    mounted = run("mount", "-o", "loop", str(image), str(mnt))
    if mounted.returncode != 0:
        pytest.skip(f"cannot loop-mount an XFS image here: {mounted.stderr.strip()[:200]}")
    try:
        yield mnt
    finally:
        run("umount", str(mnt))
        image.unlink(missing_ok=True)


def _free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


@pytest.mark.parametrize("mode", ["reflink", "auto"])
def test_reflink_clones_without_using_space_and_keeps_the_source_writable(xfs: Path, mode: str) -> None:
    work = xfs / uuid.uuid4().hex
    work.mkdir()
    store = local_store(work / "store")
    src = work / "big.bin"
    data = os.urandom(64 * 1024 * 1024)
    src.write_bytes(data)
    os.sync()
    free = _free_bytes(xfs)
    ref = store.put(src, "big.bin", mode=mode)  # type: ignore[arg-type]
    os.sync()
    assert free - _free_bytes(xfs) < 8 * 1024 * 1024  # a clone: the 64 MiB were not written again
    obj = object_file(store, "big.bin")
    assert obj.stat().st_ino != src.stat().st_ino and not writable(obj) and writable(src)
    with open(src, "r+b") as f:  # the source stays the user's: editing it leaves the stored bytes alone
        f.write(b"EDITED")
    assert store.verify("big.bin") == ref and store.get_bytes("big.bin") == data


def test_copy_on_a_cloning_filesystem_writes_the_bytes(xfs: Path) -> None:
    work = xfs / uuid.uuid4().hex
    work.mkdir()
    store = local_store(work / "store")
    src = work / "big.bin"
    src.write_bytes(os.urandom(64 * 1024 * 1024))
    os.sync()
    free = _free_bytes(xfs)
    store.put(src, "big.bin", mode="copy")
    os.sync()
    assert free - _free_bytes(xfs) >= 60 * 1024 * 1024


def test_reflink_of_a_directory_clones_each_file(xfs: Path) -> None:
    work = xfs / uuid.uuid4().hex
    (work / "tree" / "s").mkdir(parents=True)
    (work / "tree" / "a").write_bytes(os.urandom(1000))
    (work / "tree" / "s" / "b").write_bytes(os.urandom(1000))
    store = local_store(work / "store")
    store.put(work / "tree", "tree", mode="reflink")
    assert all(f.stat().st_nlink == 1 and writable(f) for f in (work / "tree" / "a", work / "tree" / "s" / "b"))
    assert store.verify("tree").kind.value == "dir"


# ---------------------------------------------------------------------- large copies (O_DIRECT writes)
@pytest.mark.parametrize("size", [64 * 1024 * 1024, 64 * 1024 * 1024 + 8 * 1024 * 1024 + 4097])
def test_a_large_copy_is_byte_exact_with_and_without_direct_writes(tmp_path: Path, size: int) -> None:
    import hashlib

    src = tmp_path / "big.bin"
    with open(src, "wb") as f:
        block = os.urandom(1024 * 1024)
        for i in range(size // len(block)):
            f.write(hashlib.sha256(block + bytes([i % 256])).digest() * (len(block) // 32))
        f.write(os.urandom(size % len(block)))
    expected = "sha256:" + hashlib.sha256(src.read_bytes()).hexdigest()
    for direct in (64 * 1024 * 1024, None):
        store = local_store(tmp_path / f"store-{direct}")
        store.direct_io_min_bytes = direct
        ref = store.put(src, "big.bin", mode="copy")
        assert ref.digest == expected and ref.size_bytes == size
        obj = object_file(store, "big.bin")
        assert obj.stat().st_size == size and obj.stat().st_ino != src.stat().st_ino
        assert store.verify("big.bin") == ref
        assert list((store.root / ".scalable" / "tmp").iterdir()) == []


def test_where_direct_writes_are_refused_a_large_put_copies_through_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import scalable.artifacts.local as local_module
    from scalable.artifacts.direct import DirectUnsupported

    tried: list[Path] = []

    def refuse(dest: Path) -> tuple[int, int]:  # as tmpfs before Linux 6.6 and some FUSE mounts do
        tried.append(dest)
        raise DirectUnsupported(22, "O_DIRECT refused: Invalid argument")

    monkeypatch.setattr(local_module, "open_direct", refuse)
    store = local_store(tmp_path / "store")
    store.direct_io_min_bytes = 1
    src = tmp_path / "f.bin"
    data = os.urandom(3 * 1024 * 1024 + 5)
    src.write_bytes(data)
    assert store.put(src, "f.bin", mode="copy").size_bytes == len(data)
    assert tried and store.get_bytes("f.bin") == data


def test_opening_a_store_never_sweeps_a_hard_link_a_put_is_making(local: LocalArtifactStore, tmp_path: Path) -> None:
    (tmp_path / "seed").write_text("seed")
    local.put(tmp_path / "seed", "seed")  # the store and its tmp folder exist
    old = time.time() - 7200
    src = tmp_path / "source.bin"  # a user's file written two hours ago, being linked in
    src.write_bytes(b"user data")
    os.utime(src, (old, old))
    os.link(src, local.root / ".scalable" / "tmp" / "in-flight")
    stale = local.root / ".scalable" / "tmp" / "stale"  # what a killed copy leaves
    stale.write_bytes(b"partial")
    os.utime(stale, (old, old))
    local_store(local.root)  # opening a store sweeps its tmp folder
    assert not stale.exists() and (local.root / ".scalable" / "tmp" / "in-flight").exists()
    assert src.read_bytes() == b"user data"


def test_a_hardlink_put_survives_gc_taking_its_temporary_name(
    local: LocalArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import scalable.artifacts.local as local_module

    src = tmp_path / "old.bin"
    src.write_bytes(os.urandom(100_000))
    real_make_read_only = local_module.make_read_only

    def then_gc(path: Path) -> int:  # a gc in another process removes old tmp files right now
        mode = real_make_read_only(path)
        os.unlink(path)
        return mode

    monkeypatch.setattr(local_module, "make_read_only", then_gc)
    ref = local.put(src, "old.bin", mode="hardlink")
    assert object_file(local, "old.bin").stat().st_ino == src.stat().st_ino
    assert local.verify("old.bin") == ref
