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

    python bench/bench_catalog.py [--rows 1000000] [--runs 1000] [--refs 100000] [--dir PATH] [--rounds 3]

Targets (issue): queries under 10 ms; rebuild at least 5,000 refs/s.
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
    args = parser.parse_args()
    work = args.dir or Path(tempfile.gettempdir()) / "scalable-bench-catalog"
    work.mkdir(parents=True, exist_ok=True)
    load = f", load {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"# {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}{load}")
    print(f"# folder {work}; medians")

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


if __name__ == "__main__":
    main()
