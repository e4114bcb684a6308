"""Content-addressed objects (issue 14): dedup on re-puts, store size under re-puts, gc rate.

    python bench/bench_objects.py [--quick] [--repeat 5] [--only dedup_local,dir_s3,size_s3,gc_local]

Scenarios, each measured side by side in one run (contenders interleaved, medians compared):

* dedup_local: the second put of a large file under a new key, against one ``hashlib`` pass
  over it (digest cache off: the put hashes the file, then one existence check). Target <= 1.05x.
* dir_s3: a 2,000 x 4 KiB directory of which 1,800 files are already in the store, against
  the first put of the whole directory (SeaweedFS). Target <= 0.15x; bytes sent = the 200 new files.
* size_s3: 20 re-puts of 20 distinct 10 MiB files under 400 keys: the store's size against the
  distinct bytes. Target <= 1.02x (before content addressing: ~20x).
* gc_local: gc over 100,000 objects (half named by a committed directory, half garbage).
  Target >= 5,000 objects/s. Then ``gc(verify=True)`` over the 50,001 left (rate reported).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("SCALABLE_DIGEST_CACHE", "off")  # the bench must not depend on ~/.cache
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fsspec.callbacks import Callback

from scalable import ArtifactKind, build_artifact_store
from scalable.artifacts.digests import DigestCache, TreeEntry, digest_bytes, tree_manifest_bytes
from scalable.artifacts.layout import SHA256_OBJECTS, STORE_FORMAT, object_path

MiB = 1024 * 1024


class Sent(Callback):
    """Counts the bytes a put reports as transferred."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0

    def relative_update(self, inc: int = 1) -> None:
        self.bytes += inc


def interleave(contenders: dict[str, Callable[[int], object]], repeat: int, label: str) -> dict[str, float]:
    """Median seconds of each contender, one step of each per round, the order rotated."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(repeat):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            start = time.perf_counter()
            contenders[name](r)
            times[name].append(time.perf_counter() - start)
        print(f"  [{label}] round {r + 1}/{repeat}: " + ", ".join(f"{n} {times[n][-1]:.3f}s" for n in order))
    return {name: statistics.median(t) for name, t in times.items()}


def row(label: str, value: str, ratio: str, target: str, met: bool) -> None:
    print(f"| {label} | {value} | {ratio} | {target} | {'yes' if met else '**no**'} |")


def header(title: str) -> None:
    print(f"\n### {title}\n\n| contender | median | ratio | target | met |\n|---|---:|---:|---|---|")


def hash_pass(path: Path) -> str:
    h = hashlib.sha256()
    buf = bytearray(8 * MiB)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def bench_dedup_local(work: Path, size: int, repeat: int) -> None:
    src = work / "big.bin"
    with open(src, "wb") as f:
        for _ in range(size // MiB):
            f.write(os.urandom(MiB))
    from scalable.artifacts.local import LocalArtifactStore

    store = LocalArtifactStore(work / "store-dedup", digest_cache=DigestCache(None))
    store.put(src, "first")
    hash_pass(src)  # page cache warm for every contender

    def cold_cache_put(r: int) -> None:
        store.digests = DigestCache(None)  # nothing remembered: the put hashes the file once
        store.put(src, f"cold/{r}")

    medians = interleave(
        {
            "hashlib pass": lambda r: hash_pass(src),
            "second put, new key (digest not cached)": cold_cache_put,
            "second put, new key (digest cached)": lambda r: store.put(src, f"warm/{r}"),
        },
        repeat,
        "dedup_local",
    )
    base = medians["hashlib pass"]
    header(f"second put of a {size // MiB} MiB file under a new key (local)")
    row("hashlib pass", f"{base:.3f} s", "1.00", "", True)
    for name in ("second put, new key (digest not cached)", "second put, new key (digest cached)"):
        ratio = medians[name] / base
        row(name, f"{medians[name]:.3f} s", f"{ratio:.3f}", "<= 1.05x", ratio <= 1.05)


def _seaweed() -> object:
    from tests.servers.seaweedfs import SeaweedFS

    server = SeaweedFS()
    server.start()
    return server


def bench_dir_s3(server: object, bucket: str, work: Path, files: int, repeat: int) -> None:
    src = work / "tree"
    for i in range(files):
        sub = src / f"d{i % 20:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i:05d}").write_bytes(os.urandom(4096))
    new_files = sorted(src.rglob("f*"))[: files // 10]  # 10% change each round

    def fresh_store(tag: str) -> object:
        return build_artifact_store(server.url(bucket, f"dir-{tag}-{uuid.uuid4().hex[:8]}"), **server.storage_options)

    sent: dict[str, int] = {}
    state: dict[str, object] = {}

    def first_put(r: int) -> None:
        cb = Sent()
        fresh_store("first").put(src, "tree", callback=cb)
        sent["first"] = cb.bytes

    def prepare() -> None:
        store = fresh_store("reput")
        store.put(src, "tree")
        for f in new_files:
            f.write_bytes(os.urandom(4096))
        state["store"] = store

    def re_put(r: int) -> None:
        cb = Sent()
        state["store"].put(src, "tree", callback=cb)  # type: ignore[attr-defined]
        sent["reput"] = cb.bytes

    times: dict[str, list[float]] = {"first put": [], "re-put, 90% held": []}
    for r in range(repeat):
        prepare()  # untimed: a store holding the previous tree
        for name, fn in (("first put", first_put), ("re-put, 90% held", re_put))[:: 1 if r % 2 == 0 else -1]:
            start = time.perf_counter()
            fn(r)
            times[name].append(time.perf_counter() - start)
        print(f"  [dir_s3] round {r + 1}/{repeat}: " + ", ".join(f"{n} {t[-1]:.2f}s" for n, t in times.items()))
    first, reput = statistics.median(times["first put"]), statistics.median(times["re-put, 90% held"])
    header(f"{files} x 4 KiB directory, {files - len(new_files)} files already stored (S3, SeaweedFS)")
    row("first put", f"{first:.2f} s ({sent['first']} bytes sent)", "1.00", "", True)
    row(
        "re-put, 90% held",
        f"{reput:.2f} s ({sent['reput']} bytes sent)",
        f"{reput / first:.2f}",
        f"<= 0.15x, {len(new_files) * 4096} bytes",
        reput / first <= 0.15 and sent["reput"] == len(new_files) * 4096,
    )


def bench_size_s3(server: object, bucket: str, work: Path, n_files: int, size: int, n_keys: int, rounds: int) -> None:
    srcs = []
    for i in range(n_files):
        p = work / f"content-{i}.bin"
        p.write_bytes(os.urandom(size))
        srcs.append(p)
    store = build_artifact_store(server.url(bucket, f"size-{uuid.uuid4().hex[:8]}"), **server.storage_options)
    began = time.perf_counter()
    for r in range(rounds):
        for k in range(n_keys):
            store.put(srcs[(k + r) % n_files], f"keys/k{k:04d}")
    took = time.perf_counter() - began
    stored = sum(st.size for st in store._list_stats(SHA256_OBJECTS).values())
    distinct = n_files * size
    header(f"store size after {rounds} re-puts of {n_files} distinct {size // MiB} MiB files under {n_keys} keys (S3)")
    row("distinct bytes", f"{distinct / MiB:.0f} MiB", "1.00", "", True)
    row(
        f"bytes stored ({rounds * n_keys} puts in {took:.0f} s)",
        f"{stored / MiB:.1f} MiB",
        f"{stored / distinct:.3f}",
        "<= 1.02x",
        stored / distinct <= 1.02,
    )


def bench_gc_local(work: Path, n_objects: int) -> None:
    store = build_artifact_store(work / "store-gc", durable=False)
    root = Path(store.root)  # type: ignore[attr-defined]
    old = time.time() - 7200
    live = []
    for i in range(n_objects):
        data = i.to_bytes(8, "big")
        digest = digest_bytes(data)
        path = root / object_path(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (old, old))
        if i % 2 == 0:
            live.append(TreeEntry(f"m/{i:07d}", "file", digest, 8))
    manifest = tree_manifest_bytes(live)
    mpath = root / object_path(digest_bytes(manifest))
    mpath.write_bytes(manifest)
    store._layout_checked = True  # type: ignore[attr-defined]
    store._write_bytes(b'{"format":"%s"}' % STORE_FORMAT.encode(), ".scalable/store.json")  # type: ignore[attr-defined]
    store._commit("tree", ArtifactKind.DIR, digest_bytes(manifest), 8 * len(live), {}, "tree")  # type: ignore[attr-defined]
    start = time.perf_counter()
    report = store.gc(grace=3600)  # type: ignore[attr-defined]
    took = time.perf_counter() - start
    assert len(report.objects) == n_objects - len(live), report.summary()
    rate = (n_objects + 1) / took
    start = time.perf_counter()
    checked = store.gc(grace=3600, verify=True)  # type: ignore[attr-defined]
    took_verify = time.perf_counter() - start
    assert checked.verified_objects == len(live) + 1 and not checked.damaged, checked.summary()
    header(f"gc over {n_objects + 1} objects, half garbage (local)")
    row("gc", f"{took:.2f} s ({len(report.objects)} removed)", f"{rate:,.0f} objects/s", ">= 5,000/s", rate >= 5000)
    row(
        "then gc --verify (re-hash what is left)",
        f"{took_verify:.2f} s ({checked.verified_objects} re-hashed)",
        f"{(len(live) + 1) / took_verify:,.0f} objects/s",
        "",
        True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--repeat", type=int, default=None)
    parser.add_argument("--only", default="dedup_local,dir_s3,size_s3,gc_local")
    args = parser.parse_args()
    repeat = args.repeat or (3 if args.quick else 5)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    big, files, (n_files, size, n_keys, rounds), n_gc = (
        (256 * MiB, 2000, (5, 2 * MiB, 40, 5), 20_000)
        if args.quick
        else (1024 * MiB, 2000, (20, 10 * MiB, 400, 20), 100_000)
    )
    load = os.getloadavg()
    print(f"# bench_objects: {os.cpu_count()} CPUs, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {repeat} rounds")
    work = Path(tempfile.mkdtemp(prefix="bench-objects-"))
    server = None
    try:
        if "dedup_local" in only:
            bench_dedup_local(work, big, repeat)
        if "gc_local" in only:
            bench_gc_local(work, n_gc)
        if {"dir_s3", "size_s3"} & only:
            server = _seaweed()
            bucket = server.make_bucket(f"bench-{uuid.uuid4().hex[:8]}")  # type: ignore[attr-defined]
            if "dir_s3" in only:
                bench_dir_s3(server, bucket, work, files, repeat)
            if "size_s3" in only:
                bench_size_s3(server, bucket, work, n_files, size, n_keys, rounds)
    finally:
        if server is not None:
            server.close()  # type: ignore[attr-defined]
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
