"""Telemetry write throughput: a locked JsonlStream against a bare json.dumps loop, 1 and 8 writers.

Side by side in one run, in one state: each round runs every contender once, in turn, on
a fresh file in the same folder (deleted afterwards), and the medians over the rounds are
compared. Every contender writes the same artifact event (a ~450-byte line); for the
bare loop it is a plain dict, for the stream a pre-built ``ArtifactRecorded`` model.

Single writer, ``--events`` each:
  bare          f.write(json.dumps(d) + "\\n"); f.flush()      (no lock, no model, no redaction)
  locked        JsonlStream.write(event)                        (serialize, redact check, flock, lseek, write, unlock)
  build+locked  JsonlStream.write(ArtifactRecorded(...))        (the same plus building and validating the model)
  write_many    JsonlStream.write_many(batch of 100)            (one lock and one write per batch)

Eight writer processes on one file, ``--per-writer`` each (events pre-built before the start):
  bare x8       each process: the bare loop on its own append handle of the shared file
  locked x8     each process: JsonlStream.write
Aggregate events/s = all events / (last finish - first start). Afterwards every line is
parsed and the (writer, sequence) pairs are checked: each exactly once ("lossless").

    python bench/bench_telemetry.py [--events 200000] [--per-writer 50000] [--writers 8] [--rounds 5] [--dir PATH]

Target (issue 6): one locked writer at least 0.5x the bare loop.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scalable.telemetry import ArtifactRecorded, JsonlStream

RUN_ID = "20260509T073525-1a2b3c"


def make_event(task: str = "simulate-17") -> ArtifactRecorded:
    return ArtifactRecorded(
        run_id=RUN_ID,
        task=task,
        name="output.csv",
        uri=f"s3://bucket/runs/{RUN_ID}/output.csv",
        key=f"runs/{RUN_ID}/output.csv",
        artifact_kind="file",
        digest="sha256:" + "ab" * 32,
        size_bytes=123456,
    )


# --- single writer --------------------------------------------------------------------------


def bare(path: Path, n: int) -> None:
    record = make_event().model_dump(mode="json")
    with open(path, "a", encoding="utf-8") as f:
        for _ in range(n):
            f.write(json.dumps(record) + "\n")
            f.flush()


def locked(path: Path, n: int) -> None:
    event = make_event()
    with JsonlStream(path) as stream:
        for _ in range(n):
            stream.write(event)


def build_and_locked(path: Path, n: int) -> None:
    with JsonlStream(path) as stream:
        for _ in range(n):
            stream.write(make_event())


def write_many(path: Path, n: int) -> None:
    batch = [make_event()] * 100
    with JsonlStream(path) as stream:
        for _ in range(n // 100):
            stream.write_many(batch)


SINGLE: dict[str, Callable[[Path, int], None]] = {
    "bare": bare,
    "locked": locked,
    "build+locked": build_and_locked,
    "write_many": write_many,
}


def count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


# --- eight writers --------------------------------------------------------------------------


def writer_process(kind: str, path: str, writer: int, count: int, barrier: Any, times: Any) -> None:
    events = [make_event(task=f"{writer}:{i}") for i in range(count)]
    if kind == "bare":
        records = [e.model_dump(mode="json") for e in events]
        with open(path, "a", encoding="utf-8") as f:
            barrier.wait()
            start = time.perf_counter()
            for record in records:
                f.write(json.dumps(record) + "\n")
                f.flush()
            end = time.perf_counter()
    else:
        stream = JsonlStream(path)
        barrier.wait()
        start = time.perf_counter()
        for event in events:
            stream.write(event)
        end = time.perf_counter()
        stream.close()
    times[writer] = (start, end)


def many_writers(kind: str, path: Path, writers: int, per_writer: int) -> tuple[float, bool]:
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(writers)
    times = ctx.Manager().dict()
    procs = [
        ctx.Process(target=writer_process, args=(kind, str(path), w, per_writer, barrier, times))
        for w in range(writers)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise SystemExit(f"a writer process failed with exit code {p.exitcode}")
    starts, ends = zip(*times.values(), strict=True)
    rate = writers * per_writer / (max(ends) - min(starts))
    return rate, lossless(path, writers, per_writer)


def lossless(path: Path, writers: int, per_writer: int) -> bool:
    """Every line parses, and each (writer, sequence) pair appears exactly once."""
    seen: set[str] = set()
    lines = 0
    with open(path, "rb") as f:
        for raw in f:
            lines += 1
            seen.add(json.loads(raw)["task"])
    return lines == len(seen) == writers * per_writer


# --- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="events per single-writer contender")
    parser.add_argument("--per-writer", type=int, default=50_000, help="events per process in the 8-writer runs")
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None, help="folder on the filesystem to measure (default: temp)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-telemetry-", dir=args.dir))
    line = len(make_event().__pydantic_serializer__.to_json(make_event())) + 1
    load = ", load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    print(f"# {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}{load}")
    print(f"# folder {work}, {line}-byte lines, {args.rounds} rounds, medians; contenders interleaved per round")

    single: dict[str, list[float]] = {name: [] for name in SINGLE}
    multi: dict[str, list[float]] = {"bare": [], "locked": []}
    all_lossless = True
    for _ in range(args.rounds):
        for name, fn in SINGLE.items():
            path = work / f"{name}.jsonl"
            start = time.perf_counter()
            fn(path, args.events)
            single[name].append(args.events / (time.perf_counter() - start))
            all_lossless &= count_lines(path) == args.events
            path.unlink()
        for kind in multi:
            path = work / f"many-{kind}.jsonl"
            rate, ok = many_writers(kind, path, args.writers, args.per_writer)
            multi[kind].append(rate)
            if kind == "locked":
                all_lossless &= ok
            path.unlink()
    work.rmdir()

    base = statistics.median(single["bare"])
    print()
    print("| writer | events/s (median) | µs/event | vs bare loop |")
    print("|---|---:|---:|---:|")
    for name, rates in single.items():
        rate = statistics.median(rates)
        print(f"| 1 x {name} | {rate:,.0f} | {1e6 / rate:.2f} | {rate / base:.2f}x |")
    multi_base = statistics.median(multi["bare"])
    for kind, rates in multi.items():
        rate = statistics.median(rates)
        print(f"| {args.writers} x {kind} (aggregate) | {rate:,.0f} | {1e6 / rate:.2f} | {rate / multi_base:.2f}x |")
    print()
    ratio = statistics.median(single["locked"]) / base
    print(f"locked / bare = {ratio:.2f} (target >= 0.5): {'met' if ratio >= 0.5 else 'NOT met'}")
    print(
        f"lossless: {'yes' if all_lossless else 'NO'} "
        f"(every locked run: each line parses, each event exactly once; {args.writers} x {args.per_writer:,} per round)"
    )


if __name__ == "__main__":
    main()
