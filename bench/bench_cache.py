"""Cache hit latency, side by side: @cacheable against lru_cache, diskcache, joblib and cachier.

Every contender caches ``f(x, y=2)`` returning a small dict and is called with the same
arguments after a first call that computed it, so each timed call is a hit. Contenders
run interleaved (one batch of each per round) and the median of the rounds' per-call
means is reported, so machine load affects all of them alike. Then a remote hit: a
1 MiB value on a SeaweedFS S3 server on 127.0.0.1 with the local tier cold, next to the
floors of reading the same entry straight from the artifact store and from s3fs.

    python bench/bench_cache.py [--rounds 15] [--calls 2000] [--no-remote]

Targets (issue 5): a local hit within 1.5x of diskcache ``memoize`` (which does no
canonical hashing), and at least 5x faster than ``joblib.Memory`` and cachier. The row
``diskcache get (floor)`` is one ``Cache.get`` of a fixed string key: the cost of the
SQLite read alone, under every disk-backed contender.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("SCALABLE_DIGEST_CACHE", "off")

from scalable import build_artifact_store
from scalable.cache import cacheable, configure_cache
from scalable.cache.remote import entry_key

MiB = 1024 * 1024


def body(x: int, y: int = 2) -> dict[str, int]:
    return {"x": x, "y": y, "sum": x + y}


def make_contenders(work: Path) -> dict[str, Callable[..., Any]]:
    """name -> a cached ``body``; those whose library is not installed are left out."""
    contenders: dict[str, Callable[..., Any]] = {"functools.lru_cache": functools.lru_cache(maxsize=None)(body)}
    import diskcache

    contenders["diskcache memoize"] = diskcache.Cache(str(work / "diskcache")).memoize()(body)
    # The storage floor of a one-read design: a fixed string key, no key building at all.
    raw = diskcache.Cache(str(work / "diskcache-raw"))
    raw.set("fixed-key", body(1, y=2))
    contenders["diskcache get (floor)"] = lambda x, y=2: raw.get("fixed-key")
    try:
        import joblib

        contenders["joblib.Memory"] = joblib.Memory(location=str(work / "joblib"), verbose=0).cache(body)
    except ImportError:
        print("# joblib not installed: pip install joblib")
    try:
        from cachier import cachier

        contenders["cachier"] = cachier(cache_dir=str(work / "cachier"))(body)
    except ImportError:
        print("# cachier not installed: pip install cachier")
    configure_cache(local_dir=work / "scalable", remote=None)
    contenders["scalable @cacheable"] = cacheable(body)
    return contenders


def per_call(fn: Callable[[], Any], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def interleaved(contenders: dict[str, Callable[[], Any]], rounds: int, calls: int) -> dict[str, float]:
    """Median over rounds of each contender's mean seconds per call."""
    for fn in contenders.values():
        per_call(fn, max(1, calls // 10))  # warm up
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            samples[name].append(per_call(fn, calls))
    return {name: statistics.median(values) for name, values in samples.items()}


def local_hits(rounds: int, calls: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            contenders = make_contenders(work)
            for fn in contenders.values():
                assert fn(1, y=2) == {"x": 1, "y": 2, "sum": 3}  # the first call computes
            results = interleaved(
                {name: functools.partial(fn, 1, y=2) for name, fn in contenders.items()}, rounds, calls
            )
        floor = results["diskcache memoize"]
        ours = results["scalable @cacheable"]

        def faster(name: str) -> tuple[str, bool | None]:
            if name not in results:
                return "", None
            return f"scalable >= 5x faster (is {results[name] / ours:.1f}x)", results[name] >= 5 * ours

        targets = {
            "scalable @cacheable": (f"<= 1.5x memoize (is {ours / floor:.2f}x)", ours <= 1.5 * floor),
            "joblib.Memory": faster("joblib.Memory"),
            "cachier": faster("cachier"),
        }
        print(f"# local hit of f(1, y=2) -> small dict: {rounds} rounds x {calls} calls, interleaved, median")
        print(f"{'contender':<24}{'us/hit':>10}{'vs memoize':>12}   target")
        for name, seconds in results.items():
            target, met = targets.get(name, ("", None))
            verdict = "" if met is None else ("met" if met else "NOT MET")
            print(f"{name:<24}{seconds * 1e6:>10.1f}{seconds / floor:>11.2f}x   {target} {verdict}".rstrip())
        print()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def remote_hits(rounds: int) -> None:
    from tests.servers.seaweedfs import SeaweedFS

    work = Path(tempfile.mkdtemp(prefix="bench-cache-remote-"))
    server = SeaweedFS()
    try:
        server.start()
        remote = server.url(server.new_bucket(), "cache")
        options = server.storage_options
        payload = os.urandom(MiB)

        def big(seed: int) -> bytes:
            return payload

        configure_cache(local_dir=work / "writer", remote=remote, remote_options=options)
        writer = cacheable(big)
        writer(1)  # computed: written to the remote
        key = writer.cache_key(1)

        configure_cache(local_dir=work / "reader", remote=remote, remote_options=options)
        both = cacheable(big)  # both tiers; its local entry is dropped before each timed call
        remote_only = cacheable(tiers="remote")(big)
        store = build_artifact_store(remote, **options)
        raw_path = f"{server.url(server.new_bucket(), 'raw')}/entry"
        fs = server.filesystem()
        fs.pipe_file(raw_path, store.get_bytes(entry_key(key)))  # the same bytes as a plain object

        def cold_local() -> float:
            both.cache_clear()  # empties this function's local entries, outside the timing
            start = time.perf_counter()
            value, info = both.call_with_info(1)
            elapsed = time.perf_counter() - start
            assert value == payload and info.outcome == "remote"
            return elapsed

        contenders: dict[str, Callable[[], float]] = {
            "s3fs cat_file (floor)": lambda: timed(lambda: fs.cat_file(raw_path)),
            "store.get_bytes (verified)": lambda: timed(lambda: store.get_bytes(entry_key(key))),
            "remote-only tier hit": lambda: timed(lambda: remote_only(1)),
            "remote hit, cold local tier": cold_local,
        }
        assert remote_only(1) == payload and both(1) == payload
        both.cache_clear()
        samples: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(rounds):
            for name, fn in contenders.items():
                samples[name].append(fn())
        assert remote_only.cache_info().remote_hits >= rounds and remote_only.cache_info().misses == 0
        assert both.call_with_info(1)[1].outcome == "local"  # a remote hit fills the local tier
        floor = statistics.median(samples["s3fs cat_file (floor)"])
        print(f"# remote hit of a 1 MiB value, SeaweedFS on 127.0.0.1: {rounds} rounds, interleaved, median")
        print(f"{'operation':<30}{'ms':>9}{'vs s3fs':>10}")
        for name, values in samples.items():
            median = statistics.median(values)
            print(f"{name:<30}{median * 1e3:>9.2f}{median / floor:>9.2f}x")
    finally:
        server.close()
        shutil.rmtree(work, ignore_errors=True)


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--remote-rounds", type=int, default=20)
    parser.add_argument("--no-remote", action="store_true", help="skip the SeaweedFS part")
    args = parser.parse_args()
    print(f"# python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    local_hits(args.rounds, args.calls)
    if not args.no_remote:
        remote_hits(args.remote_rounds)


if __name__ == "__main__":
    main()
