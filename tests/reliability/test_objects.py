"""The object layer under attack: concurrent commits of one key, gc racing writers, and SIGKILLs.

* 8 processes commit one key (fast: 8 x 4, stress: 8 x 50): every version is present, the
  numbers are unique, each is readable.
* gc loops while 8 writers put and re-put (fast: 4 s, stress: 60 s) with a grace period longer
  than a put: 0 refs to missing objects, 0 bad reads.
* SIGKILLs during a file put, a directory put and a packed put, then one gc (grace 0):
  0 unfinished multipart uploads and 0 orphaned bytes left; every committed version whole.
* SIGKILLs during gc, restore, delete and migrate (of layout 1 and of layout 2): every committed
  version stays readable.
* 2 processes stream the key with ``open()`` while 4 processes overwrite it keeping 2 versions
  and gc reclaims the rest (fast: 6 s, stress: 30 s): 0 errors, each read one whole version.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from scalable import build_artifact_store
from scalable.artifacts.layout import SHA256_OBJECTS
from tests.reliability import _workers
from tests.reliability.conftest import Tally, trials
from tests.reliability.test_crashes import SEED, _store_location, run_and_kill

KEY = "shared/key"
FIXTURE_V1 = Path(__file__).parent.parent / "fixtures" / "store_v1"
FIXTURE_V2 = Path(__file__).parent.parent / "fixtures" / "store_v2"
#: The digests of the two versions of ``history/k`` in the layout-2 fixture.
V2_HISTORY = [
    "sha256:" + hashlib.sha256(b"first\n").hexdigest(),
    "sha256:" + hashlib.sha256(b"second\n").hexdigest(),
]


def _check_all_versions(store: Any) -> list[str]:
    """Every retained version of every key verifies: the problems found."""
    problems = []
    for key in store.list_artifacts():
        for ref in store.versions(key):
            try:
                store.verify(key, version=ref.version)
            except Exception as exc:
                problems.append(f"{key}@{ref.version}: {type(exc).__name__}: {exc}")
    return problems


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_eight_processes_committing_one_key_all_get_unique_versions(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path, tally: Tally
) -> None:
    uri, options = _store_location(request, backend, tmp_path)
    count = trials(4, 50)
    start_at = time.time() + 2.0
    code = (
        "import json,sys; from tests.reliability._workers import commit_worker; "
        "commit_worker(sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], "
        "float(sys.argv[6]))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, uri, json.dumps(options), str(w), str(count), KEY, str(start_at)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parent.parent.parent,
        )
        for w in range(8)
    ]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 8
    given = [json.loads(line) for out in outputs for line in out.splitlines()]
    numbers = sorted(g["version"] for g in given)
    store = build_artifact_store(uri, **options)
    history = store.versions(KEY)
    problems = []
    if numbers != list(range(1, 8 * count + 1)):
        problems.append(f"version numbers are not 1..{8 * count} each once: {numbers}")
    if [r.version for r in history] != numbers:
        problems.append("the history does not list every version committed")
    for g in given:
        if store.info(KEY, version=g["version"]).digest != g["digest"]:
            problems.append(f"version {g['version']} does not hold what its writer committed")
    if store.info(KEY).version != 8 * count:
        problems.append(f"the head names version {store.info(KEY).version}, not the newest {8 * count}")
    problems += _check_all_versions(store)
    tally.add(f"versions: {backend} 8 writers on one key", trials=8 * count, failures=len(problems))
    assert not problems, "\n".join(problems[:20])


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_gc_looping_while_eight_writers_put_loses_nothing(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path, tally: Tally
) -> None:
    uri, options = _store_location(request, backend, tmp_path)
    seconds = float(trials(4, 60))
    ctx = _workers.context()
    results = [tmp_path / f"churn-{w}.json" for w in range(8)]
    rng = random.Random(f"{SEED}:gc-churn-{backend}")
    procs = [
        ctx.Process(
            target=_workers.churn_worker,
            args=(uri, options, w, seconds, str(tmp_path / f"w{w}"), str(r), rng.randrange(2**31)),
        )
        for w, r in enumerate(results)
    ]
    for p in procs:
        p.start()
    store = build_artifact_store(uri, **options)
    gcs = 0
    deadline = time.time() + seconds
    while time.time() < deadline:
        store.gc(grace=5.0)  # longer than any one put here: puts in flight are safe
        gcs += 1
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 8
    problems: list[str] = []
    ops = 0
    for r in results:
        doc = json.loads(r.read_text())
        problems += doc["failures"]
        ops += doc["ops"]
    time.sleep(0.1)
    problems += _check_all_versions(store)  # 0 refs to missing objects
    tally.add(f"gc: {backend} gc loop with 8 writers", trials=ops, failures=len(problems))
    print(f"gc churn {backend}: {gcs} gc runs, {ops} operations, seed {SEED}")
    assert gcs >= 2 and ops > 0
    assert not problems, "\n".join(problems[:20])


def _source(tmp_path: Path, kind: str) -> Path:
    if kind == "file":
        src = tmp_path / "big.bin"
        with open(src, "wb") as f:
            for _ in range(trials(40, 64)):  # multipart on both transports (native: from 32 MiB; s3fs: 16 MiB)
                f.write(os.urandom(1024 * 1024))
        return src
    src = tmp_path / "tree"
    for i in range(trials(100, 500)):
        sub = src / f"d{i % 10}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i:03d}.txt").write_bytes(os.urandom(64 + (i * 37) % 4000))
    return src


def _orphans(store: Any) -> tuple[list[str], int]:
    """Objects and bytes a gc with no grace would still remove (must be none right after one)."""
    report = store.gc(grace=0, dry_run=True)
    return report.objects + report.tmp_files + report.uploads, report.bytes_reclaimed


def _unfinished_uploads(request: pytest.FixtureRequest, uri: str) -> list[str]:
    """Multipart uploads the S3 server holds under the store's root, asked through s3fs (not the store)."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    found = (
        request.getfixturevalue("s3_server")
        .filesystem()
        .call_s3("list_multipart_uploads", Bucket=bucket, Prefix=prefix + "/")
    )
    return [f"{up['Key']} ({up['UploadId']})" for up in found.get("Uploads") or []]


@pytest.mark.parametrize(
    ("backend", "kind"),
    [(b, k) for b in ("local", "s3") for k in ("file", "dir", "packed")] + [("s3-fsspec", "file")],
)
def test_killed_puts_then_one_gc_leave_nothing_behind(
    request: pytest.FixtureRequest, backend: str, kind: str, tmp_path: Path, tally: Tally
) -> None:
    uri, options = _store_location(request, backend, tmp_path)
    src = _source(tmp_path, kind)
    child = _workers.put_child if kind != "packed" else _workers.packed_put_child
    outcome, duration = run_and_kill(child, (uri, options, str(src), "k"), None)
    assert outcome == "finished"
    rng = random.Random(f"{SEED}:killed-puts-{backend}-{kind}")
    n = trials(2, 30)
    killed = 0
    for trial in range(n):
        target = next(src.rglob("*.txt")) if src.is_dir() else src
        with open(target, "r+b") as f:
            f.write(f"trial {trial} {SEED}".encode().ljust(24, b"."))
        outcome, _ = run_and_kill(child, (uri, options, str(src), "k"), rng.uniform(0, duration * 1.2))
        killed += outcome == "killed"
    if kind == "file" and backend != "local":
        # Some kill must land mid-upload and leave a multipart upload, or the abort goes untested.
        for delay in (0.5, 0.7, 0.3, 0.9, 0.6, 0.8, 0.4):
            if _unfinished_uploads(request, uri):
                break
            with open(src, "r+b") as f:
                f.write(f"extra {delay} {SEED}".encode().ljust(24, b"."))  # new bytes: nothing to dedup
            run_and_kill(child, (uri, options, str(src), "k"), duration * delay)
        assert _unfinished_uploads(request, uri), "no killed put left a multipart upload to abort"
        print(f"{len(_unfinished_uploads(request, uri))} unfinished uploads before gc")
    store = build_artifact_store(uri, **options)
    if backend != "local":
        # A request the killed child had sent (a CompleteMultipartUpload) may still be finishing on the
        # server: an object that appears after gc listed the store is the next gc's to collect, not a leak.
        time.sleep(2)
    store.gc(grace=0)
    left, left_bytes = _orphans(store)
    problems = [f"left after gc: {p}" for p in left[:10]]
    uploads = _unfinished_uploads(request, uri) if backend != "local" else []
    if uploads:
        problems.append(f"{len(uploads)} unfinished multipart uploads left: {uploads[:3]}")
    problems += _check_all_versions(store)
    live = len(store._list_stats(SHA256_OBJECTS))
    tally.add(f"gc: {backend} after killed {kind} puts", trials=n, failures=len(problems))
    print(f"killed {kind} puts on {backend}: {killed}/{n} killed, {live} live objects, {left_bytes} bytes left")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_killed_gc_restore_delete_and_migrate_keep_every_committed_version(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path, tally: Tally
) -> None:
    rng = random.Random(f"{SEED}:killed-maintenance-{backend}")
    n = trials(1, 30)
    problems: list[str] = []
    for trial in range(n):
        uri, options = _store_location(request, backend, tmp_path / f"t{trial}")
        store = build_artifact_store(uri, **options)
        for i in range(20):
            store.put_bytes(os.urandom(2000), f"keys/k{i % 5}")
        store.put_bytes(b"orphan", "gone")
        store.delete("gone")
        before = {k: [r.digest for r in store.versions(k)] for k in store.list_artifacts()}
        for what in ("gc", "restore", "delete"):
            if what == "gc":
                target, args = _workers.gc_child, (uri, options, 0.0)
            else:
                target, args = _workers.restore_delete_child, (uri, options, "keys/k1", what)
            outcome, _ = run_and_kill(target, args, rng.uniform(0, 0.3))
            fresh = build_artifact_store(uri, **options)
            for key, digests in before.items():
                if key == "keys/k1" and what == "delete" and not fresh.exists(key):
                    continue  # the delete committed: its history is gone from view, as asked
                got = [r.digest for r in fresh.versions(key)]
                if got[: len(digests)] != digests:
                    problems.append(f"trial {trial} {what} ({outcome}): history of {key} changed")
            problems += [f"trial {trial} {what} ({outcome}): {p}" for p in _check_all_versions(fresh)]
        # migrate: the fixtures of layouts 1 and 2, killed at a random moment, read, then resumed
        for fixture in (FIXTURE_V1, FIXTURE_V2):
            muri, moptions = _store_location(request, backend, tmp_path / f"m{trial}-{fixture.name}")
            mstore = build_artifact_store(muri, **moptions)
            for path in sorted(fixture.rglob("*")):
                if path.is_file():
                    mstore._write_bytes(path.read_bytes(), path.relative_to(fixture).as_posix())
            outcome, _ = run_and_kill(_workers.migrate_child, (muri, moptions), rng.uniform(0, 0.2))
            what = f"trial {trial} migrate {fixture.name} ({outcome})"
            if fixture is FIXTURE_V2:  # a layout-2 store reads whole at every step of its migration
                killed = build_artifact_store(muri, **moptions)
                if [r.digest for r in killed.versions("history/k")] != V2_HISTORY:
                    problems.append(f"{what}: the history of history/k changed")
                problems += [f"{what}, before resuming: {p}" for p in _check_all_versions(killed)]
            resumed = build_artifact_store(muri, **moptions)
            resumed.migrate()
            if resumed.get_bytes("files/hello.txt") != b"hello, world\n":
                problems.append(f"{what}: then resume lost files/hello.txt")
            if fixture is FIXTURE_V2 and [r.digest for r in resumed.versions("history/k")] != V2_HISTORY:
                problems.append(f"{what}: resumed, the history of history/k changed")
            problems += [f"{what}: {p}" for p in _check_all_versions(resumed)]
            shutil.rmtree(tmp_path / f"m{trial}-{fixture.name}", ignore_errors=True)
    tally.add(f"crash: {backend} gc/restore/delete/migrate", trials=5 * n, failures=len(problems))
    assert not problems, "\n".join(problems[:20])


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_two_reader_processes_streaming_while_four_writer_processes_overwrite_read_whole_versions(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path, tally: Tally
) -> None:
    """2 processes stream the key with ``open()`` while 4 others overwrite it: 0 errors, each read one version."""
    uri, options = _store_location(request, backend, tmp_path)
    key = "streamed/key"
    build_artifact_store(uri, **options).put_bytes(_workers.version_bytes(99, 0), key)
    seconds = float(trials(6, 30))
    ctx = _workers.context()
    start_at = time.time() + 1.0
    writers = [tmp_path / f"writer-{w}.json" for w in range(4)]
    readers = [tmp_path / f"reader-{r}.json" for r in range(2)]
    procs = [
        ctx.Process(target=_workers.overwrite_worker, args=(uri, options, w, seconds, key, start_at, str(res)))
        for w, res in enumerate(writers)
    ] + [
        ctx.Process(target=_workers.stream_reader_worker, args=(uri, options, r, seconds, key, start_at, str(res)))
        for r, res in enumerate(readers)
    ]
    for p in procs:
        p.start()
    store = build_artifact_store(uri, **options)
    reclaimed = 0
    deadline = start_at + seconds
    while time.time() < deadline:  # the bytes of versions past retention go while readers stream them
        reclaimed += len(store.gc(grace=2.0).objects)  # a grace longer than any one read here
        time.sleep(0.5)
    for p in procs:
        p.join(seconds + 300)
    assert [p.exitcode for p in procs] == [0] * 6
    problems: list[str] = []
    puts = sum(json.loads(w.read_text())["ops"] for w in writers)
    reads = overlapped = versions = 0
    for path in writers + readers:
        doc = json.loads(path.read_text())
        problems += doc["failures"]
        reads += doc.get("reads", 0)
        overlapped += doc.get("overlapped", 0)
        versions += doc.get("versions", 0)
    tally.add(f"readers: {backend} 2 streaming readers, 4 writers", trials=reads + puts, failures=len(problems))
    print(
        f"streaming {backend}: {reads} reads ({overlapped} during an overwrite, {versions} versions), {puts} puts, "
        f"{reclaimed} objects reclaimed by gc meanwhile"
    )
    assert not problems, "\n".join(problems[:20])
    assert reads >= 2 and puts >= 4 and overlapped >= 1  # the overwrites really landed during reads
