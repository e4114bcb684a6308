"""Child-process entry points of the crash and concurrency tests, and how to start them cheaply.

Children come from a ``forkserver`` that has imported scalable, s3fs and this module once:
each child is a fork of that clean server (no threads, no open stores), so starting one
costs milliseconds instead of a fresh interpreter's second, and a crash test can afford
hundreds of kills. Everything a child needs (store URI, storage options, paths) travels
as arguments, because the server's environment was fixed when it started.

A child that does something the parent times announces it on its pipe (``"go"``) just
before it starts, so the parent's random delay is measured from the start of the work.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import random
import time
import traceback
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

import s3fs  # noqa: F401 - imported here so that the forkserver preloads it

from scalable import build_artifact_store
from scalable.cache import cacheable, configure_cache
from scalable.errors import ArtifactChangingError, ArtifactNotFoundError
from scalable.telemetry import JsonlStream
from scalable.telemetry.events import Event

_CONTEXT: BaseContext | None = None


def context() -> BaseContext:
    """The forkserver context children start from (created on first use)."""
    global _CONTEXT
    if _CONTEXT is None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        _CONTEXT = ctx
    return _CONTEXT


# ---------------------------------------------------------------------- crashes: stores
def put_child(conn: Connection, uri: str, options: dict[str, Any], src: str, key: str) -> None:
    """Put ``src`` at ``key`` of the store at ``uri`` (the parent kills this at a random moment)."""
    store = build_artifact_store(uri, **options)
    conn.send("go")
    ref = store.put(src, key)
    conn.send(("done", ref.digest))


# ---------------------------------------------------------------------- crashes: cache
def crash_value_bytes(n: int, size: int) -> bytes:
    """The value :func:`crash_value` returns for ``n``: ``size`` bytes that depend on ``n``."""
    return random.Random(n).randbytes(size)


@cacheable
def crash_value(n: int, size: int) -> dict[str, Any]:
    """A cached result big enough that storing it takes a while (a kill lands inside the write)."""
    data = crash_value_bytes(n, size)
    return {"n": n, "sha": hashlib.sha256(data).hexdigest(), "data": data}


def cache_child(
    conn: Connection, local_dir: str, remote: str, remote_options: dict[str, Any], n: int, size: int
) -> None:
    """Call :func:`crash_value` with both tiers configured (the parent kills this at a random moment)."""
    configure_cache(local_dir=local_dir, remote=remote, remote_options=remote_options, remote_backoff=0)
    conn.send("go")
    crash_value(n, size)
    conn.send("done")


# ---------------------------------------------------------------------- streams
class Tick(Event):
    """What the stream tests append: who wrote it, its number, and padding of a chosen size."""

    writer: int
    seq: int
    pad: str = ""


def stream_child(conn: Connection, path: str, writer: int, seed: int) -> None:
    """Append ticks (some of them large, so a kill can land inside one write) until killed."""
    rng = random.Random(seed)
    stream = JsonlStream(path)
    conn.send("go")
    seq = 0
    while True:
        size = rng.choice((10, 100, 1000, 10, 100, 1000, 64 * 1024, 256 * 1024))
        stream.write(Tick(event="test.tick", writer=writer, seq=seq, pad="x" * size))
        seq += 1


def append_worker(path: str, writer: int, count: int, start_at: float, seed: int) -> None:
    """Append ``count`` ticks of varied sizes to ``path`` (one of several writers at once)."""
    rng = random.Random(seed)
    stream = JsonlStream(path)
    _wait_until(start_at)
    for seq in range(count):
        size = rng.choice((0, 50, 500, 5000, 20000))
        stream.write(Tick(event="test.tick", writer=writer, seq=seq, pad="y" * size))
    stream.close()


# ---------------------------------------------------------------------- concurrency: stores
def make_payload(key: str, writer: int, seq: int, rng: random.Random) -> bytes:
    """Bytes that name their key and writer on the first line, so a reader can tell whose they are."""
    head = json.dumps({"key": key, "writer": writer, "seq": seq}).encode()
    return head + b"\n" + rng.randbytes(rng.choice((0, 100, 4096, 65536, 300_000)))


def check_payload(key: str, data: bytes) -> str | None:
    """Why ``data`` cannot be a version of ``key`` that some writer wrote, or None if it can."""
    head, sep, _ = data.partition(b"\n")
    try:
        doc = json.loads(head)
    except ValueError:
        return f"bytes of {key!r} do not start with a writer's header: {data[:60]!r}"
    if not sep or doc.get("key") != key:
        return f"bytes of {key!r} belong to {doc.get('key')!r}"
    return None


def mixed_worker(
    uri: str, options: dict[str, Any], writer: int, ops: int, keys: list[str], dir_keys: list[str],
    workdir: str, start_at: float, seed: int, result: str,
) -> None:  # fmt: skip
    """Put, get, overwrite and delete ``ops`` times at random over shared keys; write what happened as JSON.

    Every read is verified by the store and its bytes must name their key. A read or delete of
    a key that is not there (deleted concurrently) is legitimate, and so is a read that lost to
    overwrites ten times (``ArtifactChangingError``: no bytes returned); any other exception is a
    failure. ``written`` lists each committed digest per key, so the parent can check the final
    state.
    """
    rng = random.Random(seed)
    store = build_artifact_store(uri, **options)
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[str]] = {}
    read: dict[str, list[str]] = {}
    last: dict[str, bytes] = {}
    counts = {"put": 0, "get": 0, "delete": 0, "absent": 0, "changing": 0}
    failures: list[str] = []
    _wait_until(start_at)
    for seq in range(ops):
        key = rng.choice(keys + dir_keys)
        roll = rng.random()
        try:
            if key in dir_keys:
                if roll < 0.5:
                    src = work / f"dir-{seq}"
                    for i in range(3):
                        (src / f"sub{i % 2}").mkdir(parents=True, exist_ok=True)
                        (src / f"sub{i % 2}" / f"f{i}.bin").write_bytes(make_payload(key, writer, seq, rng))
                    ref = store.put(src, key, pack=rng.random() < 0.5)
                    written.setdefault(key, []).append(ref.digest)
                    counts["put"] += 1
                elif roll < 0.85:
                    dest = work / f"got-{seq}"
                    store.get(key, dest)
                    counts["get"] += 1
                    for f in sorted(p for p in dest.rglob("*") if p.is_file()):
                        problem = check_payload(key, f.read_bytes())
                        if problem:
                            failures.append(problem)
                else:
                    store.delete(key)
                    counts["delete"] += 1
            elif roll < 0.35:
                data = make_payload(key, writer, seq, rng)
                ref = store.put_bytes(data, key, metadata={"writer": writer, "seq": seq})
                written.setdefault(key, []).append(ref.digest)
                last[key] = data
                counts["put"] += 1
            elif roll < 0.4 and key in last:
                # The same bytes again with new metadata: the store re-commits the object it has.
                ref = store.put_bytes(last[key], key, metadata={"writer": writer, "seq": seq})
                written.setdefault(key, []).append(ref.digest)
                counts["put"] += 1
            elif roll < 0.45:
                src = work / f"file-{seq}"
                src.write_bytes(make_payload(key, writer, seq, rng))
                ref = store.put(src, key)
                written.setdefault(key, []).append(ref.digest)
                counts["put"] += 1
            elif roll < 0.7:
                data = store.get_bytes(key)
                read.setdefault(key, []).append(hashlib.sha256(data).hexdigest())
                counts["get"] += 1
                problem = check_payload(key, data)
                if problem:
                    failures.append(problem)
            elif roll < 0.85:
                dest = work / f"got-{seq}.bin"
                store.get(key, dest)
                data = dest.read_bytes()
                read.setdefault(key, []).append(hashlib.sha256(data).hexdigest())
                counts["get"] += 1
                problem = check_payload(key, data)
                if problem:
                    failures.append(problem)
            else:
                store.delete(key)
                counts["delete"] += 1
        except ArtifactNotFoundError:
            counts["absent"] += 1
        except ArtifactChangingError:  # overwritten ten times while read: the documented answer, no bytes
            counts["changing"] += 1
        except Exception as exc:
            failures.append(f"op {seq} on {key!r}: {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}")
    doc = {"written": written, "read": read, "counts": counts, "failures": failures}
    Path(result).write_text(json.dumps(doc))


def _wait_until(start_at: float) -> None:
    delay = start_at - time.time()
    if delay > 0:
        time.sleep(delay)


# ---------------------------------------------------------------------- object layer: versions, gc, migrate
def commit_worker(uri: str, options: dict[str, Any], writer: int, count: int, key: str, start_at: float) -> None:
    """Commit ``count`` distinct blobs to one shared ``key``; print each version number the store gave."""
    store = build_artifact_store(uri, **options)
    time.sleep(max(0.0, start_at - time.time()))
    for seq in range(count):
        ref = store.put_bytes(f"writer {writer} commit {seq}".encode(), key)
        print(json.dumps({"version": ref.version, "digest": ref.digest}), flush=True)


def churn_worker(
    uri: str, options: dict[str, Any], writer: int, seconds: float, work: str, result: str, seed: int
) -> None:
    """Put, re-put (dedup) and read shared and own keys for ``seconds``; record any bad read."""
    rng = random.Random(seed)
    store = build_artifact_store(uri, **options)
    failures: list[str] = []
    ops = 0
    Path(work).mkdir(parents=True, exist_ok=True)
    deadline = time.time() + seconds
    while time.time() < deadline:
        key = f"churn/k{rng.randrange(6)}"
        content = f"content {rng.randrange(12)}".encode() * 64  # few contents: most puts reuse an object
        try:
            if rng.random() < 0.6:
                store.put_bytes(content, key)
            elif store.exists(key):
                data = store.get_bytes(key)
                if not data.startswith(b"content "):
                    failures.append(f"{key}: read bytes no writer put")
        except ArtifactNotFoundError:
            pass
        except Exception as exc:
            failures.append(f"{key}: {type(exc).__name__}: {exc}"[:300])
        ops += 1
    Path(result).write_text(json.dumps({"failures": failures, "ops": ops}))


def gc_child(conn: Connection, uri: str, options: dict[str, Any], grace: float) -> None:
    """Run gc (the parent kills this at a random moment)."""
    store = build_artifact_store(uri, **options)
    conn.send("go")
    store.gc(grace=grace)
    conn.send(("done", ""))


def migrate_child(conn: Connection, uri: str, options: dict[str, Any]) -> None:
    """Migrate a store of the old layout (the parent kills this at a random moment)."""
    store = build_artifact_store(uri, **options)
    conn.send("go")
    store.migrate()
    conn.send(("done", ""))


def restore_delete_child(conn: Connection, uri: str, options: dict[str, Any], key: str, what: str) -> None:
    """Restore version 1 of ``key``, or delete it (the parent kills this at a random moment)."""
    store = build_artifact_store(uri, **options)
    conn.send("go")
    if what == "restore":
        store.restore(key, version=1)
    else:
        store.delete(key)
    conn.send(("done", ""))


def packed_put_child(conn: Connection, uri: str, options: dict[str, Any], src: str, key: str) -> None:
    """Put the directory ``src`` packed at ``key`` (the parent kills this at a random moment)."""
    store = build_artifact_store(uri, **options)
    conn.send("go")
    ref = store.put(src, key, pack=True)
    conn.send(("done", ref.digest))


# ---------------------------------------------------------------------- object layer: streaming readers
def version_bytes(writer: int, seq: int) -> bytes:
    """The bytes writer ``writer`` commits in its ``seq``-th overwrite: a header naming them, then 1-3 MiB."""
    rng = random.Random(f"overwrite:{writer}:{seq}")
    head = json.dumps({"writer": writer, "seq": seq}).encode()
    return head + b"\n" + rng.randbytes(rng.randrange(1, 3 * 1024 * 1024))


def overwrite_worker(
    uri: str, options: dict[str, Any], writer: int, seconds: float, key: str, start_at: float, result: str
) -> None:
    """Overwrite ``key`` with :func:`version_bytes` for ``seconds``, keeping 2 versions (gc reclaims the rest)."""
    store = build_artifact_store(uri, keep_versions=2, **options)
    _wait_until(start_at)
    failures: list[str] = []
    seq = 0
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            store.put_bytes(version_bytes(writer, seq), key)
        except Exception as exc:
            failures.append(f"writer {writer} put {seq}: {type(exc).__name__}: {exc}"[:300])
        seq += 1
    Path(result).write_text(json.dumps({"failures": failures, "ops": seq}))


def stream_reader_worker(
    uri: str, options: dict[str, Any], reader: int, seconds: float, key: str, start_at: float, result: str
) -> None:
    """Stream ``key`` with ``open()`` in small reads for ``seconds``; each read must be one whole version."""
    rng = random.Random(f"reader:{reader}")
    store = build_artifact_store(uri, **options)
    _wait_until(start_at)
    failures: list[str] = []
    reads = overlapped = 0
    seen: set[tuple[int, int]] = set()
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            before = store.info(key).version
            chunks = []
            with store.open(key) as f:
                while chunk := f.read(rng.choice((4096, 65536, 262144))):
                    chunks.append(chunk)
                    time.sleep(0.002)  # a slow consumer: overwrites land while it streams
            data = b"".join(chunks)
            after = store.info(key).version
            head, _, _ = data.partition(b"\n")
            doc = json.loads(head)
            if data != version_bytes(doc["writer"], doc["seq"]):
                failures.append(f"reader {reader}: bytes of no one version ({len(data)} bytes, head {head[:60]!r})")
            seen.add((doc["writer"], doc["seq"]))
            overlapped += after != before
        except Exception as exc:
            failures.append(f"reader {reader}: {type(exc).__name__}: {exc}"[:300])
        reads += 1
    Path(result).write_text(
        json.dumps({"failures": failures, "reads": reads, "overlapped": overlapped, "versions": len(seen)})
    )
