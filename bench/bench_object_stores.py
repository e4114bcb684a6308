"""Object-store transfers and metadata on SeaweedFS (loopback), side by side with s3fs and boto3.

One SeaweedFS server is started on 127.0.0.1 for the run and stopped by its pid at the end.
Every scenario runs its contenders interleaved, one of each per round (the order rotates
from round to round), and compares medians: this VM is slow to reuse memory that was
freed a couple of seconds earlier, so contenders are measured in one state, side by
side, never in separate runs. Before each timed step of the large-file scenario the
previous output is deleted, so every contender starts with the same just-freed memory.

    python bench/bench_object_stores.py [--quick] [--repeat N] [--only small,large,meta,peers]
                                        [--backends s3,azure,gcs] [--sizes 256,1024]

Scenarios and targets (issue 4):

* small: a directory of 2,000 files of 4 KiB. ``store.put(dir, key)`` (digests + commit)
  no slower than s3fs ``fs.put(dir, path, recursive=True)`` (no digests);
  ``store.put(dir, key, pack=True)`` at least 10x faster than s3fs.
* large: one 512 MiB file. ``store.put`` at least 1.2x the throughput of s3fs
  ``fs.put_file`` (boto3 ``upload_file`` shown too); ``store.get`` (verified) at least
  0.9x s3fs ``fs.get_file``.
* meta: ``exists`` and ``info`` on 1,000 keys and ``list_artifacts`` on 10,000 keys, with
  the HTTP requests each makes (counted by a botocore ``before-send`` hook), next to the
  same calls on plain objects through s3fs.

Those three measure the fsspec transport (``transport="fsspec"``). ``peers`` (issue 15)
measures the native transport against obstore alone and s5cmd, each contender in a process
of its own (``bench/object_store_peers.py``), with the fsspec transport in the same table,
on SeaweedFS and, for the small and large rows, on Azurite and fake-gcs-server:

* a directory of 2,000 files of 4 KiB put with digests and commit: >= 1.0x bare obstore
  ``put_async`` (64 in flight) and >= 1.0x ``s5cmd cp``; its verified get >= 1.0x s5cmd.
* 256 MiB and 1 GiB put with SHA-256 and verified get: >= 0.9x the faster of obstore and s5cmd.
* ``info`` and ``exists``: one request each, >= 1.0x s3fs.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("SCALABLE_DIGEST_CACHE", "off")  # the bench must not depend on ~/.cache
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boto3
from boto3.s3.transfer import TransferConfig
from object_store_peers import Contender as PeerProcess
from object_store_peers import Where
from object_store_peers import interleave as interleave_peers

from scalable import ArtifactKind, build_artifact_store
from scalable.artifacts.digests import digest_bytes
from scalable.artifacts.layout import REFS, STORE_FORMAT, STORE_JSON, object_path, version_path
from scalable.artifacts.s3 import S3ArtifactStore
from scalable.artifacts.store import Layout, RefRecord
from tests.servers.seaweedfs import SeaweedFS

MiB = 1024 * 1024


# --------------------------------------------------------------------------- measuring


class RequestCounter:
    """Counts the HTTP requests an s3fs filesystem sends (a botocore ``before-send`` hook)."""

    def __init__(self, fs: Any) -> None:
        self.count = 0
        fs.s3.meta.events.register("before-send.s3", self._sent)

    def _sent(self, **_: Any) -> None:
        self.count += 1  # returning None lets the request go out


@dataclass
class Contender:
    name: str
    run: Callable[[int], object]  # the timed step, given the round number
    before: Callable[[int], object] | None = None  # untimed, just before the step
    after: Callable[[int], object] | None = None  # untimed, just after it
    counter: RequestCounter | None = None
    times: list[float] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def median_requests(self) -> int | None:
        return int(statistics.median(self.requests)) if self.requests else None


def interleave(contenders: list[Contender], repeat: int, label: str) -> None:
    """One timed step of every contender per round, the order rotated each round."""
    for r in range(repeat):
        order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
        for c in order:
            if c.before is not None:
                c.before(r)
            sent = c.counter.count if c.counter else 0
            start = time.perf_counter()
            c.run(r)
            c.times.append(time.perf_counter() - start)
            if c.counter is not None:
                c.requests.append(c.counter.count - sent)
            if c.after is not None:
                c.after(r)
        print(f"  [{label}] round {r + 1}/{repeat}: " + ", ".join(f"{c.name} {c.times[-1]:.2f}s" for c in order))


@dataclass
class Row:
    label: str
    value: str
    ratio: str
    target: str
    met: str
    requests: str = ""


def print_table(title: str, columns: tuple[str, str, str], rows: list[Row]) -> None:
    print(f"\n### {title}\n")
    print(f"| contender | {columns[0]} | {columns[1]} | requests | {columns[2]} | met |")
    print("|---|---:|---:|---:|---|---|")
    for row in rows:
        print(f"| {row.label} | {row.value} | {row.ratio} | {row.requests} | {row.target} | {row.met} |")


def verdict(ok: bool) -> str:
    return "yes" if ok else "**no**"


# --------------------------------------------------------------------------- fixtures


def make_small_tree(root: Path, files: int, size: int) -> None:
    for i in range(files):
        sub = root / f"d{i % 20:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i:05d}.bin").write_bytes(os.urandom(size))


def make_big_file(path: Path, size: int) -> str:
    h = hashlib.sha256()
    block = os.urandom(8 * MiB)
    with open(path, "wb") as f:
        left = size
        while left:
            piece = block[: min(left, len(block))]
            f.write(piece)
            h.update(piece)
            left -= len(piece)
            block = hashlib.sha512(block[:64]).digest() * (len(block) // 64)  # cheap, non-repeating
    return "sha256:" + h.hexdigest()


def read_through(path: Path) -> None:
    with open(path, "rb", buffering=0) as f:
        while f.read(8 * MiB):
            pass


# --------------------------------------------------------------------------- scenarios


def new_store(server: SeaweedFS, bucket: str, prefix: str) -> S3ArtifactStore:
    """The store ``build_artifact_store`` gives for this server, on a filesystem of its own."""
    store = build_artifact_store(
        server.url(bucket, prefix), skip_instance_cache=True, transport="fsspec", **server.storage_options
    )
    assert isinstance(store, S3ArtifactStore)
    return store


def bench_small(server: SeaweedFS, bucket: str, work: Path, files: int, repeat: int) -> None:
    src = work / "small"
    make_small_tree(src, files, 4096)
    store = new_store(server, bucket, "store-small")
    fs = server.filesystem()
    prefix = f"{bucket}/raw-small"
    contenders = [
        Contender("store.put(dir)", lambda r: store.put(src, f"tree/{r}"), counter=RequestCounter(store.fs)),
        Contender("s3fs fs.put(recursive)", lambda r: fs.put(f"{src}/", f"{prefix}/{r}/", recursive=True)),
        Contender("store.put(dir, pack=True)", lambda r: store.put(src, f"packed/{r}", pack=True)),
    ]
    contenders[1].counter = RequestCounter(fs)
    contenders[2].counter = contenders[0].counter
    print(f"\nsmall: {files} files of 4 KiB, {repeat} rounds")
    interleave(contenders, repeat, "small")
    for r in range(repeat):  # the stored trees are whole and equal
        assert store.info(f"tree/{r}").digest == store.info(f"packed/{r}").digest
    put, peer, pack = contenders
    rows = [
        Row(
            put.name,
            f"{put.median:.2f} s",
            f"{peer.median / put.median:.2f}x",
            "no slower than s3fs (>= 1.00x)",
            verdict(put.median <= peer.median),
            str(put.median_requests),
        ),
        Row(peer.name, f"{peer.median:.2f} s", "1.00x (peer)", "", "", str(peer.median_requests)),
        Row(
            pack.name,
            f"{pack.median:.2f} s",
            f"{peer.median / pack.median:.2f}x",
            ">= 10x faster than s3fs",
            verdict(peer.median / pack.median >= 10),
            str(pack.median_requests),
        ),
    ]
    print_table(
        f"A directory of {files} files of 4 KiB (median of {repeat}; ratio = s3fs time / time)",
        ("median", "speed vs s3fs", "target"),
        rows,
    )
    fs.rm(prefix, recursive=True)


def bench_large(server: SeaweedFS, bucket: str, work: Path, size: int, repeat: int) -> None:
    src = work / "big.bin"
    digest = make_big_file(src, size)
    read_through(src)  # page cache warm for every contender
    store = new_store(server, bucket, "store-large")
    fs = server.filesystem()
    s3 = boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name=server.region,
    )
    out = work / "out.bin"
    raw = f"{bucket}/raw-large"

    def clear_out(_: int) -> None:
        out.unlink(missing_ok=True)

    def put_store(r: int) -> None:
        ref = store.put(src, f"big/{r}")
        assert ref.digest == digest

    puts = [
        Contender("store.put", put_store, after=lambda r: store.delete(f"big/{r}")),
        Contender(
            "s3fs fs.put_file",
            lambda r: fs.put_file(str(src), f"{raw}/s3fs-{r}"),
            after=lambda r: fs.rm_file(f"{raw}/s3fs-{r}"),
        ),
        Contender(
            "boto3 upload_file",
            lambda r: s3.upload_file(str(src), bucket, f"raw-large/boto3-{r}", Config=TransferConfig()),
            after=lambda r: s3.delete_object(Bucket=bucket, Key=f"raw-large/boto3-{r}"),
        ),
    ]
    print(f"\nlarge put: one {size // MiB} MiB file, {repeat} rounds")
    interleave(puts, repeat, "large put")

    store.put(src, "big/get")
    fs.put_file(str(src), f"{raw}/get")

    def get_store(_: int) -> None:
        store.get("big/get", out)  # verified against the committed digest

    gets = [
        Contender("store.get (verified)", get_store, before=clear_out),
        Contender("s3fs fs.get_file", lambda _: fs.get_file(f"{raw}/get", str(out)), before=clear_out),
    ]
    print(f"\nlarge get: one {size // MiB} MiB file, {repeat} rounds")
    interleave(gets, repeat, "large get")
    clear_out(0)

    def mbps(c: Contender) -> float:
        return size / c.median / 1e6

    put, peer_put, boto = puts
    get, peer_get = gets
    rows = [
        Row(
            put.name,
            f"{mbps(put):.0f} MB/s",
            f"{mbps(put) / mbps(peer_put):.2f}x",
            ">= 1.2x s3fs put_file",
            verdict(mbps(put) >= 1.2 * mbps(peer_put)),
        ),
        Row(peer_put.name, f"{mbps(peer_put):.0f} MB/s", "1.00x (peer)", "", ""),
        Row(boto.name, f"{mbps(boto):.0f} MB/s", f"{mbps(boto) / mbps(peer_put):.2f}x", "(reference)", ""),
        Row(
            get.name,
            f"{mbps(get):.0f} MB/s",
            f"{mbps(get) / mbps(peer_get):.2f}x",
            ">= 0.9x s3fs get_file",
            verdict(mbps(get) >= 0.9 * mbps(peer_get)),
        ),
        Row(peer_get.name, f"{mbps(peer_get):.0f} MB/s", "1.00x (peer)", "", ""),
    ]
    print_table(
        f"One {size // MiB} MiB file (median of {repeat}; MB = 10^6 bytes)", ("throughput", "vs s3fs", "target"), rows
    )
    store.delete("big/get")
    fs.rm(raw, recursive=True)


def bench_meta(server: SeaweedFS, bucket: str, n_keys: int, n_probe: int, repeat: int) -> None:
    store = new_store(server, bucket, "store-meta")
    fs = server.filesystem()
    keys = [f"runs/r{i // 100:03d}/k{i:05d}.json" for i in range(n_keys)]
    # Commit the artifacts as put_bytes does (the object, a version record, the head), but written in
    # concurrent batches: one put_bytes at a time would take minutes on this server.
    began = time.perf_counter()
    files: dict[str, bytes] = {}
    files[f"{store.root_path}/{STORE_JSON}"] = b'{"format":"%s"}' % STORE_FORMAT.encode()
    files[f"{store.root_path}/{object_path(digest_bytes(b'{}'))}"] = b"{}"  # one object: every key names it
    for key in keys:
        ref = store._make_ref(key, ArtifactKind.BLOB, digest_bytes(b"{}"), 2, {}).model_copy(update={"version": 1})
        record = RefRecord(ref, Layout.FILE).to_bytes()
        files[f"{store.root_path}/{version_path(key, 1)}"] = record
        files[f"{store.root_path}/{REFS}/{key}"] = record
    store.fs.pipe(files)
    assert store.get_bytes(keys[-1]) == b"{}"
    print(f"\nmeta: {n_keys} artifacts committed in {time.perf_counter() - began:.0f} s")
    step = max(1, n_keys // n_probe)
    probe = keys[::step][:n_probe]
    ours, theirs = RequestCounter(store.fs), RequestCounter(fs)
    refs = f"{store.root_path}/{REFS}"  # s3fs works on the same objects: the ref records

    def each(fn: Callable[[str], object], items: list[str]) -> Callable[[int], None]:
        def run(_: int) -> None:
            for item in items:
                fn(item)

        return run

    def listed(_: int) -> None:
        assert len(store.list_artifacts("runs/")) == n_keys

    def found(_: int) -> None:
        assert len(fs.find(f"{refs}/runs")) == n_keys

    def fresh(_: int) -> None:
        fs.invalidate_cache()  # s3fs remembers listings; a warm cache would answer without asking

    pairs = [
        (
            "exists",
            Contender(f"store.exists x{len(probe)}", each(store.exists, probe), counter=ours),
            Contender(
                f"s3fs fs.exists x{len(probe)}",
                each(lambda k: fs.exists(f"{refs}/{k}"), probe),
                before=fresh,
                counter=theirs,
            ),
        ),
        (
            "info",
            Contender(f"store.info x{len(probe)}", each(store.info, probe), counter=ours),
            Contender(
                f"s3fs fs.info x{len(probe)}",
                each(lambda k: fs.info(f"{refs}/{k}"), probe),
                before=fresh,
                counter=theirs,
            ),
        ),
        (
            "list",
            Contender(f"store.list_artifacts ({n_keys} keys)", listed, counter=ours),
            Contender(f"s3fs fs.find ({n_keys} objects)", found, before=fresh, counter=theirs),
        ),
    ]
    for label, a, b in pairs:
        print(f"\nmeta {label}: {repeat} rounds")
        interleave([a, b], repeat, f"meta {label}")
    rows = []
    for _, a, b in pairs:
        rows.append(
            Row(
                a.name, f"{a.median * 1000:.0f} ms", f"{b.median / a.median:.2f}x", "(none)", "", str(a.median_requests)
            )
        )
        rows.append(Row(b.name, f"{b.median * 1000:.0f} ms", "1.00x (peer)", "", "", str(b.median_requests)))
    print_table(
        f"Metadata (median of {repeat}; ratio = s3fs time / time; requests per step)",
        ("median", "speed vs s3fs", "target"),
        rows,
    )


# --------------------------------------------------------------------------- peers (issue 15)


def _where(kind: str, server: Any, bucket: str) -> Where:
    env = {}
    if kind == "s3":
        env = {
            "AWS_ACCESS_KEY_ID": server.access_key,
            "AWS_SECRET_ACCESS_KEY": server.secret_key,
            "AWS_REGION": server.region,
        }
    base = server.url(bucket, f"peers-{uuid.uuid4().hex[:8]}")
    return Where(kind, base, bucket, dict(server.storage_options), server.endpoint_url, env)


def _ratio_row(label: str, ours: float | None, peer: float | None, target: float | None, unit: str, size: int) -> Row:
    """A row of throughput (``size`` bytes per step) or time, with its ratio to ``peer``."""
    if ours is None:
        return Row(label, "failed", "", "", "")
    value = f"{size / ours / 1e6:.0f} MB/s" if unit == "MB/s" else f"{ours:.2f} s"
    if peer is None:
        return Row(label, value, "", "", "")
    ratio = peer / ours
    if target is None:
        return Row(label, value, f"{ratio:.2f}x", "", "")
    return Row(label, value, f"{ratio:.2f}x", f">= {target:.1f}x", verdict(ratio >= target))


def bench_peers(kind: str, server: Any, bucket: str, work: Path, files: int, sizes: list[int], repeat: int) -> None:
    """One backend: small directory put/get, large put/get per size, metadata (S3)."""
    small = work / "small"
    if not small.exists():
        make_small_tree(small, files, 4096)
    names = {
        "s3": ["scalable native", "scalable fsspec", "obstore bare", "obstore hashed", "s5cmd", "s3fs"],
        "azure": ["scalable native", "scalable fsspec", "obstore bare"],
        "gcs": ["scalable fsspec"],
    }[kind]
    where = _where(kind, server, bucket)
    procs = [PeerProcess(n, where, work) for n in names]
    by = {p.name: p for p in procs}
    native = by.get("scalable native") or by["scalable fsspec"]
    rows: list[Row] = []

    def fastest(*peers: str) -> tuple[str, float | None]:
        found = [(by[n].median(op_now), n) for n in peers if n in by and by[n].median(op_now) is not None]
        if not found:
            return "", None
        t, n = min(found)
        return n, t

    try:
        for op_now in ("put_small", "get_small"):
            interleave_peers(procs, op_now, "small", repeat)
            verb = "put" if op_now == "put_small" else "get (verified)"
            for p in procs:
                if op_now not in p.ops:
                    continue
                if p is native and kind == "s3":
                    peers = ("obstore bare", "s5cmd") if op_now == "put_small" else ("s5cmd",)
                    for peer in peers:
                        rows.append(
                            _ratio_row(
                                f"{files} x 4 KiB {verb}: {p.name} vs {peer}",
                                p.median(op_now),
                                by[peer].median(op_now),
                                1.0,
                                "s",
                                0,
                            )
                        )
                else:
                    ref = by.get("s5cmd") or by.get("obstore bare")
                    rows.append(
                        _ratio_row(
                            f"{files} x 4 KiB {verb}: {p.name}"
                            + (f" (ratio vs {ref.name})" if ref is not None and ref is not p else ""),
                            p.median(op_now),
                            ref.median(op_now) if ref is not None and ref is not p else None,
                            None,
                            "s",
                            0,
                        )
                    )
        for size in sizes:
            digest = make_big_file(work / "big.bin", size)
            read_through(work / "big.bin")
            label = f"big{size // MiB}"
            for op_now in ("put_big", "get_big"):
                interleave_peers(procs, op_now, label, repeat)
                verb = "put with SHA-256" if op_now == "put_big" else "get (verified)"
                peer_name, peer_time = fastest("obstore bare", "s5cmd")
                for p in procs:
                    if op_now not in p.ops:
                        continue
                    ours = p.median(op_now)
                    is_target = p is native and kind == "s3"
                    rows.append(
                        _ratio_row(
                            f"{size // MiB} MiB {verb if p.name.startswith('scalable') else op_now[:3]}: {p.name}"
                            + (f" (vs {peer_name})" if peer_name and p.name != peer_name else ""),
                            ours,
                            peer_time if p.name != peer_name else None,
                            0.9 if is_target else None,
                            "MB/s",
                            size,
                        )
                    )
            assert digest.startswith("sha256:")
        if kind == "s3":
            native.run("seed_meta", "meta", 0)
            by["scalable fsspec"].run("seed_meta", "meta", 0)
            for op_now in ("info", "exists"):
                interleave_peers([native, by["s3fs"], by["scalable fsspec"]], op_now, "meta", repeat)
                for p in (native, by["scalable fsspec"], by["s3fs"]):
                    rows.append(
                        _ratio_row(
                            f"{op_now} x200: {p.name}",
                            p.median(op_now),
                            by["s3fs"].median(op_now) if p.name != "s3fs" else None,
                            1.0 if p is native else None,
                            "s",
                            0,
                        )
                    )
    finally:
        for p in procs:
            for op, err in p.errors.items():
                print(f"  !! {p.name} {op}: {err}")
            p.close()
    print_table(
        f"{kind}: native transport and peers (median of {repeat}; ratio = peer time / time, > 1 is faster)",
        ("median", "ratio", "target"),
        rows,
    )


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run in about a minute")
    parser.add_argument("--repeat", type=int, default=None, help="rounds per scenario (default 5, quick 2)")
    parser.add_argument("--only", default="small,large,meta,peers", help="comma-separated scenarios to run")
    parser.add_argument("--backends", default="s3,azure,gcs", help="backends of the peers scenario")
    parser.add_argument("--sizes", default=None, help="large-file sizes of the peers scenario, MiB (256,1024)")
    args = parser.parse_args()
    repeat = args.repeat or (2 if args.quick else 5)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    files, big, keys, probe = (300, 64 * MiB, 1000, 200) if args.quick else (2000, 512 * MiB, 10_000, 1000)

    work = Path(tempfile.mkdtemp(prefix="bench-object-stores-"))
    server = SeaweedFS()
    began = time.perf_counter()
    try:
        server.start()
        bucket = server.make_bucket(f"bench-{uuid.uuid4().hex[:8]}")
        print(
            f"# bench_object_stores: SeaweedFS at {server.endpoint_url} (loopback), {os.cpu_count()} CPUs, "
            f"SCALABLE_DIGEST_CACHE={os.environ['SCALABLE_DIGEST_CACHE']}, {repeat} rounds per scenario"
        )
        print("# contenders interleaved in each round (order rotated), measured side by side in one state")
        if "small" in only:
            bench_small(server, bucket, work, files, repeat)
        if "large" in only:
            bench_large(server, bucket, work, big, repeat)
        if "meta" in only:
            bench_meta(server, bucket, keys, probe, repeat)
        if "peers" in only:
            sizes = [int(x) * MiB for x in (args.sizes or ("64" if args.quick else "256,1024")).split(",")]
            for kind in [b.strip() for b in args.backends.split(",") if b.strip()]:
                if kind == "s3":
                    bench_peers("s3", server, bucket, work, files, sizes, repeat)
                    continue
                from tests.servers.azurite import Azurite
                from tests.servers.fakegcs import FakeGcsServer

                other = Azurite() if kind == "azure" else FakeGcsServer()
                try:
                    other.start()
                    other_bucket = other.make_bucket(f"bench-{uuid.uuid4().hex[:8]}")
                    bench_peers(kind, other, other_bucket, work, files, sizes[:1], repeat)
                finally:
                    other.close()  # by the pid it started
    finally:
        server.close()  # SIGTERM then SIGKILL, by the pid it started
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n(total {time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
