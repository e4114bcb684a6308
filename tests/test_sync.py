"""Copy and sync between stores by digest (``scalable.copy_artifact``, ``scalable.sync``), on real servers.

S3 is SeaweedFS, GCS fake-gcs-server, Azure Azurite, all on 127.0.0.1 (see tests/servers).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import scalable
from scalable import IntegrityError, SyncConflictError, copy_artifact, sync
from scalable.artifacts.layout import SHA256_OBJECTS, object_path
from scalable.artifacts.store import BaseArtifactStore
from tests.conftest import make_store_factory, make_tree

Factory = Callable[[], BaseArtifactStore]


def factory(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Factory:
    return make_store_factory(request, backend, tmp_path)


def history(store: BaseArtifactStore, key: str) -> list[tuple[Any, ...]]:
    """What a user sees of a key's versions, without the store-specific parts (uri, numbers)."""
    return [(r.kind.value, r.digest, r.size_bytes, r.created_at, r.metadata) for r in store.versions(key)]


def fill(store: BaseArtifactStore, tmp_path: Path) -> None:
    """Two versions of a file, a blob, an unpacked and a packed directory."""
    src = tmp_path / f"f-{uuid.uuid4().hex[:6]}.csv"
    src.write_text("x,y\n1,2\n")
    store.put(src, "runs/a.csv", metadata={"step": 1})
    src.write_text("x,y\n1,2\n3,4\n")
    store.put(src, "runs/a.csv", metadata={"step": 2})
    store.put_bytes(b"blob bytes", "runs/b.bin")
    tree = make_tree(tmp_path / f"tree-{uuid.uuid4().hex[:6]}")
    store.put(tree, "runs/tree")
    store.put(tree, "runs/packed", pack=True)


PAIRS = [
    ("local", "s3"),
    ("s3", "local"),
    ("s3", "gcs"),
    ("gcs", "azure"),
    ("azure", "local"),
    ("local", "s3-fsspec"),
    ("s3", "s3"),  # one bucket: server-side copies
    ("azure", "azure"),
    ("gcs", "gcs"),
]


@pytest.mark.parametrize(("source", "destination"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_sync_all_versions_between_backends(
    request: pytest.FixtureRequest, tmp_path: Path, source: str, destination: str
) -> None:
    src = factory(request, source, tmp_path)()
    dst = factory(request, destination, tmp_path)()
    fill(src, tmp_path)

    summary = sync(src, dst, versions="all")

    keys = ["runs/a.csv", "runs/b.bin", "runs/packed", "runs/tree"]
    assert dst.list_artifacts() == keys
    for key in keys:
        assert history(dst, key) == history(src, key)
        assert dst.verify(key).digest == src.info(key).digest
    assert [r.version for r in dst.versions("runs/a.csv")] == [1, 2]
    assert dst.info("runs/a.csv").uri == dst.uri_for("runs/a.csv")
    assert dst.get_bytes("runs/a.csv") == b"x,y\n1,2\n3,4\n"
    assert dst.open("runs/packed", member="sub/b.bin").read() == bytes(range(256)) * 4
    got = dst.get("runs/tree", tmp_path / "back" / "tree")
    assert (got / "sub" / "deeper" / "c.csv").read_text() == "x,y\n1,2\n"
    assert summary.keys == 4 and summary.refs == 5 and not summary.failed
    if source == destination:
        assert summary.server_side == summary.objects > 0
    else:
        assert summary.server_side == 0

    again = sync(src, dst, versions="all")
    assert (again.refs, again.objects, again.bytes, again.skipped) == (0, 0, 0, 4)
    assert dst.gc(grace=0).objects == []  # every copied object is named by a copied version


def test_a_layout_2_source_syncs_into_a_layout_3_destination(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    from tests.test_store_contract import V2_KEYS, assert_reads_the_v2_fixture, copy_v2_fixture_into

    src = factory(request, "local", tmp_path)()
    copy_v2_fixture_into(src)  # read as it is, never written
    dst = factory(request, "s3", tmp_path)()
    summary = sync(src, dst, versions="all")
    assert summary.keys == len(V2_KEYS) and not summary.failed
    assert_reads_the_v2_fixture(dst, tmp_path)
    assert json.loads(dst._read_bytes(".scalable/store.json"))["format"] == "scalable.store/3"
    assert [history(dst, k) for k in V2_KEYS] == [history(src, k) for k in V2_KEYS]


def test_copy_artifact_only_moves_what_the_destination_lacks(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    src = factory(request, "local", tmp_path)()
    dst = factory(request, "s3", tmp_path)()
    fill(src, tmp_path)
    ref = copy_artifact(src, "runs/tree", dst, "copies/tree")
    assert ref.key == "copies/tree" and ref.digest == src.info("runs/tree").digest
    assert ref.created_at == src.info("runs/tree").created_at
    # The packed copy of the same tree shares the members' digests but not their objects: only its pack moves.
    before = set(dst._list_files(SHA256_OBJECTS))
    packed = copy_artifact(src, "runs/packed", dst)
    added = set(dst._list_files(SHA256_OBJECTS)) - before
    assert [name.endswith(".pack") for name in added] == [True]
    assert packed.digest == ref.digest
    assert copy_artifact(src, "runs/a.csv", dst, versions="all").version == 2
    assert [r.metadata for r in dst.versions("runs/a.csv")] == [{"step": 1}, {"step": 2}]


class Counting:
    """Counts the requests a store makes, by primitive, and the objects they name."""

    METHODS = (
        "_read_bytes",
        "_read_many",
        "_head",
        "_exists",
        "_write_bytes",
        "_create_exclusive",
        "_list_files",
        "_list_stats",
        "_open_read",
        "_open_write",
        "_server_copy_from",
    )

    def __init__(self, store: BaseArtifactStore) -> None:
        self.calls: Counter[str] = Counter()
        for name in self.METHODS:
            original = getattr(store, name, None)
            if original is not None:
                setattr(store, name, self._wrap(name, original))

    def _wrap(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            n = len(args[0]) if name == "_read_many" else 1
            self.calls[name] += n
            return original(*args, **kwargs)

        return counted


def test_a_sync_with_nothing_changed_makes_no_per_object_request(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    src = factory(request, "local", tmp_path)()
    dst = factory(request, "s3", tmp_path)()
    for i in range(120):
        src.put_bytes(f"payload {i}".encode(), f"data/{i:03d}.txt")
    first = sync(src, dst)
    assert (first.keys, first.objects, first.skipped) == (120, 120, 0)

    src_calls, dst_calls = Counting(src).calls, Counting(dst).calls
    again = sync(src, dst)
    assert (again.refs, again.objects, again.skipped) == (0, 0, 120)
    # A listing of each side and the read of the sync record: nothing per key or per object.
    assert dict(src_calls) == {"_list_stats": 1}
    assert dict(dst_calls) == {"_list_stats": 1, "_read_bytes": 1}

    # One changed key costs its own reads, not the others'.
    src.put_bytes(b"changed", "data/007.txt")
    changed = sync(src, dst)
    assert (changed.refs, changed.objects, changed.skipped) == (1, 1, 119)
    assert dst.get_bytes("data/007.txt") == b"changed"
    assert [r.version for r in dst.versions("data/007.txt")] == [1, 2]


def test_a_source_object_that_fails_verification_commits_nothing(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    src = factory(request, "local", tmp_path)()
    dst = factory(request, "s3", tmp_path)()
    bad = src.put_bytes(b"good bytes", "bad.txt")
    src.put_bytes(b"other bytes", "good.txt")
    obj = Path(src.root) / object_path(bad.digest)  # type: ignore[attr-defined]
    obj.chmod(0o644)
    obj.write_bytes(b"evil bytes")

    with pytest.raises(IntegrityError, match="failed verification") as caught:
        sync(src, dst)
    assert caught.value.summary.failed[0].key == "bad.txt"  # type: ignore[attr-defined]
    assert not dst.exists("bad.txt")
    assert dst.get_bytes("good.txt") == b"other bytes"
    assert dst._head(object_path(bad.digest)) is None  # the bad bytes never got the digest's name

    with pytest.raises(IntegrityError):
        copy_artifact(src, "bad.txt", dst, "again.txt")
    assert not dst.exists("again.txt")

    summary = sync(src, dst, raise_on_failure=False)
    assert [(f.key, f.error) for f in summary.failed] == [("bad.txt", "IntegrityError")]


def test_large_objects_stream_and_a_bad_one_never_completes(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scalable.artifacts import replicate

    monkeypatch.setattr(replicate, "SMALL_OBJECT", 1024)  # every object above 1 KiB is streamed
    src = factory(request, "local", tmp_path)()
    dst = factory(request, "s3", tmp_path)()
    tree = make_tree(tmp_path / "tree")
    src.put(tree, "packed", pack=True)
    big = src.put_bytes(os.urandom(64 * 1024), "big.bin")
    summary = sync(src, dst)
    assert summary.keys == 2 and dst.verify("packed") and dst.get_bytes("big.bin") == src.get_bytes("big.bin")

    bad = src.put_bytes(os.urandom(64 * 1024), "bad.bin")
    obj = Path(src.root) / object_path(bad.digest)  # type: ignore[attr-defined]
    obj.chmod(0o644)
    data = bytearray(obj.read_bytes())
    data[-1] ^= 1
    obj.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="bad.bin|failed verification"):
        copy_artifact(src, "bad.bin", dst)
    assert not dst.exists("bad.bin") and dst._head(object_path(bad.digest)) is None
    assert dst._list_incomplete_uploads(".scalable") == []
    assert big.digest == dst.info("big.bin").digest


def test_a_version_committed_without_its_head_is_published_not_copied_again(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    src = factory(request, "local", tmp_path)()
    dst = factory(request, "s3", tmp_path)()
    src.put_bytes(b"payload", "k")
    sync(src, dst)
    dst._remove(".scalable/refs/k")  # as if killed between the version record and the head
    assert not dst.exists("k")
    again = sync(src, dst)
    assert dst.get_bytes("k") == b"payload"
    assert [r.version for r in dst.versions("k")] == [1] and again.objects == 0


@pytest.mark.parametrize("keys", [3, 100])  # a look-up per key, or one listing for the batch
def test_a_put_racing_the_sync_at_the_destination_stays_the_newest(
    request: pytest.FixtureRequest, tmp_path: Path, keys: int
) -> None:
    src = factory(request, "local", tmp_path)()
    dst = factory(request, "s3", tmp_path)()
    for i in range(keys):
        src.put_bytes(f"source {i}".encode(), f"k/{i:03d}")
    write = dst._write_bytes
    raced: list[str] = []

    def racing_write(data: bytes, rel: str) -> None:
        if rel == ".scalable/refs/k/001" and not raced:
            raced.append(rel)
            dst.put_bytes(b"put by someone else meanwhile", "k/001")  # version 2 and its head
        write(data, rel)  # then the sync's head of version 1 lands on top of it

    dst._write_bytes = racing_write  # type: ignore[method-assign]
    sync(src, dst)
    assert raced
    assert dst.get_bytes("k/001") == b"put by someone else meanwhile"
    assert dst.info("k/001").version == 2
    assert dst.get_bytes("k/000") == b"source 0"


def test_a_different_artifact_at_the_destination_is_kept_or_refused(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    src = factory(request, "local", tmp_path)()
    dst = factory(request, "s3", tmp_path)()
    src.put_bytes(b"from the source", "k.txt")
    dst.put_bytes(b"made at the destination", "k.txt")

    with pytest.raises(SyncConflictError, match="'k.txt'"):
        sync(src, dst, overwrite=False)
    with pytest.raises(SyncConflictError, match="'k.txt'"):
        copy_artifact(src, "k.txt", dst, overwrite=False)
    assert [r.digest for r in dst.versions("k.txt")] == [dst.info("k.txt").digest]

    sync(src, dst)  # default: both kept, the source's as the newest version
    assert [dst.get_bytes("k.txt", version=n) for n in (1, 2)] == [b"made at the destination", b"from the source"]

    # Once the destination holds the source's copy, a new source version is no conflict.
    src.put_bytes(b"newer", "k.txt")
    sync(src, dst, overwrite=False)
    assert dst.get_bytes("k.txt") == b"newer"


def test_delete_and_dry_run(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    src = factory(request, "local", tmp_path)()
    dst = factory(request, "gcs", tmp_path)()
    src.put_bytes(b"a", "p/a")
    src.put_bytes(b"b", "p/b")
    dst.put_bytes(b"stale", "p/stale")
    dst.put_bytes(b"outside", "q/kept")

    plan = sync(src, dst, "p/", delete=True, dry_run=True)
    assert (plan.keys, plan.objects, plan.bytes, plan.deleted, plan.dry_run) == (2, 2, 2, 1, True)
    assert dst.list_artifacts() == ["p/stale", "q/kept"]

    done = sync(src, dst, "p/", delete=True)
    assert (done.keys, done.deleted) == (2, 1)
    assert dst.list_artifacts() == ["p/a", "p/b", "q/kept"]

    # A key deleted at the destination keeps its numbers growing when a sync brings it back.
    dst.delete("p/a")
    back = sync(src, dst, "p/")
    assert back.keys == 1 and [r.version for r in dst.versions("p/a")] == [3]

    # A key of the destination above the new keys: they cannot nest in it, nothing is copied.
    dst.put_bytes(b"an artifact", "taken")
    with pytest.raises(scalable.KeyConflictError, match="'taken' is already an artifact"):
        sync(src, dst, "p/", dst_prefix="taken/p/")
    assert dst.list_artifacts("taken/") == []

    moved = sync(src, dst, "p/", dst_prefix="backup/")
    assert moved.keys == 2 and moved.objects == 0  # the objects are there already
    assert dst.list_artifacts("backup/") == ["backup/a", "backup/b"]


KILLED_SYNC = textwrap.dedent(
    """
    import sys, time
    from scalable import build_artifact_store, sync
    src = build_artifact_store(sys.argv[1])
    dst = build_artifact_store(sys.argv[2], **__import__("json").loads(sys.argv[3]))
    dst.max_concurrency = 2
    src.max_concurrency = 2
    slow = dst._write_bytes
    def write(data, rel):
        if rel.startswith(".scalable/objects/"):
            time.sleep(0.02)
        return slow(data, rel)
    dst._write_bytes = write
    print("started", flush=True)
    sync(src, dst)
    """
)


def test_a_killed_sync_run_again_moves_only_the_rest(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    src = factory(request, "local", tmp_path)()
    dst = factory(request, "s3", tmp_path)()
    size = 8 * 1024
    for i in range(400):
        src.put_bytes(os.urandom(size), f"k/{i:03d}.bin")
    server = request.getfixturevalue("s3_server")
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_SYNC, src.uri, dst.uri, json.dumps(server.storage_options)],
        stdout=subprocess.PIPE,
        env={**os.environ, "SCALABLE_DIGEST_CACHE": "off"},
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(dst._list_files(SHA256_OBJECTS)) < 60:
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    copied = len(dst._list_files(SHA256_OBJECTS))
    assert 60 <= copied < 400, copied
    for key in dst.list_artifacts():  # nothing visible is missing bytes
        dst.verify(key)

    summary = sync(src, dst)
    assert summary.objects == 400 - copied
    assert summary.bytes == (400 - copied) * size
    assert dst.list_artifacts() == src.list_artifacts()
    assert all(dst.verify(k).digest == src.info(k).digest for k in src.list_artifacts())


# ------------------------------------------------------------------ the command line


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SCALABLE_")}
    environ.update({"SCALABLE_DIGEST_CACHE": "off", **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "scalable", *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=120
    )


def test_cli_cp_and_sync(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    server = request.getfixturevalue("s3_server")
    env = {
        "AWS_ENDPOINT_URL": server.endpoint_url,
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    src = scalable.build_artifact_store(tmp_path / "src")
    fill(src, tmp_path)
    remote = server.url(server.shared_bucket(), f"cli-{uuid.uuid4().hex[:8]}")

    done = run_cli("sync", str(tmp_path / "src"), remote, "--all-versions", "--json", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert (doc["keys"], doc["refs"], doc["failed"]) == (4, 5, [])

    again = run_cli("sync", str(tmp_path / "src"), remote, cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert "4 skipped" in again.stdout and "0 objects" in again.stdout

    cp = run_cli("cp", f"{remote}#runs/a.csv", f"{tmp_path / 'back'}#a.csv", cwd=tmp_path, env=env)
    assert cp.returncode == 0, cp.stderr
    assert scalable.build_artifact_store(tmp_path / "back").get_bytes("a.csv") == b"x,y\n1,2\n3,4\n"

    other = scalable.build_artifact_store(tmp_path / "other")
    other.put_bytes(b"not the same", "runs/b.bin")
    refused = run_cli("sync", f"{tmp_path / 'src'}#runs/", str(tmp_path / "other"), "--no-overwrite", cwd=tmp_path)
    assert refused.returncode == 1
    assert "'runs/b.bin'" in refused.stderr and "Traceback" not in refused.stderr

    missing = run_cli("cp", f"{tmp_path / 'src'}#no/such", str(tmp_path / "other"), cwd=tmp_path)
    assert missing.returncode == 1 and "no/such" in missing.stderr and "Traceback" not in missing.stderr
    assert run_cli("sync", str(tmp_path / "src"), cwd=tmp_path).returncode == 2  # usage: DST is required
