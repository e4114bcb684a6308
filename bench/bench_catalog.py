"""Catalog: query latency over 1,000,000 indexed artifacts, and rebuild speed from 100,000 committed refs.

Queries (``Catalog`` API, Python rows included), on a catalog of ``--rows`` artifacts
(``--runs`` runs x rows/runs artifacts each: 10,000 runs of 100; loaded with ``Catalog.bulk_load``):
  by run        catalog.find(run=<run id>)                    (every artifact of one run: 100 rows)
  by digest     catalog.find(digest=<digest>)                 (one artifact)
  which runs    catalog.runs_for_digest(<digest>)             (runs that produced these bytes)
  by name       catalog.find(name="case-04242/member-0*")     (a glob with a literal prefix: 100 rows)
  by kind+time  catalog.find(kind="log", since=t, until=t+1min)
Each query runs ``--queries`` times with random arguments after a warm-up; medians.

Rebuild: ``Catalog.rebuild([store], [])`` on a local store holding ``--refs`` committed
artifacts (tiny blobs put with ``put_bytes`` by ``--writers`` processes on a non-durable
store, kept in ``--dir`` for the next run), ``--rounds`` times; refs/s from the median.

Lineage (issue 17): ``Catalog.upstream``/``downstream`` at depth 5 over ``--edges`` lineage
edges (200 generations of tasks, each reading 2 outputs of the generation before and
recording 3; loaded with ``Catalog.bulk_load_edges``), from random outputs; the cost of
recording an input inside a task (a ``get_bytes`` of a 1 kB blob in a session task, with
the read listener on, against the same read unrecorded: the peer); and the report of a
2,000-task run with its inputs and outputs (time to write it, file size).

    python bench/bench_catalog.py [--rows 1000000] [--runs 1000] [--refs 100000] [--dir PATH] [--rounds 3]
                                  [--edges 1000000] [--only lineage|versions] [--versioned-keys 1000]

Versions (issue 14): a rebuild over ``--versioned-keys`` keys of 3 versions each reads every
version from one listing (``store.iter_versions()``); the peer is ``store.versions(key)`` per key.

Targets (issues 10 and 17): queries under 10 ms; rebuild at least 5,000 refs/s; upstream and
downstream at depth 5 under 10 ms; recording an input under 50 us on top of the read; the
report of 2,000 tasks under 2 s and 2 MB.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scalable.artifacts.local import LocalArtifactStore
from scalable.catalog import ArtifactRow, Catalog, run_row_from_docs
from scalable.catalog.catalog import QUICK_CHECK_MAX_BYTES
from scalable.catalog.lineage_rows import EdgeRow, task_node

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
STORE_URI = "s3://ensemble/results"
KINDS = ("result", "result", "result", "log", "input")


def run_id(r: int) -> str:
    return f"{(T0 + timedelta(hours=r)):%Y%m%dT%H%M%SZ}-{r:06x}"


def digest(i: int) -> str:
    return "sha256:" + hashlib.sha256(i.to_bytes(8, "little")).hexdigest()


def make_rows(runs: int, per_run: int) -> Iterator[ArtifactRow]:
    """``runs`` runs of ``per_run`` artifacts each; run ``r`` records case-<r>/member-000.csv, member-001.csv, ..."""
    members = [f"member-{j:03d}.csv" for j in range(per_run)]
    tasks = [f"simulate-{j:05d}" for j in range(per_run)]
    for r in range(runs):
        rid = run_id(r)
        started = T0 + timedelta(hours=r)
        stamp = f"{started:%Y-%m-%dT%H}"
        names = [f"case-{r:05d}/{m}" for m in members]
        for j in range(per_run):
            key = f"runs/{rid}/{names[j]}"
            created = f"{stamp}:{j // 60 % 60:02d}:{j % 60:02d}.000000+00:00"
            yield ArtifactRow(
                STORE_URI,
                key,
                f"{STORE_URI}/{key}",
                KINDS[j % len(KINDS)],
                "file",
                digest(r * per_run + j),
                1000 + j,
                created,
                rid,
                tasks[j],
                names[j],
                "{}",
            )


def time_query(fn: Callable[[], Any], n: int) -> tuple[float, int]:
    fn()  # warm-up
    times = []
    found = 0
    for _ in range(n):
        start = time.perf_counter()
        found = len(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, found


# --- the store of committed refs ------------------------------------------------------------------
def put_range(root: str, start: int, stop: int) -> None:
    store = LocalArtifactStore(root, durable=False)
    for i in range(start, stop):
        store.put_bytes(f"value {i}".encode(), f"data/{i // 1000:04d}/item-{i:07d}.bin", metadata={"i": i})


def make_store(root: Path, refs: int, writers: int) -> float:
    """Fill ``root`` with ``refs`` committed blobs (skipped if already there); seconds it took."""
    marker = root / f".bench-{refs}-refs"
    if marker.exists():
        return 0.0
    shutil.rmtree(root, ignore_errors=True)
    LocalArtifactStore(root, durable=False).put_bytes(b"seed", "data/seed.bin")
    LocalArtifactStore(root, durable=False).delete("data/seed.bin")
    start = time.perf_counter()
    step = -(-refs // writers)
    with multiprocessing.get_context("fork").Pool(writers) as pool:
        pool.starmap(put_range, [(str(root), a, min(refs, a + step)) for a in range(0, refs, step)])
    marker.touch()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--refs", type=int, default=100_000)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="work folder (the store is kept there for reuse)")
    parser.add_argument("--edges", type=int, default=1_000_000)
    parser.add_argument(
        "--only", choices=("lineage", "versions"), default=None, help="run only the lineage or the versions part"
    )
    parser.add_argument("--versioned-keys", type=int, default=1000, help="keys of the versions part (3 versions each)")
    args = parser.parse_args()
    work = args.dir or Path(tempfile.gettempdir()) / "scalable-bench-catalog"
    work.mkdir(parents=True, exist_ok=True)
    load = f", load {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"# {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}{load}")
    print(f"# folder {work}; medians")
    if args.only == "lineage":
        bench_lineage(work, args)
        return
    if args.only == "versions":
        bench_versions(work, args)
        return

    # 1. queries over a million rows
    db = work / "million.sqlite"
    for leftover in work.glob("million.sqlite*"):
        leftover.unlink()
    per_run = args.rows // args.runs
    with Catalog(db) as catalog:
        start = time.perf_counter()
        catalog.bulk_load(
            make_rows(args.runs, per_run),
            runs=[run_row_from_docs({"run_id": run_id(r), "status": "finished"}, None) for r in range(args.runs)],
        )
        loaded = time.perf_counter() - start
    start = time.perf_counter()
    catalog = Catalog(db)  # opening checks the file
    opened = time.perf_counter() - start
    checks = "quick_check" if db.stat().st_size <= QUICK_CHECK_MAX_BYTES else "header and schema checks"
    rows = catalog.counts()["artifacts"]
    print(
        f"# {rows:,} rows bulk-loaded in {loaded:.1f} s ({rows / loaded:,.0f} rows/s), "
        f"{db.stat().st_size / 2**20:.0f} MiB; open ({checks}) {opened * 1000:.0f} ms"
    )
    rng = random.Random(7)
    n = args.queries

    def some_run() -> str:
        return run_id(rng.randrange(args.runs))

    def some_digest() -> str:
        return digest(rng.randrange(rows))

    def some_window() -> tuple[datetime, datetime]:
        at = T0 + timedelta(hours=rng.randrange(args.runs), seconds=rng.randrange(min(per_run, 3600)))
        return at, at + timedelta(minutes=1)

    queries: list[tuple[str, Callable[[], Any]]] = [
        ("by run", lambda: catalog.find(run=some_run())),
        ("by digest", lambda: catalog.find(digest=some_digest())),
        ("which runs made digest", lambda: catalog.runs_for_digest(some_digest())),
        ("by name pattern", lambda: catalog.find(name=f"case-{rng.randrange(args.runs):05d}/member-0*")),
        ("by kind + 1-minute window", lambda: catalog.find(kind="log", since=(w := some_window())[0], until=w[1])),
    ]
    print()
    print(f"| query over {rows:,} artifacts | median ms | rows returned | target ms | median / target |")
    print("|---|---:|---:|---:|---:|")
    worst = 0.0
    for label, fn in queries:
        ms, found = time_query(fn, n)
        worst = max(worst, ms)
        print(f"| {label} | {ms:.2f} | {found} | 10 | {ms / 10:.2f} |")
    catalog.close()

    # 2. rebuild from 100k committed refs
    root = work / "store"
    made = make_store(root, args.refs, args.writers)
    if made:
        print(f"\n# store: {args.refs:,} refs put by {args.writers} processes in {made:.0f} s (kept in {root})")
    store = LocalArtifactStore(root)
    seconds, whole = [], []
    for _ in range(args.rounds):
        for leftover in work.glob("rebuilt.sqlite*"):
            leftover.unlink()
        with Catalog(work / "rebuilt.sqlite") as rebuilt:
            start = time.perf_counter()
            report = rebuilt.rebuild([store], [])
            whole.append(time.perf_counter() - start)
            assert report.refs == args.refs == rebuilt.counts()["artifacts"], (report, rebuilt.counts())
        seconds.append(report.seconds)  # reading the sources, before the rows are written
    rate = args.refs / statistics.median(whole)
    print()
    print("| rebuild | median s | refs/s | target refs/s | refs/s / target |")
    print("|---|---:|---:|---:|---:|")
    print(
        f"| read {args.refs:,} refs (list + parse) | {statistics.median(seconds):.2f} | "
        f"{args.refs / statistics.median(seconds):,.0f} | | |"
    )
    print(
        f"| whole rebuild of {args.refs:,} refs | {statistics.median(whole):.2f} | {rate:,.0f} | 5,000 | "
        f"{rate / 5000:.2f} |"
    )
    print()
    print(f"queries: slowest median {worst:.2f} ms (target < 10 ms): {'met' if worst < 10 else 'NOT met'}")
    print(f"rebuild: {rate:,.0f} refs/s (target >= 5,000): {'met' if rate >= 5000 else 'NOT met'}")
    for leftover in [*work.glob("million.sqlite*"), *work.glob("rebuilt.sqlite*")]:
        leftover.unlink()
    bench_lineage(work, args)


# --- versions ---------------------------------------------------------------------------------------
def bench_versions(work: Path, args: argparse.Namespace) -> None:
    """Rebuild over ``--versioned-keys`` keys of 3 versions each: every version from one listing
    (``store.iter_versions()``, what ``Catalog.rebuild`` reads), against the peer that lists each
    key's versions on its own (``store.versions(key)`` per key of ``iter_refs()``)."""
    root = work / f"versioned-{args.versioned_keys}"
    store = LocalArtifactStore(root)
    if not root.exists():
        for i in range(args.versioned_keys):
            for v in range(3):
                store.put_bytes(f"{i}-{v}".encode(), f"case-{i // 100:03d}/member-{i:05d}.bin")
    n = args.versioned_keys * 3
    listing, per_key, whole = [], [], []
    for _ in range(args.rounds):
        start = time.perf_counter()
        assert sum(1 for _ in store.iter_versions()) == n
        listing.append(time.perf_counter() - start)
        start = time.perf_counter()
        assert sum(len(store.versions(ref.key)) for ref in store.iter_refs()) == n
        per_key.append(time.perf_counter() - start)
        for leftover in work.glob("versions.sqlite*"):
            leftover.unlink()
        with Catalog(work / "versions.sqlite") as rebuilt:
            start = time.perf_counter()
            report = rebuilt.rebuild([store], [])
            whole.append(time.perf_counter() - start)
            assert report.refs == n == rebuilt.counts()["artifacts"]
    one, peer, total = (statistics.median(x) for x in (listing, per_key, whole))
    print(f"\n| {args.versioned_keys:,} keys x 3 versions | median s | versions/s | ratio to peer |")
    print("|---|---:|---:|---:|")
    print(f"| iter_versions() (one listing) | {one:.3f} | {n / one:,.0f} | {peer / one:.2f}x faster |")
    print(f"| peer: versions(key) per key | {peer:.3f} | {n / peer:,.0f} | 1.00 |")
    print(f"| whole Catalog.rebuild | {total:.3f} | {n / total:,.0f} | target 5,000/s: {n / total / 5000:.2f} |")
    for leftover in work.glob("versions.sqlite*"):
        leftover.unlink()


# --- lineage ----------------------------------------------------------------------------------------
GENERATIONS = 200
INPUTS_PER_TASK = 2
OUTPUTS_PER_TASK = 3


def make_edges(total: int) -> Iterator[EdgeRow]:
    """Generations of tasks: each reads 2 outputs of the generation before and records 3 (5 edges a task)."""
    tasks = total // (INPUTS_PER_TASK + OUTPUTS_PER_TASK)
    per_gen = max(1, tasks // GENERATIONS)
    rng = random.Random(17)
    for g in range(GENERATIONS):
        rid = run_id(g)
        for t in range(per_gen):
            task = f"simulate-{t:05d}"
            node = task_node(rid, task)
            if g:
                for pick in rng.sample(range(per_gen * OUTPUTS_PER_TASK), INPUTS_PER_TASK):  # 2 distinct inputs
                    src = digest((g - 1) * per_gen * OUTPUTS_PER_TASK + pick)
                    yield EdgeRow(src, node, rid, task, STORE_URI, f"runs/{rid}/in", "use_artifact")
            else:
                for k in range(INPUTS_PER_TASK):
                    yield EdgeRow(
                        digest(2**62 + k), node, rid, task, STORE_URI, f"inputs/forcing-{k}.nc", "use_artifact"
                    )
            for k in range(OUTPUTS_PER_TASK):
                out = digest((g * per_gen + t) * OUTPUTS_PER_TASK + k)
                yield EdgeRow(node, out, rid, task, STORE_URI, f"runs/{rid}/{task}/out-{k}.nc", "recorded")


def bench_recording(work: Path, n: int) -> tuple[float, float]:
    """Median seconds of a 1 kB ``get_bytes`` in a session task: unrecorded (the peer), and recorded."""
    from scalable.artifacts.observe import reads_unobserved
    from scalable.session import lineage
    from scalable.session.handle import SessionHandle, activate, deactivate

    root = work / "record-store"
    shutil.rmtree(root, ignore_errors=True)
    store = LocalArtifactStore(root, durable=False)
    store.put_bytes(b"x" * 1000, "inputs/forcing.bin")
    run_dir = work / "record-run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir()
    handle = SessionHandle(run_id="bench", run_dir=str(run_dir), store=store, task="simulate-00001")
    lineage.install()
    token = activate(handle)
    bare, recorded = [], []
    try:
        for _ in range(50):  # warm-up: page cache, the kept-open stream
            store.get_bytes("inputs/forcing.bin")
        for _ in range(n):  # interleaved, so both see the same machine state
            with reads_unobserved():
                start = time.perf_counter()
                store.get_bytes("inputs/forcing.bin")
                bare.append(time.perf_counter() - start)
            start = time.perf_counter()
            store.get_bytes("inputs/forcing.bin")
            recorded.append(time.perf_counter() - start)
    finally:
        deactivate(token)
        lineage.close_streams(str(run_dir))
    lines = (run_dir / "artifacts.jsonl").read_bytes().count(b"\n")
    assert lines == n + 50, lines
    return statistics.median(bare), statistics.median(recorded)


def bench_report(work: Path, n_tasks: int) -> tuple[float, int]:
    """Seconds to write the report of a synthetic ``n_tasks`` run (each task 1 input, 1 output), and its size."""
    from scalable.report import write_run_report
    from scalable.telemetry import ArtifactRecorded, ArtifactUsed, TaskFinished, TaskStarted, TaskSubmitted
    from scalable.telemetry import encode_event as encode

    run_dir = work / "report-run" / "20261201T000000Z-bench0"
    shutil.rmtree(run_dir.parent, ignore_errors=True)
    run_dir.mkdir(parents=True)
    rid = run_dir.name
    tasks, artifacts = [], []
    for i in range(n_tasks):
        task = f"simulate-{i:05d}"
        at = T0 + timedelta(seconds=1 + i * 0.01)
        common = {"run_id": rid, "task": task, "function": "model:simulate", "worker": "tcp://127.0.0.1:1"}
        tasks += [
            TaskSubmitted(**common, timestamp=T0),
            TaskStarted(**common, timestamp=at),
            TaskFinished(**common, timestamp=at + timedelta(seconds=0.01), duration_s=0.01, cache="miss"),
        ]
        artifacts += [
            ArtifactUsed(run_id=rid, task=task, via="use_artifact", store=STORE_URI, key="inputs/forcing.nc",
                         digest=digest(2**62), timestamp=at),
            ArtifactRecorded(run_id=rid, task=task, name=f"m-{i}.nc", uri=f"{STORE_URI}/runs/{rid}/m-{i}.nc",
                             key=f"runs/{rid}/m-{i}.nc", digest=digest(i), size_bytes=1000, timestamp=at),
        ]  # fmt: skip
    (run_dir / "tasks.jsonl").write_bytes(b"".join(encode(e) for e in tasks))
    (run_dir / "artifacts.jsonl").write_bytes(b"".join(encode(e) for e in artifacts))
    times = []
    for _ in range(3):
        start = time.perf_counter()
        out = write_run_report(run_dir, run_dir / "report.html")
        times.append(time.perf_counter() - start)
    return statistics.median(times), out.stat().st_size


def bench_lineage(work: Path, args: argparse.Namespace) -> None:
    db = work / "lineage.sqlite"
    for leftover in work.glob("lineage.sqlite*"):
        leftover.unlink()
    with Catalog(db) as catalog:
        start = time.perf_counter()
        edges = catalog.bulk_load_edges(make_edges(args.edges))
        loaded = time.perf_counter() - start
    print(f"\n# lineage: {edges:,} edges bulk-loaded in {loaded:.1f} s, {db.stat().st_size / 2**20:.0f} MiB")
    per_gen = max(1, args.edges // (INPUTS_PER_TASK + OUTPUTS_PER_TASK) // GENERATIONS)
    rng = random.Random(5)

    def output_in(first: int, last: int) -> str:
        return digest(
            (rng.randrange(first, last) * per_gen + rng.randrange(per_gen)) * OUTPUTS_PER_TASK + rng.randrange(3)
        )

    catalog = Catalog(db)
    walks: list[tuple[str, Callable[[], Any]]] = [
        ("upstream, depth 5", lambda: catalog.upstream(output_in(100, GENERATIONS), depth=5).edges),
        ("downstream, depth 5", lambda: catalog.downstream(output_in(0, 100), depth=5).edges),
        (
            "upstream of a run's tasks, depth 5",
            lambda: catalog.upstream(run_id(rng.randrange(100, 200)), depth=1).edges,
        ),
    ]
    print()
    print(f"| lineage walk over {edges:,} edges | median ms | edges returned | target ms | median / target |")
    print("|---|---:|---:|---:|---:|")
    worst = 0.0
    for label, fn in walks[:2]:
        ms, found = time_query(fn, args.queries)
        worst = max(worst, ms)
        print(f"| {label} | {ms:.2f} | {found} | 10 | {ms / 10:.2f} |")
    ms, found = time_query(walks[2][1], args.queries)
    print(f"| upstream of a run ({per_gen:,} tasks), depth 1 | {ms:.2f} | {found} | | |")
    catalog.close()
    for leftover in work.glob("lineage.sqlite*"):
        leftover.unlink()

    bare, recorded = bench_recording(work, 5000)
    extra_us = (recorded - bare) * 1e6
    print()
    print("| reading a 1 kB blob in a session task | median us | ratio to the unrecorded read |")
    print("|---|---:|---:|")
    print(f"| get_bytes, unrecorded (the peer) | {bare * 1e6:.1f} | 1.00 |")
    print(f"| get_bytes, recorded as an input | {recorded * 1e6:.1f} | {recorded / bare:.2f} |")
    print(f"| recording, on top of the read | {extra_us:.1f} | target 50 us: {extra_us / 50:.2f} of it |")

    seconds, size = bench_report(work, 2000)
    print()
    print(
        "| report of a 2,000-task run (2,000 inputs, 2,000 outputs) | median s | file MB | target | median / target |"
    )
    print("|---|---:|---:|---:|---:|")
    print(f"| write_run_report | {seconds:.2f} | {size / 1e6:.2f} | 2 s, 2 MB | {seconds / 2:.2f} |")
    print()
    print(f"lineage walks: slowest median {worst:.2f} ms (target < 10 ms): {'met' if worst < 10 else 'NOT met'}")
    print(f"recording an input: {extra_us:.1f} us (target < 50 us): {'met' if extra_us < 50 else 'NOT met'}")
    met = seconds < 2 and size < 2e6
    print(f"report: {seconds:.2f} s, {size / 1e6:.2f} MB (target < 2 s, < 2 MB): {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
