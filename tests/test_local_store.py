"""What only a local store does: real files on disk, fsync+rename, the stat-keyed digest cache."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from scalable import ArtifactKindError, IntegrityError, LocalArtifactStore, build_artifact_store
from scalable.artifacts import digests
from scalable.artifacts.digests import DigestCache
from scalable.artifacts.layout import TMP


@pytest.fixture
def local(tmp_path: Path) -> LocalArtifactStore:
    store = build_artifact_store(tmp_path / "store")
    assert isinstance(store, LocalArtifactStore)
    store.digests = DigestCache()  # a private, in-memory cache per test
    return store


def object_file(store: LocalArtifactStore, key: str) -> Path:
    record = store._read_record(key)
    assert record is not None
    return store.root / record.object


def test_bytes_altered_on_disk_are_detected(local: LocalArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(10_000))
    local.put(src, "f.bin")
    on_disk = object_file(local, "f.bin")
    with open(on_disk, "r+b") as f:  # flip one byte in place
        f.seek(5000)
        byte = f.read(1)
        f.seek(5000)
        f.write(bytes([byte[0] ^ 1]))
    for call in (
        lambda: local.get("f.bin", tmp_path / "out.bin"),
        lambda: local.get_bytes("f.bin"),
        lambda: local.open("f.bin").read(),
        lambda: local.verify("f.bin"),
    ):
        with pytest.raises(IntegrityError, match="'f.bin'"):
            call()
    assert not (tmp_path / "out.bin").exists()
    os.truncate(on_disk, 100)
    with pytest.raises(IntegrityError, match="'f.bin'"):
        local.verify("f.bin")
    on_disk.unlink()
    with pytest.raises(IntegrityError, match="missing"):
        local.get("f.bin", tmp_path / "out.bin")


def test_unchanged_reput_costs_a_stat_not_a_hash(
    local: LocalArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(2_000_000))
    first = local.put(src, "big.bin")
    hashed = []
    real = digests.hash_file
    monkeypatch.setattr(digests, "hash_file", lambda p, *a, **k: hashed.append(p) or real(p, *a, **k))
    assert local.put(src, "big.bin") == first
    assert hashed == []
    # A changed file (same size, new content) is noticed: its stat changed.
    data = bytearray(src.read_bytes())
    data[0] ^= 1
    src.write_bytes(bytes(data))
    assert local.put(src, "big.bin").digest != first.digest


def test_digest_cache_is_shared_between_processes(tmp_path: Path) -> None:
    cache_dir = tmp_path / "digests"
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(100_000))
    DigestCache(cache_dir).file_digest(src)
    code = textwrap.dedent(
        f"""
        from scalable.artifacts import digests
        def boom(*a, **k):
            raise SystemExit("hashed again")
        digests.hash_file = boom
        print(digests.DigestCache({str(cache_dir)!r}).file_digest({str(src)!r})[0])
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == digests.hash_file(src)[0]


def test_digest_cache_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SCALABLE_DIGEST_CACHE", "off")
    assert digests.default_digest_cache_dir() is None
    monkeypatch.setenv("SCALABLE_DIGEST_CACHE", str(tmp_path / "d"))
    assert digests.default_digest_cache_dir() == tmp_path / "d"
    monkeypatch.delenv("SCALABLE_DIGEST_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert digests.default_digest_cache_dir() == tmp_path / "xdg" / "scalable" / "digests"


def test_unwritable_digest_cache_falls_back_to_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    cache = DigestCache(blocker / "digests")
    src = tmp_path / "f"
    src.write_bytes(b"abc")
    assert cache.file_digest(src)[0] == digests.digest_bytes(b"abc")


def test_symlinks_are_followed_and_special_files_refused(local: LocalArtifactStore, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tmp_path / "outside.txt").write_text("linked content")
    (tree / "link.txt").symlink_to(tmp_path / "outside.txt")
    local.put(tree, "t")
    assert local.open("t", member="link.txt").read() == b"linked content"
    os.mkfifo(tree / "pipe")
    with pytest.raises(ArtifactKindError, match="not a regular file"):
        local.put(tree, "t2")
    (tree / "pipe").unlink()
    (tree / "loop").symlink_to(tree)
    with pytest.raises(ArtifactKindError, match="symlink cycle"):
        local.put(tree, "t3")
    assert local.list_artifacts() == ["t"]


def test_failed_put_leaves_nothing_behind(
    local: LocalArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(64 * 1024 * 1024))  # large enough for the threaded copy

    class Full(OSError):
        pass

    writes = {"n": 0}
    real_write, real_pwrite = os.write, os.pwrite

    def failing_write(fd: int, data: bytes) -> int:
        writes["n"] += 1
        if writes["n"] == 3:
            raise Full(28, "No space left on device")
        return real_write(fd, data)

    def failing_pwrite(fd: int, data: bytes, offset: int) -> int:  # large files: O_DIRECT writes at offsets
        writes["n"] += 1
        if writes["n"] == 3:
            raise Full(28, "No space left on device")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "write", failing_write)
    monkeypatch.setattr(os, "pwrite", failing_pwrite)
    with pytest.raises(Full):
        local.put(src, "f.bin")
    monkeypatch.undo()
    assert not local.exists("f.bin")
    assert list((local.root / TMP).iterdir()) == []
    assert not any(p.is_file() for p in (local.root / ".scalable" / "objects").rglob("*"))
    assert local.put(src, "f.bin").size_bytes == 64 * 1024 * 1024


def test_get_never_leaves_partial_files(local: LocalArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(b"good bytes")
    local.put(src, "f.bin")
    dest = tmp_path / "dest.bin"
    dest.write_bytes(b"what was here before")
    object_file(local, "f.bin").write_bytes(b"evil bytes")
    with pytest.raises(IntegrityError):
        local.get("f.bin", dest, overwrite=True)
    assert dest.read_bytes() == b"what was here before"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest.bin", "f.bin", "store"]


def test_large_file_roundtrip_through_the_threaded_copy(local: LocalArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    payload = os.urandom(40 * 1024 * 1024 + 123)
    src.write_bytes(payload)
    ref = local.put(src, "big.bin")
    assert ref.digest == digests.digest_bytes(payload) and ref.size_bytes == len(payload)
    out = local.get("big.bin", tmp_path / "copy.bin")
    assert out.read_bytes() == payload


def test_temporary_files_of_killed_writers_are_swept_and_live_ones_kept(tmp_path: Path) -> None:
    """A put killed mid-write leaves its temporary file; the next store opened on the root removes it.

    Found by the crash suite: each killed local put left up to its whole size in .scalable/tmp forever.
    """
    root = tmp_path / "store"
    LocalArtifactStore(root).put_bytes(b"x", "first")  # a store's folders appear at its first write
    tmp = root / TMP
    old = time.time() - 3600
    left = tmp / "left-by-a-killed-put"
    left.write_bytes(b"x" * 1000)
    os.utime(left, (old, old))
    recent = tmp / "being-written-now"
    recent.write_bytes(b"y")
    held = tmp / "held-by-a-slow-writer"
    held.write_bytes(b"z")
    os.utime(held, (old, old))
    # A live writer in another process holds its file's lock however old the file looks.
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl,sys,time; f=open(sys.argv[1],'ab'); fcntl.flock(f, fcntl.LOCK_EX); "
            "print('locked', flush=True); time.sleep(60)",
            str(held),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "locked"
        store = LocalArtifactStore(root)
        assert sorted(p.name for p in tmp.iterdir()) == ["being-written-now", "held-by-a-slow-writer"]
        assert store.sweep_tmp(older_than=0) == 1  # the recent unlocked one, when asked to
    finally:
        writer.kill()
        writer.wait()
    assert store.sweep_tmp(older_than=0) == 1  # the writer is gone: its file is a leftover now
    assert list(tmp.iterdir()) == []
    ref = store.put_bytes(b"still works", "k")
    assert store.get_bytes("k") == b"still works" and ref.size_bytes == 11


def test_open_verify_first_hands_out_no_byte_of_a_damaged_file(local: LocalArtifactStore, tmp_path: Path) -> None:
    """Issue 13: a chunked open().read(n) handed out bytes of a corrupted file before the IntegrityError."""
    payload = os.urandom(3 * 1024 * 1024)
    src = tmp_path / "f.bin"
    src.write_bytes(payload)
    local.put(src, "f.bin")
    with local.open("f.bin", verify="first") as f:
        assert f.read(10) == payload[:10] and f.read() == payload[10:]
    object_file(local, "f.bin").write_bytes(payload[:-1] + b"!")
    with local.open("f.bin") as streaming:  # the default checks at the end: early bytes come out
        assert streaming.read(10) == payload[:10]
    with pytest.raises(IntegrityError):
        local.open("f.bin", verify="first")
    with pytest.raises(ValueError, match="'first'"):
        local.open("f.bin", verify="yes")  # type: ignore[arg-type]
