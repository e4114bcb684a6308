"""The native (obstore) transport against real servers: large transfers, primitives, deadlines.

What a user relies on: a large file goes up in parts and comes back by ranges with the digest
hashlib computes; progress adds up to the size; a put that is interrupted commits nothing and
leaves no multipart upload on the server. Frozen and restarted servers, on every backend and
both transports: tests/test_frozen_servers.py.
"""

from __future__ import annotations

import os
import pickle
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fsspec.callbacks import Callback

from scalable import IntegrityError, UnsupportedURIError, build_artifact_store
from scalable.artifacts.obstore_store import ObstoreArtifactStore
from scalable.artifacts.store import OBJECTS
from tests.servers.seaweedfs import SeaweedFS
from tests.test_s3_transfers import file_digest, sha256  # independent hashlib oracles, shared

MiB = 1024 * 1024
PART = 5 * MiB


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """40 MiB of random bytes: 8 parts of 5 MiB."""
    path = tmp_path_factory.mktemp("native") / "big.bin"
    data = os.urandom(40 * MiB)
    path.write_bytes(data)
    return path, sha256(data)


@pytest.fixture(params=["s3", "azure"])
def server(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(f"{request.param}_server")


def make_store(server: Any, prefix: str | None = None, **options: Any) -> ObstoreArtifactStore:
    """A native store on ``server`` (a fresh prefix unless given), parts and ranges of 5 MiB, four in flight."""
    kwargs: dict[str, Any] = {
        "part_size": PART,
        "multipart_threshold": PART,
        "part_concurrency": 4,
        "range_size": PART,
        "range_concurrency": 4,
        **options,
    }
    url = server.url(server.shared_bucket(), prefix or uuid.uuid4().hex)
    store = build_artifact_store(url, **server.storage_options, **kwargs)
    assert isinstance(store, ObstoreArtifactStore)
    return store


class Progress(Callback):
    def __init__(self, on_update: Callable[[int], None] | None = None) -> None:
        super().__init__()
        self.sizes: list[int | None] = []
        self.updates: list[int] = []
        self._on_update = on_update

    def set_size(self, size: int | None) -> None:
        self.sizes.append(size)

    def relative_update(self, inc: int = 1) -> None:
        self.updates.append(inc)
        if self._on_update is not None:
            self._on_update(sum(self.updates))


def open_uploads(server: SeaweedFS, store: ObstoreArtifactStore) -> list[dict[str, Any]]:
    """Multipart uploads the S3 server holds under the store's root (asked through s3fs)."""
    found = server.filesystem().call_s3("list_multipart_uploads", Bucket=store.bucket, Prefix=store.prefix + "/")
    return list(found.get("Uploads") or [])


# ---------------------------------------------------------------- round trips


def test_large_file_round_trip(server: Any, big: tuple[Path, str], tmp_path: Path) -> None:
    src, digest = big
    store = make_store(server)
    up = Progress()
    ref = store.put(src, "models/big.bin", callback=up)
    assert ref.digest == digest and ref.size_bytes == 40 * MiB
    assert up.sizes == [40 * MiB] and sum(up.updates) == 40 * MiB and len(up.updates) >= 8  # as parts go
    if server.protocol == "s3":
        assert open_uploads(server, store) == []
    down = Progress()
    out = store.get("models/big.bin", tmp_path / "back.bin", callback=down)
    assert file_digest(out) == digest and out.stat().st_size == 40 * MiB
    assert sum(down.updates) == 40 * MiB and len(down.updates) >= 8
    assert [p.name for p in tmp_path.iterdir()] == ["back.bin"]
    assert store.verify("models/big.bin") == ref
    with store.open("models/big.bin") as f:
        f.seek(PART + 3)
        assert f.read(10) == src.read_bytes()[PART + 3 : PART + 13]


def test_uneven_last_part_overwrite_and_a_directory(server: Any, tmp_path: Path) -> None:
    data = os.urandom(12 * MiB + 1)
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    for i in range(40):
        (src / "sub" / f"f{i:02d}.txt").write_bytes(os.urandom(i * 100))
    (src / "large.bin").write_bytes(data)
    store = make_store(server)
    ref = store.put(src, "tree")
    assert ref.digest == build_artifact_store(tmp_path / "local").put(src, "tree").digest
    out = store.get("tree", tmp_path / "back")
    assert all((out / p.relative_to(src)).read_bytes() == p.read_bytes() for p in src.rglob("*") if p.is_file())
    (src / "large.bin").write_bytes(data[::-1])
    assert store.put(src / "large.bin", "m.bin").digest == sha256(data[::-1])
    assert store.get_bytes("m.bin") == data[::-1]


def test_a_large_get_by_many_small_ranges_is_whole(server: Any, tmp_path: Path) -> None:
    """Ranges finish out of order; each lands at its offset and the digest is of the bytes in order."""
    data = os.urandom(12 * MiB + 1)
    (tmp_path / "m.bin").write_bytes(data)
    store = make_store(server, range_size=MiB, range_concurrency=6)
    ref = store.put(tmp_path / "m.bin", "m.bin")
    down = Progress()
    out = store.get("m.bin", tmp_path / "back.bin", callback=down)
    assert out.read_bytes() == data and ref.digest == sha256(data)
    assert sum(down.updates) == len(data) and len(down.updates) == 13  # one update a range
    with pytest.raises(UnsupportedURIError, match="range_size must be at least 1 MiB"):
        make_store(server, range_size=MiB - 1)


def test_damaged_large_object_is_refused(server: Any, tmp_path: Path) -> None:
    data = os.urandom(12 * MiB + 1)
    (tmp_path / "m.bin").write_bytes(data)
    store = make_store(server)
    store.put(tmp_path / "m.bin", "m.bin")
    record = store._read_record("m.bin")
    assert record is not None
    store._write_bytes(data[: 6 * MiB] + bytes([data[6 * MiB] ^ 1]) + data[6 * MiB + 1 :], record.object)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(IntegrityError, match="does not match its digest"):
        store.get("m.bin", out / "m.bin")
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("change", ["shorter", "longer"])
def test_large_object_of_another_size_is_refused(server: Any, tmp_path: Path, change: str) -> None:
    """No HEAD before a ranged get: the first range's answer gives the size, and a mismatch is caught."""
    data = os.urandom(12 * MiB + 1)
    (tmp_path / "m.bin").write_bytes(data)
    store = make_store(server, multipart_threshold=8 * MiB, range_size=MiB)
    store.put(tmp_path / "m.bin", "m.bin")
    record = store._read_record("m.bin")
    assert record is not None
    store._write_bytes(data[: 9 * MiB] if change == "shorter" else data + b"x", record.object)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(IntegrityError, match="does not match its digest"):
        store.get("m.bin", out / "m.bin")
    assert list(out.iterdir()) == []


def test_store_pickles_for_workers(server: Any, tmp_path: Path) -> None:
    store = make_store(server)
    ref = store.put_bytes(b"payload", "k")
    clone = pickle.loads(pickle.dumps(store))
    assert clone.info("k") == ref and clone.get_bytes("k") == b"payload"


# ---------------------------------------------------------------- primitives


def test_primitives(server: Any) -> None:
    store = make_store(server)
    assert store._create_exclusive(b"first", "locks/a") is True
    assert store._create_exclusive(b"second", "locks/a") is False  # If-None-Match: the first one stays
    assert store._read_bytes("locks/a") == b"first"
    assert store._read_range("locks/a", 1, 3) == b"irs"
    stat = store._head("locks/a")
    assert stat is not None and stat.size == 5 and stat.mtime.tzinfo is not None
    assert store._head("locks/missing") is None
    store._copy_within("locks/a", "copies/a")
    assert store._read_bytes("copies/a") == b"first"
    store._write_bytes(b"xy", "locks/bc")
    store._write_bytes(b"z", "locksmith")  # shares a string prefix, not the folder
    assert sorted(store._list_stats("locks")) == ["a", "bc"] and store._list_files("locks") == ["a", "bc"]
    store._remove("locks", recursive=True)
    store._remove("nothing/here")  # missing is fine
    assert store._list_files("locks") == [] and store._exists("locksmith")


# ---------------------------------------------------------------- interrupted and failing puts


def test_interrupted_put_aborts_the_upload(s3_server: SeaweedFS, big: tuple[Path, str]) -> None:
    src, digest = big
    store = make_store(s3_server)

    def ctrl_c(sent: int) -> None:
        if sent >= 3 * PART:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.put(src, "big.bin", callback=Progress(ctrl_c))
    assert not store.exists("big.bin") and store.list_artifacts() == []
    assert open_uploads(s3_server, store) == []  # obstore aborted it: no parts linger
    assert store._list_files(OBJECTS) == []
    assert store.put(src, "big.bin").digest == digest


def test_interrupted_stream_write_aborts_the_upload(s3_server: SeaweedFS) -> None:
    store = make_store(s3_server)
    with pytest.raises(RuntimeError, match="stop"):
        with store._open_write("streamed.bin") as out:
            for _ in range(4):
                out.write(os.urandom(2 * MiB))  # past one part: a multipart upload is under way
            raise RuntimeError("stop")
    assert store._head("streamed.bin") is None
    assert open_uploads(s3_server, store) == []
