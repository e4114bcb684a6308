"""Large transfers through ``S3ArtifactStore`` (the fsspec transport) against a real S3 server.

The native transport has the same checks in ``test_native_transfers.py``.

What a user relies on: a large file goes up as concurrent multipart parts and comes back
through concurrent ranged reads with the digest hashlib computes; progress adds up to the
file's size; and a put that fails half-way (an error, Ctrl-C, the server dying) commits
nothing, leaves no multipart upload behind when the server can be told, and can simply be
run again.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import pickle
import threading
import tracemalloc
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fsspec.callbacks import Callback

from scalable import IntegrityError, StoreUnavailableError, build_artifact_store
from scalable.artifacts.layout import OBJECTS, PENDING, REFS, STORE_JSON
from scalable.artifacts.retry import RetryPolicy
from scalable.artifacts.s3 import S3ArtifactStore
from tests.servers.base import ServerUnavailable
from tests.servers.seaweedfs import SeaweedFS

MiB = 1024 * 1024
PART = 5 * MiB  # S3's smallest part: many parts from a modest file
FAST = RetryPolicy(attempts=3, base=0.02, cap=0.1)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MiB):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """80 MiB of random bytes: 16 parts of 5 MiB."""
    path = tmp_path_factory.mktemp("s3-transfers") / "big.bin"
    data = os.urandom(80 * MiB)
    path.write_bytes(data)
    return path, sha256(data)


@pytest.fixture(scope="module")
def medium(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """12 MiB + 1 byte: three parts, the last one short."""
    path = tmp_path_factory.mktemp("s3-transfers") / "medium.bin"
    data = os.urandom(12 * MiB + 1)
    path.write_bytes(data)
    return path, data


def make_store(server: SeaweedFS, prefix: str | None = None, **options: Any) -> S3ArtifactStore:
    """A store (a fresh prefix unless given) with its own s3fs filesystem, parts of 5 MiB, four in flight."""
    storage = {**server.storage_options, "skip_instance_cache": True, **options.pop("storage", {})}
    kwargs: dict[str, Any] = {"part_size": PART, "multipart_threshold": PART, "max_concurrency": 4, **options}
    url = server.url(server.shared_bucket(), prefix or uuid.uuid4().hex)
    return S3ArtifactStore(url, storage_options=storage, **kwargs)


class S3Calls:
    """Sits between a store and its s3fs client: counts calls per method, tracks how many run at
    once, and can slow every call down or make one fail."""

    def __init__(self, store: S3ArtifactStore, *, delay: float = 0.0) -> None:
        self._real = store.fs._call_s3
        self.delay = delay
        self.fail: Callable[[str, int], BaseException | None] | None = None
        self.counts: Counter[str] = Counter()
        self.running: Counter[str] = Counter()
        self.most_running: Counter[str] = Counter()
        store.fs._call_s3 = self  # the store's filesystem is its own (skip_instance_cache)

    async def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self.counts[method] += 1
        number = self.counts[method]
        self.running[method] += 1
        self.most_running[method] = max(self.most_running[method], self.running[method])
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            error = self.fail(method, number) if self.fail else None
            if error is not None:
                raise error
            return await self._real(method, *args, **kwargs)
        finally:
            self.running[method] -= 1


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


def open_uploads(server: SeaweedFS, store: S3ArtifactStore) -> list[dict[str, Any]]:
    """Multipart uploads the server holds under the store's root (asked through a separate client)."""
    bucket, _, prefix = store.root_path.partition("/")
    found = server.filesystem().call_s3("list_multipart_uploads", Bucket=bucket, Prefix=prefix + "/")
    return list(found.get("Uploads") or [])


def stored_paths(server: SeaweedFS, store: S3ArtifactStore) -> list[str]:
    """Every object under the store's root, seen by a separate client."""
    root = store.root_path
    return sorted(p[len(root) + 1 :] for p in server.filesystem().find(root))


# ---------------------------------------------------------------- the factory


@pytest.mark.parametrize("scheme", ["s3", "s3a"])
def test_factory_builds_the_s3_store(scheme: str) -> None:
    store = build_artifact_store(
        f"{scheme}://bucket/prefix",
        key="AK",
        secret="SK",
        client_kwargs={"endpoint_url": "http://127.0.0.1:1"},
        transport="fsspec",
    )
    assert isinstance(store, S3ArtifactStore)
    assert store.uri == f"{scheme}://bucket/prefix"


# ---------------------------------------------------------------- round trips


def test_large_file_round_trip_uses_concurrent_parts_and_ranges(
    s3_server: SeaweedFS, big: tuple[Path, str], tmp_path: Path
) -> None:
    src, digest = big
    store = make_store(s3_server)
    calls = S3Calls(store, delay=0.02)  # a little latency, as a remote service has
    ref = store.put(src, "models/big.bin")
    assert ref.digest == digest and ref.size_bytes == 80 * MiB
    assert calls.counts["create_multipart_upload"] == 1 and calls.counts["complete_multipart_upload"] == 1
    assert calls.counts["upload_part"] == 16
    assert 2 <= calls.most_running["upload_part"] <= 4  # concurrent, and bounded by max_concurrency
    assert open_uploads(s3_server, store) == []
    assert store.list_artifacts() == ["models/big.bin"]

    out = store.get("models/big.bin", tmp_path / "back.bin")
    assert file_digest(out) == digest and out.stat().st_size == 80 * MiB
    assert calls.counts["get_object"] >= 16  # ranged reads (plus the ref record)
    assert 2 <= calls.most_running["get_object"] <= 4
    assert [p.name for p in tmp_path.iterdir()] == ["back.bin"]  # no temporary file left beside it
    assert store.verify("models/big.bin") == ref


def test_uneven_last_part_and_overwrite(s3_server: SeaweedFS, medium: tuple[Path, bytes], tmp_path: Path) -> None:
    src, data = medium
    store = make_store(s3_server)
    first = store.put(src, "m.bin")
    assert first.digest == sha256(data)
    changed = tmp_path / "changed.bin"
    changed.write_bytes(data[::-1])
    second = store.put(changed, "m.bin")
    assert second.digest == sha256(data[::-1])
    assert store.get_bytes("m.bin") == data[::-1]
    assert (store.get("m.bin", tmp_path / "out.bin")).read_bytes() == data[::-1]
    objects = [p for p in stored_paths(s3_server, store) if p.startswith(OBJECTS)]
    assert len(objects) == 2  # both versions are kept (history): the first goes only at gc once unreferenced
    assert [r.version for r in store.versions("m.bin")] == [1, 2]


def test_progress_adds_up_to_the_size(s3_server: SeaweedFS, big: tuple[Path, str], tmp_path: Path) -> None:
    src, _ = big
    store = make_store(s3_server)
    up = Progress()
    store.put(src, "big.bin", callback=up)
    assert up.sizes == [80 * MiB] and sum(up.updates) == 80 * MiB
    assert len(up.updates) >= 16 and all(n > 0 for n in up.updates)  # as parts are sent, not once at the end
    down = Progress()
    store.get("big.bin", tmp_path / "out.bin", callback=down)
    assert down.sizes == [80 * MiB] and sum(down.updates) == 80 * MiB and len(down.updates) >= 16


def test_directory_with_small_and_large_files(s3_server: SeaweedFS, medium: tuple[Path, bytes], tmp_path: Path) -> None:
    src = tmp_path / "tree"
    (src / "sub" / "empty").mkdir(parents=True)
    for i in range(60):
        (src / "sub" / f"f{i:02d}.txt").write_bytes(os.urandom(i * 100))
    (src / "large.bin").write_bytes(medium[1])
    store = make_store(s3_server)
    progress = Progress()
    ref = store.put(src, "tree", callback=progress)
    assert ref.digest == build_artifact_store(tmp_path / "local").put(src, "tree").digest  # same tree digest
    assert sum(progress.updates) == ref.size_bytes == sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    out = store.get("tree", tmp_path / "back")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == sorted(
        p.relative_to(src).as_posix() for p in src.rglob("*")
    )
    assert all((out / p.relative_to(src)).read_bytes() == p.read_bytes() for p in src.rglob("*") if p.is_file())


@pytest.mark.parametrize("damage", ["one byte flipped", "longer", "shorter"])
def test_damaged_large_object_is_refused(
    s3_server: SeaweedFS, medium: tuple[Path, bytes], tmp_path: Path, damage: str
) -> None:
    src, data = medium
    store = make_store(s3_server)
    store.put(src, "m.bin")
    record = store._read_record("m.bin")
    assert record is not None
    bad = {
        "one byte flipped": data[: 6 * MiB] + bytes([data[6 * MiB] ^ 1]) + data[6 * MiB + 1 :],
        "longer": data + b"extra",
        "shorter": data[: 7 * MiB],
    }[damage]
    s3_server.filesystem().pipe_file(f"{store.root_path}/{record.object}", bad)
    with pytest.raises(IntegrityError, match="does not match its digest"):
        store.get("m.bin", tmp_path / "out.bin")
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary left


# ---------------------------------------------------------------- failures


def test_failed_part_aborts_the_upload_and_commits_nothing(
    s3_server: SeaweedFS, big: tuple[Path, str], medium: tuple[Path, bytes], tmp_path: Path
) -> None:
    src, digest = big
    store = make_store(s3_server)
    before = store.put(medium[0], "model.bin")  # the committed version a failed put must not touch
    calls = S3Calls(store)
    calls.fail = lambda method, n: OSError(errno.EIO, "injected failure") if (method, n) == ("upload_part", 6) else None
    with pytest.raises(OSError, match="injected failure"):
        store.put(src, "model.bin")
    assert calls.counts["upload_part"] >= 6  # parts had been sent when it failed
    assert calls.counts["abort_multipart_upload"] == 1 and calls.counts["complete_multipart_upload"] == 0
    assert open_uploads(s3_server, store) == []
    assert store.info("model.bin") == before
    assert store.get("model.bin", tmp_path / "m.bin").read_bytes() == medium[1]
    assert len([p for p in stored_paths(s3_server, store) if p.startswith(OBJECTS)]) == 1

    calls.fail = None
    after = store.put(src, "model.bin")
    assert after.digest == digest and store.verify("model.bin") == after
    assert open_uploads(s3_server, store) == []


def test_open_uploads_are_visible_to_the_check(s3_server: SeaweedFS) -> None:
    """The check above could not pass by accident: an upload left open does show up."""
    store = make_store(s3_server)
    bucket, _, prefix = store.root_path.partition("/")
    fs = s3_server.filesystem()
    upload = fs.call_s3("create_multipart_upload", Bucket=bucket, Key=f"{prefix}/left-open")
    try:
        assert [u["UploadId"] for u in open_uploads(s3_server, store)] == [upload["UploadId"]]
    finally:
        fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=f"{prefix}/left-open", UploadId=upload["UploadId"])
    assert open_uploads(s3_server, store) == []


def test_transient_part_failure_is_retried(s3_server: SeaweedFS, big: tuple[Path, str]) -> None:
    src, digest = big
    store = make_store(s3_server, retry_policy=FAST)
    calls = S3Calls(store)
    calls.fail = lambda method, n: ConnectionResetError("reset by peer") if (method, n) == ("upload_part", 3) else None
    ref = store.put(src, "big.bin")
    assert ref.digest == digest and store.verify("big.bin") == ref
    assert calls.counts["upload_part"] == 17  # one part sent twice
    assert calls.counts["abort_multipart_upload"] == 0


def test_interrupted_put_aborts_the_upload(s3_server: SeaweedFS, big: tuple[Path, str]) -> None:
    src, digest = big
    store = make_store(s3_server)

    def ctrl_c(sent: int) -> None:
        if sent >= 3 * PART:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.put(src, "big.bin", callback=Progress(ctrl_c))
    assert not store.exists("big.bin") and store.list_artifacts() == []
    assert open_uploads(s3_server, store) == []
    # Nothing but the layout record and the put's pending marker (gc removes it after its grace period).
    assert [p for p in stored_paths(s3_server, store) if not p.startswith((PENDING, STORE_JSON))] == []
    assert store.put(src, "big.bin").digest == digest


@pytest.fixture
def own_s3_server() -> Iterator[SeaweedFS]:
    """A server of this test's own, to kill without disturbing the session's."""
    try:
        server = SeaweedFS()
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    try:
        server.start()
        yield server
    finally:
        server.kill()  # by pid; nothing on it is worth a graceful stop
        server.close()


def test_put_survives_the_server_dying_mid_upload(
    own_s3_server: SeaweedFS, big: tuple[Path, str], tmp_path: Path
) -> None:
    src, digest = big
    server = own_s3_server
    prefix = uuid.uuid4().hex
    store = make_store(
        server,
        prefix,
        max_concurrency=2,
        retry_policy=FAST,
        storage={"config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1, "read_timeout": 10}},
    )
    calls = S3Calls(store, delay=0.1)  # slow enough that the kill lands mid-upload
    parts_sent = threading.Event()
    outcome: list[BaseException | None] = []

    def put() -> None:
        try:
            store.put(src, "big.bin", callback=Progress(lambda sent: sent >= 2 * PART and parts_sent.set()))
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=put)
    worker.start()
    assert parts_sent.wait(60), "the upload never got going"
    server.kill()
    worker.join(120)
    assert not worker.is_alive()
    assert isinstance(outcome[0], StoreUnavailableError), outcome
    assert "did not answer" in str(outcome[0])

    server.start()
    reader = make_store(server, prefix)  # a fresh client: what anyone sees now
    assert not reader.exists("big.bin") and reader.list_artifacts() == []
    assert not any(p.startswith(REFS) for p in stored_paths(server, store))

    calls.delay = 0
    ref = store.put(src, "big.bin")
    assert ref.digest == digest
    assert store.verify("big.bin") == ref
    assert file_digest(store.get("big.bin", tmp_path / "back.bin")) == digest


def test_large_gets_of_a_directory_share_one_memory_budget(
    s3_server: SeaweedFS, big: tuple[Path, str], tmp_path: Path
) -> None:
    """A directory of large files is fetched several files at a time, but within one budget of
    part buffers (2 * max_concurrency), not one budget per file."""
    src = tmp_path / "models"
    src.mkdir()
    data = big[0].read_bytes()
    for i in range(4):  # five parts each: four parts in flight per file, one file per thread
        (src / f"m{i}.bin").write_bytes(data[i * 20 * MiB : (i + 1) * 20 * MiB + 1])
    del data
    store = make_store(s3_server, max_concurrency=4)
    store.put(src, "models")
    tracemalloc.start()
    try:
        out = store.get("models", tmp_path / "back")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert all((out / p.name).read_bytes() == p.read_bytes() for p in src.iterdir())
    budget = 2 * 4 * PART  # 40 MiB; a budget per file would allow four times that
    assert peak < budget + 8 * MiB, f"peak {peak / MiB:.1f} MiB for a budget of {budget / MiB:.0f} MiB"


def test_store_pickles_for_workers(s3_server: SeaweedFS, medium: tuple[Path, bytes], tmp_path: Path) -> None:
    store = make_store(s3_server)
    ref = store.put(medium[0], "m.bin")
    clone = pickle.loads(pickle.dumps(store))
    assert clone.info("m.bin") == ref
    assert clone.get("m.bin", tmp_path / "m.bin").read_bytes() == medium[1]
    assert clone.put(medium[0], "again.bin").digest == ref.digest


def test_part_bodies_survive_the_https_chunked_encoding() -> None:
    """Over HTTPS botocore sends each part aws-chunked with a trailing checksum, reading the body
    through a wrapper. The local server speaks plain HTTP, so that path is checked here: the
    zero-copy part body comes out of the wrapper byte for byte, with the right checksum."""
    from aiobotocore.httpchecksum import AioAwsChunkedWrapper
    from botocore.httpchecksum import Crc32Checksum
    from botocore.utils import determine_content_length

    from scalable.artifacts.s3 import _PartBody

    data = os.urandom(5 * MiB + 12345)
    body = _PartBody(memoryview(data))
    assert determine_content_length(body) == len(data)
    wrapper = AioAwsChunkedWrapper(body, checksum_cls=Crc32Checksum, checksum_name="x-amz-checksum-crc32")

    async def drain() -> bytes:
        return b"".join([bytes(chunk) async for chunk in wrapper])

    encoded = asyncio.run(drain())
    decoded, rest = bytearray(), encoded
    while True:
        size_line, rest = rest.split(b"\r\n", 1)
        if int(size_line, 16) == 0:
            break
        decoded += rest[: int(size_line, 16)]
        rest = rest[int(size_line, 16) + 2 :]
    assert bytes(decoded) == data
    expected = Crc32Checksum()
    expected.update(data)
    assert rest == b"x-amz-checksum-crc32:" + expected.b64digest().encode() + b"\r\n\r\n"
    body.seek(0)  # a retried request starts over
    assert bytes(body.read()) == data and body.read() == b""
