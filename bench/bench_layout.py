"""What layout 3 and the delete ordering cost the version reads and deletes, against the code before.

    python bench/bench_layout.py [--peer REV] [--repeat 5] [--calls 20]

On S3 (SeaweedFS), one key with 10 versions: ``versions(key)``, ``info(key, version=1)``
(each on a fresh store object, so the first one reads ``store.json``), ``info(key)`` (one
head read, the same code either way), and ``delete`` of a key with 3 versions. Each round
runs this checkout's code and the peer's (``git archive REV``, default ``main``) in turn, in
child processes against one server; the table gives the medians and the ratio to the peer.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CALLS = ("versions(key)", "info(key, version=1)", "info(key)", "delete(key)")


def child(uri: str, options: dict[str, object], calls: int) -> dict[str, float]:
    """Run in a child: median seconds of each call (imports whichever scalable is first on sys.path)."""
    from scalable import build_artifact_store

    setup = build_artifact_store(uri, **options)
    for i in range(10):
        setup.put_bytes(f"version {i}".encode(), "k")
    for j in range(calls):
        for i in range(3):
            setup.put_bytes(f"doomed {j} {i}".encode(), f"doomed/{j}")
    times: dict[str, list[float]] = {name: [] for name in CALLS}
    for j in range(calls):
        store = build_artifact_store(uri, **options)  # a fresh store object, as a new process has
        for name in CALLS:
            start = time.perf_counter()
            if name == "versions(key)":
                store.versions("k")
            elif name == "info(key, version=1)":
                store.info("k", version=1)
            elif name == "info(key)":
                store.info("k")
            else:
                store.delete(f"doomed/{j}")
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def export(rev: str, into: Path) -> Path:
    """The peer's source tree (``git archive``), to import its ``scalable`` from."""
    tar = into / "peer.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(tar), rev, "scalable"], check=True)
    with tarfile.open(tar) as t:
        t.extractall(into / "peer", filter="data")
    return into / "peer"


def run_child(code_root: Path, uri: str, options: dict[str, object], calls: int) -> dict[str, float]:
    script = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); sys.path.insert(1, sys.argv[2]); "
        "from bench_layout import child; "
        "print(json.dumps(child(sys.argv[3], json.loads(sys.argv[4]), int(sys.argv[5]))))"
    )
    env = {**os.environ, "SCALABLE_DIGEST_CACHE": "off"}
    out = subprocess.run(
        [sys.executable, "-c", script, str(code_root), str(ROOT / "bench"), uri, json.dumps(options), str(calls)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=tempfile.gettempdir(),
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", default="main", help="git revision to compare with (default: main)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds, each running both codes in turn")
    parser.add_argument("--calls", type=int, default=20, help="calls of each kind per round")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.servers.seaweedfs import SeaweedFS

    load = os.getloadavg()
    loads = " ".join(f"{x:.2f}" for x in load)
    print(f"# bench_layout: {os.cpu_count()} CPUs, load {loads}, {args.repeat} rounds")
    server = SeaweedFS()
    server.start()
    try:
        bucket = server.make_bucket(f"bench-{uuid.uuid4().hex[:8]}")
        with tempfile.TemporaryDirectory() as tmp:
            codes = {"this checkout": ROOT, f"peer {args.peer}": export(args.peer, Path(tmp))}
            rounds: dict[str, list[dict[str, float]]] = {name: [] for name in codes}
            names = list(codes)
            for r in range(args.repeat):
                for name in names[r % 2 :] + names[: r % 2]:
                    uri = server.url(bucket, f"layout-{uuid.uuid4().hex[:8]}")
                    rounds[name].append(run_child(codes[name], uri, server.storage_options, args.calls))
                print(f"  round {r + 1}/{args.repeat} done")
    finally:
        server.close()
    ours, peer = names
    print(f"\n| call (S3, SeaweedFS) | {ours} | {peer} | ratio |\n|---|---:|---:|---:|")
    for call in CALLS:
        a = statistics.median(r[call] for r in rounds[ours])
        b = statistics.median(r[call] for r in rounds[peer])
        print(f"| {call} | {a * 1000:.1f} ms | {b * 1000:.1f} ms | {a / b:.2f} |")
    load = os.getloadavg()
    print(f"\nload after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
