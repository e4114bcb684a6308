"""The local mirror (``store.fetch``): verified read-only copies by digest, shared by processes, bounded.

Stores are real (local disk and SeaweedFS for S3); the only wrapper counts the calls a
fetch makes to the real store.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scalable.artifacts import mirror as mirror_module
from scalable.artifacts.mirror import Mirror, MirrorError, MirrorFullError, default_mirror
from scalable.artifacts.ref import ArtifactRef
from scalable.artifacts.store import BaseArtifactStore
from scalable.cli.app import main
from scalable.errors import ArtifactNotFoundError, ScalableError
from tests.conftest import make_store_factory


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BaseArtifactStore:
    return make_store_factory(request, str(request.param), tmp_path)()


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[Mirror]:
    m = Mirror(tmp_path / "mirror")
    yield m
    m.release()


@pytest.fixture
def env_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``store.fetch`` uses a mirror in this test's folder, with no manifest and no bound."""
    root = tmp_path / "env-mirror"
    monkeypatch.setenv("SCALABLE_MIRROR_DIR", str(root))
    monkeypatch.delenv("SCALABLE_MIRROR_MAX_BYTES", raising=False)
    monkeypatch.delenv("SCALABLE_MANIFEST", raising=False)
    monkeypatch.chdir(tmp_path)
    yield root
    Mirror(root).release()


class Counting:
    """A real store, with a list of the methods called on it."""

    def __init__(self, store: Any):
        self._store = store
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return attr(*args, **kwargs)

        return call


def _tree(root: Path) -> Path:
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "a.txt").write_bytes(b"alpha\n")
    (root / "sub" / "b.bin").write_bytes(os.urandom(3000))
    (root / "sub" / "deep" / "c.txt").write_bytes(b"c")
    return root


def _snapshot(root: Path) -> dict[str, bytes | None]:
    return {p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def test_fetch_gives_a_read_only_verified_copy_and_a_second_fetch_only_reads_the_ref(
    store: BaseArtifactStore, mirror: Mirror, tmp_path: Path
) -> None:
    src = tmp_path / "table.csv"
    src.write_bytes(b"a,b\n1,2\n")
    ref = store.put(src, "results/table.csv")
    counting = Counting(store)

    path = mirror.fetch(counting, "results/table.csv")  # type: ignore[arg-type]
    assert path.read_bytes() == src.read_bytes()
    assert path.name == "table.csv"
    assert stat.S_IMODE(path.stat().st_mode) & 0o222 == 0
    assert counting.calls == ["info", "get"]

    counting.calls.clear()
    assert mirror.fetch(counting, "results/table.csv") == path  # type: ignore[arg-type]
    assert counting.calls == ["info"]
    # Another key with the same bytes is the same entry: no second download either.
    store.put(src, "copies/again.csv")
    counting.calls.clear()
    assert mirror.fetch(counting, "copies/again.csv") == path  # type: ignore[arg-type]
    assert counting.calls == ["info"]
    assert [e.digest for e in mirror.entries()] == [ref.digest]


def test_fetch_of_a_directory_gives_the_whole_tree_read_only(
    store: BaseArtifactStore, mirror: Mirror, tmp_path: Path
) -> None:
    src = _tree(tmp_path / "src")
    store.put(src, "trees/packed", pack=True)
    store.put(src, "trees/unpacked")
    packed = mirror.fetch(store, "trees/packed")
    assert packed.is_dir() and _snapshot(packed) == _snapshot(src)
    assert all(stat.S_IMODE(p.stat().st_mode) & 0o222 == 0 for p in [packed, *packed.rglob("*")])
    # Equal trees have equal digests, packed or not: one entry.
    assert mirror.fetch(store, "trees/unpacked") == packed
    assert len(mirror.entries()) == 1


def test_fetch_by_digest_works_with_the_remote_down(
    s3_server: Any, mirror: Mirror, tmp_path: Path, unused_tcp_port: int
) -> None:
    live = make_store_factory_s3(s3_server)
    ref = live.put_bytes(b"kept locally", "blob.bin")
    path = mirror.fetch(live, "blob.bin")
    from scalable import build_artifact_store

    options = {**s3_server.storage_options, "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{unused_tcp_port}"}}
    down = build_artifact_store(live.uri, **options)
    counting = Counting(down)
    assert mirror.fetch(counting, ref.digest) == path  # type: ignore[arg-type]
    assert counting.calls == []
    assert path.read_bytes() == b"kept locally"
    # A digest that is not mirrored needs the store, and says so when no artifact has it.
    with pytest.raises(ArtifactNotFoundError, match="not in the local mirror"):
        mirror.fetch(live, "sha256:" + "0" * 64)


def make_store_factory_s3(server: Any) -> BaseArtifactStore:
    import uuid

    from scalable import build_artifact_store

    bucket = server.shared_bucket()
    return build_artifact_store(server.url(bucket, uuid.uuid4().hex), **server.storage_options)  # type: ignore[return-value]


@pytest.fixture
def unused_tcp_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_store_fetch_and_is_fetched_use_the_configured_mirror(
    env_mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scalable import build_artifact_store

    store = build_artifact_store(tmp_path / "store")
    ref = store.put_bytes(b"one", "k/one.txt")
    assert not store.is_fetched("k/one.txt")
    path = store.fetch("k/one.txt")
    assert path.is_relative_to(env_mirror)
    assert store.is_fetched("k/one.txt") and store.is_fetched(ref.digest)
    # The key now names other bytes: those are not fetched yet.
    store.put_bytes(b"two", "k/one.txt")
    assert not store.is_fetched("k/one.txt")
    assert store.fetch("k/one.txt").read_bytes() == b"two"
    assert path.read_bytes() == b"one"  # the old content is still mirrored under its own digest


def test_an_entry_edited_behind_scalables_back_is_refetched_never_served(
    store: BaseArtifactStore, mirror: Mirror, tmp_path: Path
) -> None:
    src = tmp_path / "f.txt"
    src.write_bytes(b"original bytes\n")
    store.put(src, "f.txt")
    path = mirror.fetch(store, "f.txt")
    os.chmod(path, 0o644)
    path.write_bytes(b"edited!!\n")
    counting = Counting(store)
    again = mirror.fetch(counting, "f.txt")  # type: ignore[arg-type]
    assert again.read_bytes() == b"original bytes\n"
    assert counting.calls == ["info", "get"]
    # Touched but unchanged bytes are still served, after a re-hash, without a download.
    os.utime(again, ns=(1, 1))
    counting.calls.clear()
    assert mirror.fetch(counting, "f.txt").read_bytes() == b"original bytes\n"  # type: ignore[arg-type]
    assert counting.calls == ["info"]

    tree = _tree(tmp_path / "src")
    store.put(tree, "tree")
    local = mirror.fetch(store, "tree")
    os.chmod(local, 0o755)
    (local / "added.txt").write_bytes(b"not part of the artifact")
    assert not mirror.contains(store.info("tree").digest)
    assert _snapshot(mirror.fetch(store, "tree")) == _snapshot(tree)


def test_eight_processes_fetching_one_digest_download_it_once(
    store: BaseArtifactStore, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    data = os.urandom(4 * 1024 * 1024)
    ref = store.put_bytes(data, "big.bin")
    options: dict[str, Any] = {}
    if store.scheme == "s3":
        options = request.getfixturevalue("s3_server").storage_options
    log, go = tmp_path / "downloads.log", tmp_path / "go"
    child = textwrap.dedent(
        """
        import json, os, sys, time
        from scalable import build_artifact_store
        from scalable.artifacts.mirror import Mirror
        cfg = json.loads(sys.argv[1])
        store = build_artifact_store(cfg["uri"], **cfg["options"])
        real_get = store.get
        def counted_get(*args, **kwargs):
            with open(cfg["log"], "a") as f:
                f.write(f"{os.getpid()}\\n")
            return real_get(*args, **kwargs)
        store.get = counted_get
        while not os.path.exists(cfg["go"]):
            time.sleep(0.005)
        path = Mirror(cfg["mirror"]).fetch(store, "big.bin")
        print(path)
        """
    )
    cfg = {"uri": store.uri, "options": options, "log": str(log), "go": str(go), "mirror": str(tmp_path / "m")}
    procs = [
        subprocess.Popen([sys.executable, "-c", child, json.dumps(cfg)], stdout=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    time.sleep(1.0)
    go.touch()
    outs = [p.communicate(timeout=240)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0] * 8
    assert len(set(outs)) == 1 and Path(outs[0]).read_bytes() == data
    assert len(log.read_text().splitlines()) == 1
    assert [e.digest for e in Mirror(tmp_path / "m").entries()] == [ref.digest]


def _holder(root: Path, uri: str, key: str) -> subprocess.Popen[str]:
    """A process that fetches ``key`` into the mirror at ``root`` and holds it until its stdin closes."""
    code = textwrap.dedent(
        f"""
        import sys
        from scalable import build_artifact_store
        from scalable.artifacts.mirror import Mirror
        path = Mirror({str(root)!r}).fetch(build_artifact_store({uri!r}), {key!r})
        print(path, flush=True)
        sys.stdin.read()
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()
    return proc


def test_the_bound_evicts_least_recently_used_entries_but_never_one_a_process_holds(tmp_path: Path) -> None:
    from scalable import build_artifact_store

    store = build_artifact_store(tmp_path / "store")
    for name in ("w", "x", "y"):
        store.put_bytes(name.encode() * 1000, name)
    root = tmp_path / "mirror"
    m = Mirror(root, max_bytes=1500)
    w = m.fetch(store, "w")
    m.release()  # this process no longer uses w
    holder = _holder(root, store.uri, "x")
    try:
        time.sleep(0.05)
        y = m.fetch(store, "y")  # needs room: w goes; x is held by the other process and stays
        assert not w.exists()
        x = Path(m.entries()[0].path)
        assert x.read_bytes() == b"x" * 1000 and y.read_bytes() == b"y" * 1000
        assert {e.key for e in m.entries()} == {"x", "y"}
        assert m.in_use(store.info("x").digest)
        assert m.prune() == []  # over the bound, but x is held and y is this process's
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)
    removed = m.prune()
    assert [e.key for e in removed] == ["x"]
    assert not x.exists() and y.exists()
    with pytest.raises(MirrorError, match="larger than the local mirror's bound"):
        Mirror(root, max_bytes=10).fetch(store, "w")
    m.release()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, to fill up (needs root: skipped elsewhere)."""
    where = tmp_path / "small-disk"
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.decode().strip()}")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_disk_during_fetch_is_a_clear_error_and_leaves_nothing_partial(small_disk: Path, tmp_path: Path) -> None:
    from scalable import build_artifact_store

    store = build_artifact_store(tmp_path / "store")
    store.put_bytes(os.urandom(3 * 1024 * 1024), "large.bin")
    src = _tree(tmp_path / "src")
    (src / "sub" / "big.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    store.put(src, "large-tree")
    m = Mirror(small_disk / "mirror")
    for key in ("large.bin", "large-tree"):
        with pytest.raises(MirrorFullError, match="disk of the local mirror .* is full") as info:
            m.fetch(store, key)
        assert isinstance(info.value, ScalableError)
        assert m.entries() == []
        assert list((small_disk / "mirror" / "entries").iterdir()) == []
        assert list((small_disk / "mirror" / "tmp").iterdir()) == []
        assert not m.in_use(store.info(key).digest)  # a failed fetch holds nothing
    m.prune(everything=True)
    assert list((small_disk / "mirror" / "locks").iterdir()) == []  # nor leaves lock files behind
    store.put_bytes(b"small", "small.bin")
    assert m.fetch(store, "small.bin").read_bytes() == b"small"
    m.release()


def test_a_fetch_killed_before_its_record_leaves_an_entry_that_is_replaced(tmp_path: Path) -> None:
    from scalable import build_artifact_store

    store = build_artifact_store(tmp_path / "store")
    ref = store.put_bytes(b"content", "k")
    m = Mirror(tmp_path / "mirror")
    path = m.fetch(store, "k")
    m._record_path(ref.hexdigest).unlink()  # as if killed between moving the content and writing its record
    assert not m.contains(ref.digest) and m.entries() == []
    leftover = tmp_path / "mirror" / "tmp" / f"{ref.hexdigest}.killed"  # a download killed half-way
    leftover.mkdir()
    (leftover / "k").write_bytes(b"cont")
    assert m.fetch(store, "k").read_bytes() == b"content"
    assert not leftover.exists()
    assert path.exists() and m.contains(ref.digest)
    m.release()


def test_a_version_is_fetched_and_a_store_without_versions_refuses_clearly(
    store: BaseArtifactStore, mirror: Mirror
) -> None:
    store.put_bytes(b"first", "k")
    store.put_bytes(b"second", "k")
    assert mirror.fetch(store, "k", version=1).read_bytes() == b"first"
    assert mirror.fetch(store, "k").read_bytes() == b"second"

    class Unversioned:
        """A third-party store written before versions: its reads take no ``version=``."""

        uri = store.uri

        def info(self, key: str) -> ArtifactRef:
            return store.info(key)

        def get(self, key: str, local_path: Any, **options: Any) -> Path:
            return store.get(key, local_path)

    with pytest.raises(MirrorError, match="does not support versions yet"):
        mirror.fetch(Unversioned(), "k", version=1)  # type: ignore[arg-type]
    mirror.release()


def test_the_mirror_is_found_by_environment_then_manifest_then_user_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("SCALABLE_MIRROR_DIR", "SCALABLE_MIRROR_MAX_BYTES", "SCALABLE_MANIFEST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    import platformdirs

    assert default_mirror().root == Path(platformdirs.user_cache_dir("scalable")) / "mirror"
    assert default_mirror().max_bytes is None
    (tmp_path / "scalable.yaml").write_text(
        "version: 1\nproject:\n  local_mirror: ./mirror-here\n  mirror_max_bytes: 2GiB\n"
    )
    assert default_mirror().root == tmp_path / "mirror-here"
    assert default_mirror().max_bytes == 2 * 1024**3
    monkeypatch.setenv("SCALABLE_MIRROR_DIR", str(tmp_path / "from-env"))
    monkeypatch.setenv("SCALABLE_MIRROR_MAX_BYTES", "500MB")
    assert default_mirror().root == tmp_path / "from-env"
    assert default_mirror().max_bytes == 500 * 1000**2
    monkeypatch.setenv("SCALABLE_MIRROR_MAX_BYTES", "lots")
    with pytest.raises(MirrorError, match="SCALABLE_MIRROR_MAX_BYTES"):
        default_mirror()
    mirror_module._default_cache.clear()


def test_mirror_ls_and_prune_commands(env_mirror: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from scalable import build_artifact_store

    def cli(*args: str) -> tuple[int, str]:
        code = main(list(args))
        return code, capsys.readouterr().out

    code, out = cli("mirror", "ls", "--json")
    assert code == 0 and json.loads(out)["entries"] == []
    assert not env_mirror.exists()  # a command that only reads creates nothing
    store = build_artifact_store(tmp_path / "store")
    store.put_bytes(b"a" * 10, "a.txt")
    store.put_bytes(b"b" * 20, "b.txt")
    store.fetch("a.txt")
    store.fetch("b.txt")
    code, out = cli("mirror", "ls")
    assert code == 0 and "2 entries" in out and "a.txt" in out and "in use" in out
    doc = json.loads(cli("mirror", "ls", "--json")[1])
    assert [(e["key"], e["size_bytes"], e["in_use"]) for e in doc["entries"]] == [
        ("a.txt", 10, True),
        ("b.txt", 20, True),
    ]
    assert main(["mirror", "prune"]) == 2  # no bound and no option: nothing to decide by
    capsys.readouterr()
    code, out = cli("mirror", "prune", "--all", "--json")
    assert code == 0 and json.loads(out)["removed"] == 0  # this process holds both
    Mirror(env_mirror).release(store.info("a.txt").digest)
    code, out = cli("mirror", "prune", "--all")
    assert code == 0 and "removed 1 entry (10 bytes)" in out
    assert [e["key"] for e in json.loads(cli("mirror", "ls", "--json")[1])["entries"]] == ["b.txt"]
