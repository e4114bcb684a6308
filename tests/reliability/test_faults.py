"""Faults under a running session: the S3 server restarted, the remote cache unreachable, the local cache's disk full.

Each test runs a real ``ScalableSession`` (a LocalCluster of threads, cached tasks, recorded
artifacts) while the fault happens, then checks what a user would check: the session
finishes, every result is right, every artifact recorded is there and verifies, and the
fault was reported once (one warning and at most one error event), clearly, not once per call.

The S3 server is a private SeaweedFS (not the session-wide one), stopped by pid and started
again on the same ports and data dir. The full disk is a 1 MiB tmpfs mounted for the test
(as root, or with passwordless sudo; the test skips where neither is allowed).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scalable import ScalableSession, StoreUnavailableError, build_artifact_store, cacheable, current_session
from scalable.cache import configure_cache, reset_cache_config
from tests.reliability.conftest import trials
from tests.servers.base import ServerUnavailable, find_free_port
from tests.servers.seaweedfs import SeaweedFS


@pytest.fixture(scope="module")
def private_s3() -> Iterator[SeaweedFS]:
    """A SeaweedFS of this module's own, so stopping it disturbs no other test."""
    try:
        server = SeaweedFS()
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    for var in (
        "SCALABLE_MANIFEST",
        "SCALABLE_TARGET",
        "SCALABLE_DEFAULT_STORAGE",
        "SCALABLE_RUNS_DIR",
        "SCALABLE_CACHE_DIR",
        "SCALABLE_CACHE_REMOTE",
        "SCALABLE_CACHE_SECRET",
    ):
        monkeypatch.delenv(var, raising=False)
    caplog.set_level(logging.INFO, logger="scalable")
    reset_cache_config()
    try:
        yield tmp_path
    finally:
        reset_cache_config()


def _manifest(project: Path, *, storage: str, cache_dir: str, remote: str | None, options: dict[str, Any]) -> None:
    lines = [
        "version: 1",
        "project:",
        f"  default_storage: {storage}",
        f"  local_cache: {cache_dir}",
    ]
    if remote:
        lines.append(f"  cache_remote: {remote}")
    if options:
        lines.append("  storage_options:")
        for prefix, opts in options.items():
            lines.append(f"    {json.dumps(prefix)}: {json.dumps(opts)}")
    lines += ["targets:", "  local: {provider: local, n_workers: 1, threads_per_worker: 2, processes: false}"]
    (project / "scalable.yaml").write_text("\n".join(lines) + "\n")


_COMPUTED: list[int] = []


@cacheable
def model(member: int, size: int = 64) -> bytes:
    """A cached model run whose result is ``size`` KiB that depend on ``member``."""
    _COMPUTED.append(member)
    return (f"member {member:04d};".encode() * (size * 1024 // 12 + 1))[: size * 1024]


def expected(member: int, size: int = 64) -> bytes:
    return (f"member {member:04d};".encode() * (size * 1024 // 12 + 1))[: size * 1024]


def run_members(members: list[int], size: int = 64) -> list[int]:
    """A task: cached model runs, the result's length for each (the bytes are checked here, on the worker)."""
    out = []
    for m in members:
        value = model(m, size)
        assert value == expected(m, size), f"wrong result for member {m}"
        out.append(len(value))
    return out


def record(i: int) -> str:
    """A task: write a file and record it in the run."""
    path = Path(f"out-{i:03d}-{uuid.uuid4().hex[:6]}.txt")
    path.write_text(f"artifact {i}\n" * 100)
    ref = current_session().record_artifact(path, name=f"outputs/{i:03d}.txt")
    path.unlink()
    return ref.key


def _flat(lists: list[list[Any]]) -> list[Any]:
    return [x for xs in lists for x in xs]


def _cache_errors(run_dir: Path) -> list[dict[str, Any]]:
    lines = (run_dir / "cache.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e.get("event") == "cache.error"]


def _warnings(caplog: pytest.LogCaptureFixture, *words: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith("scalable") and all(w in r.getMessage() for w in words)
    ]


def _check_artifacts(store_uri: str, options: dict[str, Any], run_id: str, keys: list[str]) -> int:
    """Every recorded artifact and the run's telemetry are in the store and verify; returns how many are not."""
    store = build_artifact_store(store_uri, **options)
    bad = 0
    for key in keys:
        try:
            store.verify(key)
            i = int(key.rsplit("/", 1)[1].split(".")[0])
            assert store.get_bytes(key) == (f"artifact {i}\n" * 100).encode()
        except Exception:
            bad += 1
    telemetry = store.list_artifacts(f"runs/{run_id}/telemetry/")
    assert {k.rsplit("/", 1)[1] for k in telemetry} >= {"run.json", "summary.json", "tasks.jsonl", "cache.jsonl"}
    return bad


# --------------------------------------------------------------------------- S3 stopped and restarted


#: Per transport, options that make a stopped server fail a call within a few seconds.
_QUICK_OPTIONS: dict[str, dict[str, Any]] = {
    "native": {"deadlines": {"request": 2, "stall": 4, "operation": 3}},
    "fsspec": {"transport": "fsspec", "config_kwargs": {"connect_timeout": 2, "retries": {"max_attempts": 2}}},
}


@pytest.mark.parametrize("transport", ["native", "fsspec"])
def test_s3_stopped_and_restarted_during_a_session(
    private_s3: SeaweedFS, project: Path, caplog: pytest.LogCaptureFixture, tally: Any, transport: str
) -> None:
    bucket = private_s3.make_bucket(f"faults-{uuid.uuid4().hex[:8]}")
    storage, remote = private_s3.url(bucket, "store"), private_s3.url(bucket, "cache")
    options = {**private_s3.storage_options, **_QUICK_OPTIONS[transport]}
    _manifest(project, storage=storage, cache_dir="./cache", remote=remote, options={"s3://": options})
    configure_cache(remote_backoff=1.0)  # the remote tier rests 1 s after a failure, then is tried again
    n, restarts = trials(6, 20), trials(1, 3)
    keys: list[str] = []
    probes = 0

    def members(phase: int, cycle: int) -> list[list[int]]:
        return [[10_000 * cycle + 1000 * phase + m] for m in range(n)]

    with ScalableSession.from_yaml() as session:
        for cycle in range(restarts):
            assert _flat(session.gather(session.map(run_members, members(0, cycle)))) == [64 * 1024] * n
            keys += session.gather(session.map(record, range(2 * n * cycle, 2 * n * cycle + n)))
            private_s3.stop()
            try:
                assert _flat(session.gather(session.map(run_members, members(1, cycle)))) == [64 * 1024] * n
                with pytest.raises(StoreUnavailableError) as info:  # recording needs the store: a clear error
                    session.record_artifact(project / "scalable.yaml", name="during-outage.yaml")
            finally:
                private_s3.start()
            assert private_s3.endpoint_url in str(info.value) and "did not answer" in str(info.value)
            # Once its rest is over, the remote is tried again: fresh members until it answers (a few seconds).
            deadline = time.monotonic() + 40
            while sum("answers again" in r.getMessage() for r in caplog.records) <= cycle:
                assert time.monotonic() < deadline, "the remote cache did not come back after the restart"
                assert session.gather(session.submit(run_members, [900_000 + probes])) == [64 * 1024]
                probes += 1
                time.sleep(0.5)
            assert _flat(session.gather(session.map(run_members, members(2, cycle)))) == [64 * 1024] * n
            keys += session.gather(session.map(record, range(2 * n * cycle + n, 2 * n * (cycle + 1))))
        run_id, run_dir = session.run_id, session.run_dir
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["tasks"]["failed"] == 0 and summary["tasks"]["finished"] == 5 * n * restarts + probes
    assert summary["artifacts"] == 2 * n * restarts
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    lost = _check_artifacts(storage, private_s3.storage_options, run_id, keys)
    # Each outage of the remote cache: one warning, one error event; then it answers again (logged once).
    remote_warnings = _warnings(caplog, "remote cache", "failed")
    assert len(remote_warnings) == restarts, remote_warnings
    assert all(private_s3.endpoint_url in w for w in remote_warnings), remote_warnings
    assert len([e for e in _cache_errors(run_dir) if e.get("tier") == "remote"]) == restarts
    assert sum("answers again" in r.getMessage() for r in caplog.records) == restarts
    # What was cached remotely after each restart is there and verifies.
    cache_store = build_artifact_store(remote, **private_s3.storage_options)
    assert len(cache_store.list_artifacts("cache/")) >= 2 * n * restarts
    for key in cache_store.list_artifacts("cache/"):
        cache_store.verify(key)
    tally.add(f"faults: S3 restarted ({transport})", trials=restarts, failures=0, lost=lost)
    assert lost == 0


# --------------------------------------------------------------------------- remote cache unreachable


def test_remote_cache_unreachable_for_the_whole_run(
    project: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, tally: Any
) -> None:
    dead = f"http://127.0.0.1:{find_free_port()}"  # nothing listens there
    remote = "s3://team-cache/cache"
    options = {"key": "k", "secret": "s", "client_kwargs": {"endpoint_url": dead, "region_name": "us-east-1"}}
    _manifest(project, storage="./store", cache_dir="./cache", remote=remote, options={remote: options})
    monkeypatch.setenv("SCALABLE_CACHE_REMOTE_TIMEOUT", "3")  # the bound of one request to the dead remote
    n = trials(12, 200)
    _COMPUTED.clear()
    began = time.monotonic()
    with ScalableSession.from_yaml() as session:
        chunks = [list(range(3000 + i, 3000 + i + 3)) for i in range(0, n, 3)]
        assert _flat(session.gather(session.map(run_members, chunks))) == [64 * 1024] * sum(map(len, chunks))
        again = session.gather(session.map(run_members, chunks))  # all local hits now
        assert _flat(again) == [64 * 1024] * sum(map(len, chunks))
        keys = session.gather(session.map(record, range(3)))
        run_id, run_dir = session.run_id, session.run_dir
    elapsed = time.monotonic() - began
    assert sorted(_COMPUTED) == sorted(_flat(chunks))  # each member computed exactly once
    warnings = _warnings(caplog, "remote cache")
    assert len(warnings) == 1, warnings
    assert "calls go on with the local tier" in warnings[0] and "team-cache" in warnings[0], warnings[0]
    errors = [e for e in _cache_errors(run_dir) if e.get("tier") == "remote"]
    assert len(errors) == 1, errors
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["tasks"]["failed"] == 0 and summary["cache"]["hits"] == summary["cache"]["misses"]
    lost = _check_artifacts(str(project / "store"), {}, run_id, keys)
    assert elapsed < 60, f"the dead remote cost {elapsed:.0f} s"  # one timeout, not one per call
    tally.add("faults: remote cache unreachable", trials=n, failures=0, lost=lost)
    assert lost == 0


# --------------------------------------------------------------------------- local cache on a full disk


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (the local cache's disk), unmounted after the test.

    As root, ``mount``; otherwise ``sudo -n mount`` (CI runners allow it), owned by this user.
    Where neither is allowed the test skips: a real full disk is the point.
    """
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    options = f"size=1m,uid={os.getuid()},gid={os.getgid()},mode=0700"
    try:
        done = subprocess.run(
            [*sudo, "mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a small tmpfs here ({exc}): needs root or passwordless sudo")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip()}): needs root or passwordless sudo")
    try:
        yield mnt
    finally:
        subprocess.run([*sudo, "umount", "-l", str(mnt)], check=False, timeout=30)


def test_local_cache_on_a_full_disk(
    project: Path, full_disk: Path, caplog: pytest.LogCaptureFixture, tally: Any
) -> None:
    _manifest(project, storage="./store", cache_dir=str(full_disk / "cache"), remote=None, options={})
    n = trials(40, 400)
    _COMPUTED.clear()
    with ScalableSession.from_yaml() as session:
        chunks = [list(range(4000 + i, 4000 + i + 4)) for i in range(0, n, 4)]
        sizes = session.gather(session.map(run_members, chunks))  # 64 KiB each: the disk fills after ~12
        assert _flat(sizes) == [64 * 1024] * n
        second = session.gather(session.map(run_members, chunks))  # what fit is a hit; the rest computes again
        assert _flat(second) == [64 * 1024] * n
        keys = session.gather(session.map(record, range(3)))
        run_id, run_dir = session.run_id, session.run_dir
    assert 0 < len(set(_COMPUTED)) == n < len(_COMPUTED) < 2 * n  # some entries were stored, not all
    disk_warnings = _warnings(caplog, "local cache")
    assert len(disk_warnings) == 1, disk_warnings
    assert "No space left" in disk_warnings[0] or "full" in disk_warnings[0], disk_warnings[0]
    assert str(full_disk) in disk_warnings[0]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["tasks"]["failed"] == 0 and summary["tasks"]["finished"] == 2 * len(chunks) + 3
    lost = _check_artifacts(str(project / "store"), {}, run_id, keys)
    tally.add("faults: local cache disk full", trials=n, failures=0, lost=lost)
    assert lost == 0
