"""Lineage: what each run read and wrote, as a graph in the catalog, walked up and down, on the command line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from scalable import Catalog, build_artifact_store, cacheable
from scalable.artifacts.store import BaseArtifactStore
from scalable.catalog.lineage_rows import task_node
from scalable.cli.app import main
from scalable.errors import ArtifactNotFoundError, LineageNotFoundError
from scalable.session import ScalableSession, Target, current_session
from scalable.telemetry import read_events

from .conftest import make_store_factory

THREADS = Target("local", "local", {"n_workers": 1, "threads_per_worker": 2, "processes": False})
PROCESSES = Target("local", "local", {"n_workers": 1, "threads_per_worker": 1, "processes": True})


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for var in ("SCALABLE_CATALOG", "SCALABLE_MANIFEST", "SCALABLE_RUNS_DIR", "SCALABLE_DEFAULT_STORAGE"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


@pytest.fixture(params=["local", "s3"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> BaseArtifactStore:
    return make_store_factory(request, request.param, tmp_path)()


def used_events(run_dir: Path) -> list:
    return [e for e in read_events(run_dir / "artifacts.jsonl").events if e.event == "artifact.used"]


# ------------------------------------------------------------------ the tasks of three chained runs
def regrid(key: str) -> str:
    """Run A's task: reads the forcing through use_artifact, writes a grid."""
    session = current_session()
    forcing = session.use_artifact(session.store, key)
    out = Path(f"grid-{uuid.uuid4().hex[:6]}.txt")
    out.write_text(forcing.read_text().upper())
    return session.record_artifact(out, key="a/grid.txt").key


def simulate(key: str) -> str:
    """Run B's task: reads A's grid with a plain store read (recorded by the read hook)."""
    session = current_session()
    grid = session.store.get_bytes(key)
    out = Path(f"sim-{uuid.uuid4().hex[:6]}.txt")
    out.write_bytes(grid * 2)
    return session.record_artifact(out, key="b/sim.txt").key


@cacheable
def summarize_file(path: Path) -> int:
    return len(path.read_bytes())


def summarize(key: str) -> str:
    """Run C's task: fetches B's output with get, passes it to a cached function, writes a summary."""
    session = current_session()
    local = session.store.get(key, Path(f"in-{uuid.uuid4().hex[:6]}"))
    out = Path(f"sum-{uuid.uuid4().hex[:6]}.txt")
    out.write_text(str(summarize_file(local)))
    return session.record_artifact(out, key="c/summary.txt").key


def run(store: BaseArtifactStore, runs_dir: Path, fn, *args, target: Target = THREADS, **options) -> str:
    with ScalableSession(target=target, store=store, runs_dir=runs_dir, **options) as session:
        session.gather(session.submit(fn, *args))
        return session.run_id


def test_three_chained_runs_trace_up_and_down_across_a_catalog_rebuilt_elsewhere(
    project: Path, any_store: BaseArtifactStore, tmp_path_factory: pytest.TempPathFactory
) -> None:
    runs_dir = project / ".scalable" / "runs"
    forcing = any_store.put_bytes(b"forcing field\n", "inputs/forcing.txt")
    run_a = run(any_store, runs_dir, regrid, "inputs/forcing.txt")
    run_b = run(any_store, runs_dir, simulate, "a/grid.txt")
    run_c = run(any_store, runs_dir, summarize, "b/sim.txt")
    summary = any_store.info("c/summary.txt")

    catalog = Catalog()
    up = catalog.upstream(f"{any_store.uri}#c/summary.txt", depth=5)
    assert forcing.digest in up.nodes and up.nodes[forcing.digest].key == "inputs/forcing.txt"
    assert {task_node(r, t) for r, t in [(run_a, "regrid-00001"), (run_b, "simulate-00001")]} <= set(up.nodes)
    assert {e.via for e in up.edges} == {"use_artifact", "get_bytes", "get", "argument", "recorded"}
    down = catalog.downstream(forcing.digest, depth=5)
    assert summary.digest in down.nodes and down.nodes[summary.digest].key == "c/summary.txt"
    # Depth counts tasks: one task up from the summary is run C's task and its inputs, not A's.
    near = catalog.upstream(summary.digest, depth=1)
    assert forcing.digest not in near.nodes and any_store.info("b/sim.txt").digest in near.nodes
    # A run names its tasks: upstream of run C reaches A's input, downstream of run A reaches C's output.
    assert forcing.digest in catalog.upstream(run_c).nodes
    assert summary.digest in catalog.downstream(run_a[:-2]).nodes

    # Another machine: only the store (its telemetry copies), a catalog in another folder.
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    fed = catalog.snapshot()
    shutil.rmtree(runs_dir)
    again = Catalog(elsewhere / "catalog.sqlite")
    again.rebuild([any_store], [])
    assert again.snapshot()["lineage"] == fed["lineage"]
    assert again.upstream(f"{any_store.uri}#c/summary.txt").to_dict() == up.to_dict()
    assert summary.digest in again.downstream(f"{any_store.uri}#inputs/forcing.txt").nodes


def test_reads_from_worker_processes_are_recorded_one_whole_line_each(project: Path) -> None:
    store = build_artifact_store(project / "artifacts")
    store.put_bytes(b"grid", "a/grid.txt")
    runs_dir = project / ".scalable" / "runs"
    with ScalableSession(target=PROCESSES, store=store, runs_dir=runs_dir) as session:
        session.gather(session.map(simulate, ["a/grid.txt"] * 4))
        run_dir = session.run_dir
    log = read_events(run_dir / "artifacts.jsonl")
    assert log.skipped == 0 and log.problems == []
    used = [e for e in log.events if e.event == "artifact.used"]
    assert sorted(e.task for e in used) == [f"simulate-0000{i}" for i in range(1, 5)]
    assert {(e.via, e.key, e.digest) for e in used} == {("get_bytes", "a/grid.txt", store.info("a/grid.txt").digest)}
    assert os.getpid() not in {e.pid for e in used}  # written by the worker process itself


def test_record_reads_false_keeps_use_artifact_and_drops_plain_reads(project: Path) -> None:
    store = build_artifact_store(project / "artifacts")
    store.put_bytes(b"x", "inputs/forcing.txt")
    store.put_bytes(b"grid", "a/grid.txt")
    runs_dir = project / ".scalable" / "runs"
    run_id = run(store, runs_dir, simulate, "a/grid.txt", record_reads=False)
    assert used_events(runs_dir / run_id) == []
    run_id = run(store, runs_dir, regrid, "inputs/forcing.txt", record_reads=False)
    assert [e.via for e in used_events(runs_dir / run_id)] == ["use_artifact"]


def test_use_artifact_returns_a_local_copy_and_takes_store_key_forms(project: Path) -> None:
    store = build_artifact_store(project / "artifacts")
    ref = store.put_bytes(b"forcing", "inputs/forcing.txt")
    with ScalableSession(target=THREADS, store=store, runs_dir=project / "runs") as session:
        by_uri = session.use_artifact(f"{project / 'artifacts'}#inputs/forcing.txt")
        by_ref = session.use_artifact(ref)
        by_store = session.use_artifact(store, "inputs/forcing.txt")
        assert by_uri == by_ref == by_store and by_uri.read_bytes() == b"forcing"
        # A verified, read-only copy in the local mirror: the store's own objects are never handed out.
        assert Path(os.environ["SCALABLE_MIRROR_DIR"]) in by_uri.parents and not by_uri.stat().st_mode & 0o222
        store.put_bytes(b"forcing, corrected", "inputs/forcing.txt")  # version 2
        assert session.use_artifact(store, "inputs/forcing.txt", version=1).read_bytes() == b"forcing"
        with pytest.raises(ArtifactNotFoundError, match="version"):
            session.use_artifact(store, "inputs/forcing.txt", version=9)
        with pytest.raises(ValueError, match="STORE#KEY"):
            session.use_artifact(str(project / "artifacts"))
        run_dir = session.run_dir
    events = used_events(run_dir)
    assert [(e.task, e.via, e.digest, e.version) for e in events[:4]] == [(None, "use_artifact", ref.digest, 1)] * 4
    assert events[4].digest is None and events[4].error.startswith("ArtifactNotFoundError")  # a failed use says so
    assert len(events) == 5  # a call that names no artifact records nothing
    assert Catalog().upstream(session.run_id).nodes[ref.digest].key == "inputs/forcing.txt"


def fetch_missing(key: str) -> None:
    current_session().use_artifact(current_session().store, key)


def test_an_input_that_cannot_be_fetched_fails_the_task_and_the_graph_shows_it_missing(project: Path) -> None:
    store = build_artifact_store(project / "artifacts")
    runs_dir = project / ".scalable" / "runs"
    with ScalableSession(target=THREADS, store=store, runs_dir=runs_dir) as session:
        with pytest.raises(ArtifactNotFoundError, match="no artifact at key 'inputs/gone.nc'"):
            session.gather(session.submit(fetch_missing, "inputs/gone.nc"))
        run_id, run_dir = session.run_id, session.run_dir
    (event,) = used_events(run_dir)
    assert event.digest is None and event.key == "inputs/gone.nc" and "ArtifactNotFoundError" in event.error
    failed = [e for e in read_events(run_dir / "tasks.jsonl").events if e.event == "task.failed"]
    assert failed[0].error_type == "ArtifactNotFoundError" and "fetch_missing" in failed[0].traceback
    graph = Catalog().upstream(run_id)
    (missing,) = [n for n in graph.nodes.values() if n.kind == "missing"]
    assert missing.key == "inputs/gone.nc" and "not found" in missing.label and "no artifact" in missing.error


# ------------------------------------------------------------------ code identity
def test_the_run_record_holds_the_code_identity_and_equal_code_gives_equal_digests(project: Path) -> None:
    subprocess.run(["git", "init", "-q"], check=True)
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "x"])
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    store = build_artifact_store(project / "artifacts")
    store.put_bytes(b"grid", "b/sim.txt")
    runs_dir = project / ".scalable" / "runs"
    first, second = (run(store, runs_dir, summarize, "b/sim.txt") for _ in range(2))
    code = [json.loads((runs_dir / r / "run.json").read_text())["code"] for r in (first, second)]
    assert code[0]["git_commit"] == head and code[0]["git_dirty"] is False
    assert code[0]["python"].count(".") == 2 and code[0]["distributions_digest"].startswith("sha256:")
    assert code[0]["functions"]["tests.test_lineage:summarize_file"] == summarize_file.source_hash
    assert "tests.test_lineage:summarize" in code[0]["functions"]
    assert code[0]["digest"] == code[1]["digest"]  # "same code?" is one comparison

    (project / "tracked.txt").write_text("a")
    subprocess.run(["git", "add", "tracked.txt"], check=True)  # staged, uncommitted: the tree is dirty
    third = run(store, runs_dir, summarize, "b/sim.txt")
    code3 = json.loads((runs_dir / third / "run.json").read_text())["code"]
    assert code3["git_dirty"] is True and code3["digest"] != code[0]["digest"]
    started = next(e for e in read_events(runs_dir / third / "tasks.jsonl").events if e.event == "run.started")
    assert (started.git_dirty, started.python) == (True, code3["python"])


# ------------------------------------------------------------------ old or damaged telemetry
def test_a_cycle_a_torn_line_and_an_unknown_producer_in_old_telemetry_are_shown_not_raised(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs_dir = project / ".scalable" / "runs"
    run_dir = runs_dir / "20260101T000000Z-cafe00"
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"run_id": run_dir.name, "status": "failed"}))
    d1, d2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    base = {"schema_version": 1, "timestamp": "2026-01-01T00:00:00Z", "run_id": run_dir.name, "host": "h", "pid": 1}
    lines = [
        {**base, "event": "artifact.used", "task": "t1", "via": "get", "store": "file:///s", "key": "a", "digest": d1},
        {**base, "event": "artifact.recorded", "task": "t1", "name": "b", "uri": "file:///s/b", "key": "b",
         "digest": d2, "size_bytes": 1},
        {**base, "event": "artifact.used", "task": "t2", "via": "get", "store": "file:///s", "key": "b", "digest": d2},
        {**base, "event": "artifact.recorded", "task": "t2", "name": "a", "uri": "file:///s/a", "key": "a",
         "digest": d1, "size_bytes": 1},
    ]  # fmt: skip
    text = "".join(json.dumps(line) + "\n" for line in lines) + '{"event": "artifact.used", "run_id": "20260101T0'
    (run_dir / "artifacts.jsonl").write_text(text)
    catalog = Catalog()
    report = catalog.rebuild([], [runs_dir])
    assert (report.edges, report.skipped_lines) == (4, 1)
    up = catalog.upstream(d2, depth=50)
    assert {d1, d2} <= set(up.nodes) and len(up.edges) == 4
    code = main(["lineage", d2, "--depth", "50"])
    out = capsys.readouterr().out
    assert code == 0 and "(cycle)" in out and out.count(d2) == 2
    # A digest nobody recorded producing (an input from outside) is a leaf, and an unknown name is an error.
    assert catalog.upstream("sha256:" + "3" * 64).edges == []
    with pytest.raises(LineageNotFoundError, match="not a digest, a STORE#KEY or a run"):
        catalog.upstream("no-such-thing")


# ------------------------------------------------------------------ the command line
def test_the_lineage_command_prints_a_tree_json_dot_and_mermaid(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = build_artifact_store(project / "artifacts")
    forcing = store.put_bytes(b"forcing", "inputs/forcing.txt")
    runs_dir = project / ".scalable" / "runs"
    run_a = run(store, runs_dir, regrid, "inputs/forcing.txt")
    run_b = run(store, runs_dir, simulate, "a/grid.txt")
    sim = store.info("b/sim.txt")

    assert main(["lineage", "./artifacts#b/sim.txt"]) == 0
    tree = capsys.readouterr().out.splitlines()
    assert tree[0] == "upstream of (5 tasks deep)"
    order = ["b/sim.txt", "simulate-00001", "a/grid.txt", "regrid-00001", "inputs/forcing.txt"]
    positions = [next(i for i, line in enumerate(tree) if name in line) for name in order]
    assert positions == sorted(positions) and f"run {run_b}" in tree[positions[1]] and forcing.digest in tree[-1]

    assert main(["lineage", forcing.digest.partition(":")[2], "--down", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["direction"] == "downstream" and doc["roots"] == [forcing.digest]
    assert sim.digest in {n["id"] for n in doc["nodes"]}
    assert {(e["via"], e["run_id"]) for e in doc["edges"]} >= {("use_artifact", run_a), ("recorded", run_b)}

    assert main(["lineage", run_b, "--dot"]) == 0
    dot = capsys.readouterr().out
    assert dot.startswith("digraph lineage {") and dot.count("->") == 3 and "shape=box" in dot
    assert main(["lineage", run_b, "--down", "--mermaid", "--depth", "1"]) == 0
    mermaid = capsys.readouterr().out
    assert mermaid.startswith("flowchart LR") and '-->|"recorded"|' in mermaid and "b/sim.txt" in mermaid

    assert main(["lineage", "./artifacts#no/such.txt"]) == 1
    assert "no artifact 'file://" in capsys.readouterr().err


def test_the_fast_read_line_is_the_event_the_model_writes_redacted_alike(tmp_path: Path) -> None:
    from datetime import datetime, timezone

    from scalable.artifacts.ref import ArtifactKind, ArtifactRef
    from scalable.session.lineage import read_line
    from scalable.telemetry import ArtifactUsed, encode_event, parse_event

    ref = ArtifactRef(
        uri="s3://user:hunter2@bucket/ä/x.nc?X-Amz-Signature=abc", key="ä/x.nc", kind=ArtifactKind.FILE,
        digest="sha256:" + "a" * 64, size_bytes=3, version=4,
    )  # fmt: skip
    before = datetime.now(timezone.utc)
    line = read_line('run "1"', "task-1", "s3://user:hunter2@bucket", ref, "open")
    fast = parse_event(json.loads(line))
    model = parse_event(
        json.loads(
            encode_event(
                ArtifactUsed(
                    run_id='run "1"', task="task-1", via="open", uri=ref.uri, store="s3://user:hunter2@bucket",
                    key=ref.key, version=4, digest=ref.digest, size_bytes=3, artifact_kind="file",
                    timestamp=fast.timestamp,
                )
            )
        )
    )  # fmt: skip
    assert fast == model and before <= fast.timestamp <= datetime.now(timezone.utc)
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and b"hunter2" not in line and b"abc" not in line
