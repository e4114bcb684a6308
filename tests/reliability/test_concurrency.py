"""Concurrency: eight processes at once on shared keys of one store, and on one JSONL stream.

Stores (local and S3): 8 processes put, get, overwrite and delete at random over 20 shared
keys (16 files or blobs, 4 directories, some packed). Every read is verified by the store,
and its bytes must name their key; a read or delete of a key deleted a moment before is
legitimate (``ArtifactNotFoundError``), and so is a read that lost to overwrites ten times in a
row (``ArtifactChangingError``, counted); anything else is a failure. At the end each key is
either gone or holds one of the versions some process wrote, and verifies.

Streams: 8 processes append events of varied sizes to one file: every event is there,
whole, once.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest

from scalable import build_artifact_store
from scalable.telemetry import read_events
from tests.reliability import _workers
from tests.reliability.conftest import Tally, trials

SEED = int(os.environ.get("SCALABLE_STRESS_SEED") or time.time_ns() % 2**31)
PROCESSES = 8
KEYS = [f"shared/k{i:02d}.bin" for i in range(16)]
DIR_KEYS = [f"shared/tree{i}" for i in range(4)]


def _run_all(target: Any, argsets: list[tuple[Any, ...]], timeout: float) -> list[int | None]:
    """Run one child per argument tuple at once; their exit codes (None: still running at the timeout)."""
    ctx = _workers.context()
    procs = [ctx.Process(target=target, args=args) for args in argsets]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    codes = [p.exitcode for p in procs]
    for p in procs:
        if p.exitcode is None:
            p.kill()
            p.join()
    return codes


@pytest.mark.parametrize("backend", ["local", "s3", "s3-fsspec"])
def test_eight_processes_sharing_keys_never_read_bad_bytes(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path, tally: Tally
) -> None:
    if backend == "local":
        uri, options = str(tmp_path / "store"), {}
    else:
        server = request.getfixturevalue("s3_server")
        uri, options = server.url(server.shared_bucket(), f"conc-{time.time_ns()}"), dict(server.storage_options)
        if backend == "s3-fsspec":
            options["transport"] = "fsspec"
    build_artifact_store(uri, **options)  # create the root before the race
    ops = trials(30, 1000)
    rng = random.Random(f"{SEED}:concurrency-{backend}")
    start_at = time.time() + 1.0
    results = [tmp_path / f"result-{w}.json" for w in range(PROCESSES)]
    argsets = [
        (uri, options, w, ops, KEYS, DIR_KEYS, str(tmp_path / f"work-{w}"), start_at, rng.randrange(2**31), str(r))
        for w, r in enumerate(results)
    ]
    codes = _run_all(_workers.mixed_worker, argsets, timeout=3600)
    problems = [f"worker {w} exited with {code}" for w, code in enumerate(codes) if code != 0]
    written: dict[str, set[str]] = {}
    read: dict[str, set[str]] = {}
    counts = {"put": 0, "get": 0, "delete": 0, "absent": 0, "changing": 0}
    for r in results:
        if not r.exists():
            continue
        doc = json.loads(r.read_text())
        problems.extend(doc["failures"])
        for key, digests in doc["written"].items():
            written.setdefault(key, set()).update(digests)
        for key, hexes in doc["read"].items():
            read.setdefault(key, set()).update(hexes)
        for name, count in doc["counts"].items():
            counts[name] += count

    if counts["changing"] > max(1, counts["get"] // 100):  # rare under this churn, or reads starve
        problems.append(f"{counts['changing']} of {counts['get']} reads gave up after ten overwrites")
    store = build_artifact_store(uri, **options)
    lost = 0
    for key in KEYS + DIR_KEYS:
        if not store.exists(key):
            continue
        digest = store.info(key).digest
        if digest not in written.get(key, set()):
            problems.append(f"{key} ends as {digest}, which no process wrote")
            lost += 1
        try:
            store.verify(key)
        except Exception as exc:
            problems.append(f"{key} ends committed but does not verify: {exc}")
            lost += 1
    for key, hexes in read.items():  # a file or blob read must be one of the versions written
        strays = {f"sha256:{h}" for h in hexes} - written.get(key, set())
        if strays:
            problems.append(f"reads of {key} returned {len(strays)} version(s) no process wrote")
    listed = set(store.list_artifacts())
    if not listed <= set(KEYS + DIR_KEYS):
        problems.append(f"the store lists keys nobody wrote: {sorted(listed - set(KEYS + DIR_KEYS))}")

    total = PROCESSES * ops
    tally.add(f"concurrency: {backend} store", trials=total, failures=len(problems), lost=lost)
    print(f"concurrency {backend}: {counts} over {total} operations, seed {SEED}")
    assert counts["put"] and counts["get"], f"the mix did too little to test anything: {counts}"
    assert not problems, f"seed {SEED}:\n" + "\n".join(problems[:20])


def test_eight_processes_appending_to_one_stream_lose_no_line(tmp_path: Path, tally: Tally) -> None:
    path = tmp_path / "run" / "tasks.jsonl"
    count = trials(500, 10_000)
    start_at = time.time() + 1.0
    argsets = [(str(path), w, count, start_at, SEED + w) for w in range(PROCESSES)]
    codes = _run_all(_workers.append_worker, argsets, timeout=3600)
    problems = [f"writer {w} exited with {code}" for w, code in enumerate(codes) if code != 0]

    raw = path.read_bytes()
    if not raw.endswith(b"\n"):
        problems.append("the stream does not end with a newline")
    lines = raw.split(b"\n")[:-1]
    log = read_events(path, warn=False)
    if len(lines) != PROCESSES * count or log.skipped:
        problems.append(f"{len(lines)} lines and {log.skipped} unreadable, expected {PROCESSES * count} whole lines")
    seen = [(e.writer, e.seq) for e in log.events]  # type: ignore[attr-defined]
    missing = PROCESSES * count - len(set(seen))
    if missing or len(seen) != len(set(seen)):
        problems.append(f"{missing} events missing, {len(seen) - len(set(seen))} duplicated")
    for writer in range(PROCESSES):  # each writer's events keep their order
        mine = [seq for w, seq in seen if w == writer]
        if mine != sorted(mine):
            problems.append(f"writer {writer}'s events are out of order")

    tally.add("concurrency: jsonl stream", trials=PROCESSES * count, failures=len(problems), lost=missing)
    assert not problems, f"seed {SEED}:\n" + "\n".join(problems)
