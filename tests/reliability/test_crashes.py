"""Crashes: a process killed (SIGKILL) at a random moment of a put, a cached call or an append.

Each trial starts a child that does the work, waits a random delay spread over the work's
measured duration (some kills land after it finished: the commit and clean-up windows
count too), kills it, and then checks through fresh objects what a user would see:

- stores (local and S3; a 3 MiB file, a folder of 500 files, a 64 MiB file; the fast form
  uses 100 files and 24 MiB): the key shows the old artifact, or the new one, or nothing if
  there was none before; every committed artifact verifies; the next put succeeds and reads
  back;
- the cache (local tier and remote tier): each tier holds the whole entry or nothing, and
  the next call returns the right value without an exception;
- JSONL streams: every line is whole JSON except a torn last line, and the next writer's
  event starts on a line of its own.

The random seed is printed in every failure message (``SCALABLE_STRESS_SEED`` replays it).
"""

from __future__ import annotations

import os
import pickle
import random
import shutil
import signal
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scalable import build_artifact_store
from scalable.artifacts.digests import DigestCache
from scalable.cache import configure_cache, reset_cache_config
from scalable.cache.entries import payload_of
from scalable.cache.local import LocalTier
from scalable.cache.remote import entry_key
from scalable.telemetry import JsonlStream, read_events
from scalable.telemetry.events import Event
from tests.reliability import _workers
from tests.reliability.conftest import Tally, trials

SEED = int(os.environ.get("SCALABLE_STRESS_SEED") or time.time_ns() % 2**31)
KEY = "runs/result"
BYSTANDER = "other/bystander.txt"

#: (fast, stress) kills per backend and kind of put.
COUNTS = {"file": (5, 100), "dir": (2, 100), "big": (2, 100)}


def _rng(name: str) -> random.Random:
    return random.Random(f"{SEED}:{name}")


def _store_location(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    if backend == "local":
        return str(tmp_path / "store"), {}
    server = request.getfixturevalue("s3_server")
    transport = {"transport": "fsspec"} if backend == "s3-fsspec" else {}
    return server.url(server.shared_bucket(), f"crash-{time.time_ns()}"), {**server.storage_options, **transport}


def run_and_kill(target: Callable[..., None], args: tuple[Any, ...], delay: float | None) -> tuple[str, float]:
    """Start ``target`` in a child, wait ``delay`` s after it says "go", SIGKILL it.

    Returns the outcome, ``"killed"`` (the kill landed while it worked), ``"finished"`` (it
    was done before) or ``"failed"`` (it died of an exception of its own), and the seconds
    from "go" to its end. ``delay=None`` lets it finish: that measures how long the work takes.
    """
    ctx = _workers.context()
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=target, args=(child, *args))
    proc.start()
    child.close()
    try:
        if not parent.poll(60):
            raise RuntimeError("the child did not start within 60 s")
        parent.recv()
        began = time.perf_counter()
        if delay is None:
            proc.join(600)
        else:
            time.sleep(delay)
            proc.kill()  # SIGKILL; a child that has just exited is fine (no ProcessLookupError)
            proc.join(60)
        elapsed = time.perf_counter() - began
    finally:
        if proc.exitcode is None:
            proc.kill()
            proc.join()
        parent.close()
    if proc.exitcode == -signal.SIGKILL:
        return "killed", elapsed
    return ("finished" if proc.exitcode == 0 else "failed"), elapsed


def _mutate(src: Path, kind: str, token: bytes) -> None:
    """Give the source new content for this trial (a new version, with a new digest)."""
    target = src / "f000.txt" if kind == "dir" else src
    with open(target, "r+b") as f:
        f.write(token.ljust(32, b"."))


def _make_source(tmp_path: Path, kind: str) -> Path:
    if kind == "dir":
        src = tmp_path / "src-dir"
        for i in range(trials(100, 500)):
            sub = src / f"d{i % 10}" if i else src
            sub.mkdir(parents=True, exist_ok=True)
            (sub / f"f{i:03d}.txt").write_bytes(os.urandom(64 + (i * 37) % 4000))
        return src
    src = tmp_path / "src.bin"
    # The fast form's "big" file is still past the S3 store's 16 MiB multipart threshold.
    size = trials(24, 64) * 1024 * 1024 if kind == "big" else 3 * 1024 * 1024
    with open(src, "wb") as f:
        for _ in range(size // (1024 * 1024)):
            f.write(os.urandom(1024 * 1024))
    return src


@pytest.mark.parametrize("kind", ["file", "dir", "big"])
@pytest.mark.parametrize("backend", ["local", "s3", "s3-fsspec"])
def test_a_killed_put_leaves_the_old_artifact_or_the_new_one(
    request: pytest.FixtureRequest, backend: str, kind: str, tmp_path: Path, tally: Tally
) -> None:
    uri, options = _store_location(request, backend, tmp_path)
    rng = _rng(f"put-{backend}-{kind}")
    src = _make_source(tmp_path, kind)
    setup = build_artifact_store(uri, **options)
    setup.put_bytes(b"committed before any crash\n", BYSTANDER)
    setup.put(src, KEY)
    _mutate(src, kind, b"calibration")
    outcome, duration = run_and_kill(_workers.put_child, (uri, options, str(src), KEY), None)
    assert outcome == "finished", "a put in a child process failed"
    old: str | None = setup.info(KEY).digest
    scratch = tmp_path / "readback"
    problems: list[str] = []
    lost = 0
    outcomes = {"killed": 0, "finished": 0, "failed": 0}
    n = trials(*COUNTS[kind])
    for trial in range(n):
        _mutate(src, kind, f"trial {trial} seed {SEED}".encode())
        new = DigestCache().path_digest(src)
        if rng.random() < 0.2:  # sometimes there is nothing at the key before the put
            build_artifact_store(uri, **options).delete(KEY)
            old = None
        delay = rng.uniform(0, duration * 1.3)
        outcome, _ = run_and_kill(_workers.put_child, (uri, options, str(src), KEY), delay)
        outcomes[outcome] += 1
        where = f"trial {trial} ({outcome} after {delay:.3f} s, seed {SEED})"
        if outcome == "failed":
            problems.append(f"{where}: the child's put raised instead of finishing")

        try:
            old, found, damaged = _check_store(uri, options, where, old, new, src, scratch)
        except Exception:
            found, damaged = [f"{where}: checking the store raised:\n{traceback.format_exc()}"], 0
            old = None
        problems.extend(found)
        lost += damaged
    tally.add(f"crash: {backend} store, {kind}", trials=n, failures=len(problems), lost=lost)
    print(f"crash {backend}/{kind}: {outcomes}, one put takes {duration:.3f} s, seed {SEED}")
    assert not problems, "\n".join(problems)


def _check_store(
    uri: str, options: dict[str, Any], where: str, old: str | None, new: str, src: Path, scratch: Path
) -> tuple[str | None, list[str], int]:
    """Check a store after a kill; return the digest now committed, the problems, and how many were lost."""
    problems: list[str] = []
    lost = 0
    store = build_artifact_store(uri, **options)  # a fresh object: nothing remembered from before
    listed = store.list_artifacts()
    if not set(listed) <= {KEY, BYSTANDER}:
        problems.append(f"{where}: the store lists keys nobody committed: {listed}")
    if store.exists(KEY):
        digest = store.info(KEY).digest
        if digest not in (old, new):
            problems.append(f"{where}: {KEY} holds {digest}, neither the old {old} nor the new {new}")
            lost += 1
        try:
            store.verify(KEY)
        except Exception as exc:
            problems.append(f"{where}: the committed {KEY} does not verify: {exc}")
            lost += 1
    elif old is not None:
        problems.append(f"{where}: {KEY} vanished; the old artifact {old} should still be there")
        lost += 1
    try:
        if store.get_bytes(BYSTANDER) != b"committed before any crash\n":
            raise AssertionError("other bytes")
    except Exception as exc:
        problems.append(f"{where}: the bystander artifact is damaged: {exc!r}")
        lost += 1

    try:  # the next put succeeds and reads back
        ref = store.put(src, KEY)
        if ref.digest != new:
            raise AssertionError(f"put returned digest {ref.digest}, expected {new}")
        shutil.rmtree(scratch, ignore_errors=True)
        got = store.get(KEY, scratch, overwrite=True)  # a file or a folder from the last trial
        if DigestCache().path_digest(got) != new:
            raise AssertionError("the bytes read back differ from the source")
        old = new
    except Exception as exc:
        problems.append(f"{where}: the next put or its read-back failed: {exc!r}")
        old = None if not store.exists(KEY) else store.info(KEY).digest
    return old, problems, lost


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_a_killed_cached_call_leaves_whole_entries_or_none(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path, tally: Tally
) -> None:
    if backend == "local":
        remote, options = str(tmp_path / "remote"), {}
    else:
        remote, options = _store_location(request, backend, tmp_path)
    local_dir = tmp_path / "cache"
    size = 4 * 1024 * 1024
    rng = _rng(f"cache-{backend}")
    configure_cache(local_dir=local_dir, remote=remote, remote_options=options, remote_backoff=0)
    try:
        outcome, duration = run_and_kill(_workers.cache_child, (str(local_dir), remote, options, -1, size), None)
        assert outcome == "finished", "a cached call in a child process failed"
        problems: list[str] = []
        lost = 0
        outcomes = {"killed": 0, "finished": 0, "failed": 0}
        n = trials(8, 100)
        for trial in range(n):
            arg = rng.randrange(max(2, trial))  # sometimes a key computed before, mostly a new one
            delay = rng.uniform(0, duration * 1.5)
            outcome, _ = run_and_kill(_workers.cache_child, (str(local_dir), remote, options, arg, size), delay)
            outcomes[outcome] += 1
            where = f"trial {trial} (n={arg}, {outcome} after {delay:.3f} s, seed {SEED})"
            if outcome == "failed":
                problems.append(f"{where}: the child's call raised")
            expected = _workers.crash_value.uncached(arg, size)
            for tier, data in _tier_entries(local_dir, remote, options, _workers.crash_value.cache_key(arg, size)):
                if data is None:
                    continue
                try:
                    value = pickle.loads(payload_of(data))
                except Exception as exc:
                    problems.append(f"{where}: the {tier} tier holds a damaged entry: {exc!r}")
                    lost += 1
                    continue
                if value != expected:
                    problems.append(f"{where}: the {tier} tier holds a wrong value")
                    lost += 1
            try:
                if _workers.crash_value(arg, size) != expected:
                    problems.append(f"{where}: the next call returned a wrong value")
            except Exception as exc:
                problems.append(f"{where}: the next call raised {exc!r}")
    finally:
        reset_cache_config()
    tally.add(f"crash: cache, {backend} remote", trials=n, failures=len(problems), lost=lost)
    print(f"crash cache/{backend}: {outcomes}, one call takes {duration:.3f} s, seed {SEED}")
    assert not problems, "\n".join(problems)


def _tier_entries(local_dir: Path, remote: str, options: dict[str, Any], key: str) -> list[tuple[str, bytes | None]]:
    """What each tier holds for ``key`` right now, read through fresh objects (None: nothing)."""
    tier = LocalTier(local_dir, size_limit=2**40)
    try:
        local = tier.get(key)
    finally:
        tier.close()
    store = build_artifact_store(remote, **options)
    remote_data = store.get_bytes(entry_key(key)) if store.exists(entry_key(key)) else None
    return [("local", local), ("remote", remote_data)]


def test_a_killed_jsonl_writer_never_leaves_a_torn_line_inside_a_stream(tmp_path: Path, tally: Tally) -> None:
    rng = _rng("jsonl")
    problems: list[str] = []
    n = trials(10, 100)
    torn = events = 0
    for block in range(0, n, 10):  # ten kills per stream, so a stream stays small enough to re-read
        path = tmp_path / f"run-{block}" / "tasks.jsonl"
        torn_lines: set[int] = set()  # line numbers (from 1) of torn tails that later writers closed
        kills = range(block, min(block + 10, n))
        for trial in kills:
            delay = rng.uniform(0, 0.15)
            outcome, _ = run_and_kill(_workers.stream_child, (str(path), trial, rng.randrange(2**31)), delay)
            where = f"trial {trial} ({outcome} after {delay:.3f} s, seed {SEED})"
            data = path.read_bytes() if path.exists() else b""  # killed before its first write: no file yet
            lines = data.split(b"\n")
            tail = lines.pop()  # b"" when the file ends with a newline, else the torn last line
            if tail:
                torn_lines.add(len(lines) + 1)
            for number, line in enumerate(lines, start=1):
                if number not in torn_lines and not _is_event(line):
                    problems.append(f"{where}: line {number} is not whole JSON: {line[:80]!r}...")
            marker = Event(event="test.marker", run_id=f"trial-{trial}")
            with JsonlStream(path) as stream:
                stream.write(marker)
            last = path.read_bytes().split(b"\n")[-2]
            if not _is_event(last) or Event.model_validate_json(last).run_id != marker.run_id:
                problems.append(f"{where}: the next writer's event did not land whole on its own line: {last[:80]!r}")
        log = read_events(path, warn=False)
        if log.skipped != len(torn_lines):
            problems.append(f"{path}: read_events skipped {log.skipped} lines, but {len(torn_lines)} were torn")
        markers = [e for e in log.events if e.event == "test.marker"]
        if len(markers) != len(kills):
            problems.append(f"{path}: read_events found {len(markers)} of the {len(kills)} markers written")
        torn += len(torn_lines)
        events += len(log.events)
    tally.add("crash: jsonl stream", trials=n, failures=len(problems))
    print(f"jsonl: {torn} torn tails in {n} kills, {events} events, seed {SEED}")
    assert not problems, "\n".join(problems)


def _is_event(line: bytes) -> bool:
    try:
        Event.model_validate_json(line)
    except ValueError:
        return False
    return True
