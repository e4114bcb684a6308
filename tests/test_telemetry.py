"""Telemetry: typed events, whole lines under concurrency and SIGKILL, torn-line reporting, redaction."""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import pickle
import random
import signal
import threading
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from scalable.telemetry import (
    SCHEMA_VERSION,
    ArtifactRecorded,
    CacheEvent,
    Event,
    JsonlStream,
    RunFinished,
    RunStarted,
    TaskFailed,
    TaskFinished,
    TaskStarted,
    TaskSubmitted,
    TelemetryWarning,
    iter_events,
    read_events,
    redact,
)

DIGEST = "sha256:" + "ab" * 32
FORK = multiprocessing.get_context("fork")


def artifact(**fields: object) -> ArtifactRecorded:
    base: dict[str, object] = {
        "run_id": "run-1",
        "task": "t-1",
        "name": "out.csv",
        "uri": "s3://bucket/runs/run-1/out.csv",
        "key": "runs/run-1/out.csv",
        "artifact_kind": "file",
        "digest": DIGEST,
        "size_bytes": 12,
    }
    return ArtifactRecorded(**{**base, **fields})


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")


# --- events ----------------------------------------------------------------------------------

EVERY_KIND = [
    artifact(metadata={"rows": 3}),
    TaskSubmitted(run_id="r", task="t", function="mod.f"),
    TaskStarted(run_id="r", task="t", worker="tcp://127.0.0.1:4000"),
    TaskFinished(run_id="r", task="t", worker="w", duration_s=1.5, cache="hit"),
    TaskFailed(run_id="r", task="t", duration_s=0.1, error_type="ValueError", error="bad input"),
    CacheEvent(event="cache.miss", function="mod.f", cache_key="k" * 64, task="t"),
    CacheEvent(event="cache.error", function="mod.f", cache_key="k", tier="remote", error="unreachable"),
    RunStarted(run_id="r", target="local", user="me", scalable_version="0.1.0", git_commit=None),
    RunFinished(run_id="r", status="completed", duration_s=12.0),
]


def test_every_event_kind_round_trips_typed(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with JsonlStream(path) as stream:
        for event in EVERY_KIND:
            stream.write(event)
    log = read_events(path)
    assert log.skipped == 0
    assert log.events == EVERY_KIND
    assert [type(e) for e in log.events] == [type(e) for e in EVERY_KIND]
    first = json.loads(lines_of(path)[0])
    assert first["schema_version"] == SCHEMA_VERSION == 1
    assert first["event"] == "artifact.recorded"
    assert first["timestamp"].endswith("Z")
    assert {"run_id", "task", "name", "uri", "kind", "digest", "size_bytes", "timestamp", "host"} <= set(first)


def test_an_artifact_event_from_a_ref_carries_what_the_ref_says() -> None:
    from scalable.artifacts.ref import ArtifactKind, ArtifactRef

    ref = ArtifactRef(
        uri="memory://s/k", key="k", kind=ArtifactKind.DIR, digest=DIGEST, size_bytes=7, metadata={"a": 1}
    )
    event = ArtifactRecorded.from_ref(ref, name="k", run_id="r", task="t")
    assert (event.uri, event.key, event.artifact_kind, event.digest, event.size_bytes) == (
        "memory://s/k",
        "k",
        "dir",
        DIGEST,
        7,
    )
    assert (event.kind, event.metadata, event.run_id, event.task) == ("result", {"a": 1}, "r", "t")


def test_timestamps_are_utc() -> None:
    naive = TaskStarted(task="t", timestamp=datetime(2026, 1, 1, 12, 0))
    assert naive.timestamp.tzinfo == timezone.utc
    assert TaskStarted(task="t").timestamp.tzinfo == timezone.utc


def test_unknown_kinds_and_extra_fields_survive_a_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    newer = {"schema_version": 2, "event": "gpu.sampled", "timestamp": "2026-01-01T00:00:00Z", "host": "h", "pid": 1}
    path.write_text(json.dumps({**newer, "watts": 250}) + "\n")
    with JsonlStream(path) as stream:
        stream.write(TaskStarted(task="t", attempt=2))
    events = read_events(path).events
    assert type(events[0]) is Event and events[0].event == "gpu.sampled" and events[0].model_extra == {"watts": 250}
    assert isinstance(events[1], TaskStarted) and events[1].model_extra == {"attempt": 2}


def test_invalid_events_are_refused_when_made() -> None:
    with pytest.raises(ValueError):
        TaskFinished(task="t", duration_s=-1)
    with pytest.raises(ValueError):
        CacheEvent(event="cache.maybe", function="f", cache_key="k")


# --- redaction -------------------------------------------------------------------------------

SECRETS = ["hunter2", "SIGSIGSIG", "TOKTOKTOK", "KEYKEYKEY", "AZSIGAZSIG", "GOOGSIG"]


def test_secrets_in_uris_never_reach_the_file(tmp_path: Path) -> None:
    path = tmp_path / "artifacts.jsonl"
    with JsonlStream(path) as stream:
        stream.write(
            artifact(
                uri="s3://alice:hunter2@bucket/out.csv?X-Amz-Signature=SIGSIGSIG&X-Amz-Expires=60",
                metadata={
                    "source": "https://host/data.csv?token=TOKTOKTOK&page=2",
                    "nested": [{"mirror": "https://h/x?api_key=KEYKEYKEY"}],
                    "https://bob:hunter2@h/": "a URI as a key",
                },
            )
        )
        stream.write(
            TaskFailed(
                task="t",
                duration_s=1,
                error_type="OSError",
                error="cannot read https://acct.blob.core.windows.net/c/b?sv=2024&sig=AZSIGAZSIG: 403",
            )
        )
        stream.write(TaskStarted(task="t", note="gs://b/o?X-Goog-Signature=GOOGSIG"))  # an extra field too
    text = path.read_text()
    for secret in SECRETS:
        assert secret not in text
    event = read_events(path).events[0]
    assert event.uri == "s3://***@bucket/out.csv?X-Amz-Signature=***&X-Amz-Expires=60"
    assert event.metadata["source"] == "https://host/data.csv?token=***&page=2"
    assert read_events(path).events[1].error.endswith("/c/b?sv=***&sig=***: 403")  # the rest of the message is kept


def test_uris_without_secrets_are_written_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "tasks.jsonl"
    with JsonlStream(path) as stream:
        stream.write(TaskStarted(task="t", worker="tcp://10.0.0.5:40123", note="see s3://b/k and /tmp/x?y"))
    event = read_events(path).events[0]
    assert event.worker == "tcp://10.0.0.5:40123" and event.note == "see s3://b/k and /tmp/x?y"


def test_redact_walks_any_structure() -> None:
    value = {"a": ["s3://u:hunter2@b/k", ("x", "https://h/?sig=SIGSIGSIG")], "n": 1, "https://u:p@h": None}
    assert redact(value) == {"a": ["s3://***@b/k", ("x", "https://h/?sig=***")], "n": 1, "https://***@h": None}


# --- torn lines ------------------------------------------------------------------------------


def test_a_torn_final_line_is_skipped_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "tasks.jsonl"
    with JsonlStream(path) as stream:
        stream.write_many(TaskStarted(task=f"t{i}") for i in range(3))
    with open(path, "ab") as f:
        f.write(b'{"schema_version":1,"event":"task.started","ta')  # a writer died here
    with pytest.warns(
        TelemetryWarning, match=r"tasks\.jsonl: skipped 1 unreadable line\(s\): line 4 \(torn final line"
    ):
        log = read_events(path)
    assert [e.task for e in log.events] == ["t0", "t1", "t2"]
    assert (log.skipped, log.torn_tail, log.problems[0].line) == (1, True, 4)


def test_the_next_writer_starts_on_its_own_line_after_a_torn_one(tmp_path: Path) -> None:
    path = tmp_path / "tasks.jsonl"
    with JsonlStream(path) as stream:
        stream.write(TaskStarted(task="before"))
    with open(path, "ab") as f:
        f.write(b'{"schema_version":1,"event":"task.sta')
    with JsonlStream(path) as stream:
        stream.write(TaskStarted(task="after"))
    assert lines_of(path)[1] == b'{"schema_version":1,"event":"task.sta'
    with pytest.warns(TelemetryWarning, match=r"line 2 \(not a JSON event"):
        log = read_events(path)
    assert [e.task for e in log.events] == ["before", "after"]
    assert (log.skipped, log.torn_tail) == (1, False)


def test_a_stream_left_open_notices_a_torn_line_from_another_writer(tmp_path: Path) -> None:
    path = tmp_path / "tasks.jsonl"
    stream = JsonlStream(path)
    stream.write(TaskStarted(task="one"))
    with open(path, "ab") as f:
        f.write(b'{"torn')
    stream.write(TaskStarted(task="two"))
    stream.close()
    log = read_events(path, warn=False)
    assert [e.task for e in log.events] == ["one", "two"] and log.skipped == 1


def test_a_line_that_is_json_but_not_a_valid_event_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "tasks.jsonl"
    path.write_text('{"event": "task.finished", "task": "t"}\n[1, 2]\n\n')
    seen: list[int] = []
    assert list(iter_events(path, on_skip=lambda skipped: seen.append(skipped.line))) == []
    assert seen == [1, 2]  # the blank line is not an event and not a problem


def test_reading_a_missing_stream_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_events(tmp_path / "none.jsonl")


def _write_big_events_forever(path: str) -> None:
    stream = JsonlStream(path)
    padding = "x" * (256 * 1024)  # many pages per write: a SIGKILL can land in the middle of one
    for i in range(10**9):
        stream.write(TaskStarted(task=f"big-{i}", padding=padding))


def test_a_writer_killed_mid_write_leaves_whole_lines_and_the_next_writer_a_fresh_one(tmp_path: Path) -> None:
    rng = random.Random(6)
    for round_ in range(6):
        path = tmp_path / f"killed-{round_}.jsonl"
        child = FORK.Process(target=_write_big_events_forever, args=(str(path),))
        child.start()
        deadline = time.monotonic() + 10
        while (not path.exists() or path.stat().st_size < 1 << 20) and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.02))
        os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
        child.join()

        lines = lines_of(path)
        for line in lines[:-1]:
            json.loads(line)  # every line but the last is whole
        assert lines[-1] == b"" or lines[-1].startswith(b'{"schema_version":1,"event":"task.started"')

        with JsonlStream(path) as stream:
            stream.write(TaskStarted(task="next"))
        log = read_events(path, warn=False)
        assert log.events[-1].task == "next"
        assert log.skipped == (0 if lines[-1] == b"" else 1) and not log.torn_tail
        assert len(log.events) == len(lines)  # every whole line, plus the next writer's
        path.unlink()


# --- concurrency -----------------------------------------------------------------------------


def _write_numbered(stream: JsonlStream, writer: int, count: int, batch: int = 1) -> None:
    events = (TaskFinished(run_id="r", task=f"{writer}:{i}", duration_s=0.0) for i in range(count))
    if batch == 1:
        for event in events:
            stream.write(event)
    else:
        chunk: list[TaskFinished] = []
        for event in events:
            chunk.append(event)
            if len(chunk) == batch:
                stream.write_many(chunk)
                chunk = []
        stream.write_many(chunk)


def _assert_each_once(path: Path, writers: int, count: int, extra: int = 0) -> None:
    raw = lines_of(path)
    assert raw[-1] == b""
    log = read_events(path)
    assert log.skipped == 0
    tasks = [e.task for e in log.events if isinstance(e, TaskFinished)]
    expected = {f"{w}:{i}" for w in range(writers) for i in range(count)}
    assert len(tasks) == len(expected) and set(tasks) == expected
    assert len(log.events) == len(raw) - 1 == len(expected) + extra


def test_eight_processes_lose_and_tear_nothing(tmp_path: Path) -> None:
    path = tmp_path / "tasks.jsonl"
    shared = JsonlStream(path)  # opened before the fork: each child must reopen, not share its lock
    shared.write(RunStarted(run_id="r"))
    children = [FORK.Process(target=_write_numbered, args=(shared, w, 2000, 1 if w % 2 else 50)) for w in range(8)]
    for child in children:
        child.start()
    for child in children:
        child.join()
        assert child.exitcode == 0
    shared.close()
    _assert_each_once(path, 8, 2000, extra=1)


def test_threads_sharing_a_stream_or_each_with_their_own_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "tasks.jsonl"
    shared = JsonlStream(path)
    threads = [
        threading.Thread(target=_write_numbered, args=(shared if w < 4 else JsonlStream(path), w, 500))
        for w in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _assert_each_once(path, 8, 500)


def _write_one(stream: JsonlStream, done: Any) -> None:
    stream.write(TaskStarted(task="child"))
    done.set()


def test_a_forked_child_does_not_share_the_parents_lock(tmp_path: Path) -> None:
    path = tmp_path / "tasks.jsonl"
    stream = JsonlStream(path)
    stream.write(TaskStarted(task="parent"))
    done = FORK.Event()
    # Hold the lock through the parent's own open file, as a write in progress would.
    fcntl.flock(stream._fd, fcntl.LOCK_EX)  # type: ignore[arg-type]
    child = FORK.Process(target=_write_one, args=(stream, done))
    child.start()
    try:
        assert not done.wait(0.5), "the child wrote while the parent held the lock"
    finally:
        fcntl.flock(stream._fd, fcntl.LOCK_UN)  # type: ignore[arg-type]
    child.join(10)
    assert done.is_set()
    assert [e.task for e in read_events(path).events] == ["parent", "child"]


# --- the stream object -----------------------------------------------------------------------


def test_a_stream_pickles_by_path_and_refuses_writes_after_close(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "artifacts.jsonl"
    stream = JsonlStream(path)
    stream.write(artifact())
    copy = pickle.loads(pickle.dumps(stream))
    copy.write(artifact(name="second"))
    copy.close()
    stream.close()
    stream.close()
    assert stream.closed
    with pytest.raises(ValueError, match="closed"):
        stream.write(artifact())
    assert [e.name for e in read_events(path).events] == ["out.csv", "second"]


def test_write_many_writes_every_event_on_its_own_line(tmp_path: Path) -> None:
    path = tmp_path / "cache.jsonl"
    with JsonlStream(path) as stream:
        assert stream.write_many([]) == 0
        assert (
            stream.write_many(CacheEvent(event="cache.hit", function="f", cache_key=str(i)) for i in range(100)) == 100
        )
        stream.fsync()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [e.cache_key for e in read_events(path)] == [str(i) for i in range(100)]
