"""Sessions: runs on Dask that record every artifact they make, whoever makes it."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from scalable import ArtifactNotFoundError, ManifestError, build_artifact_store, cacheable
from scalable.session import NoSessionError, ScalableSession, SessionClosedError, Target, current_session, job_script
from scalable.telemetry import read_events

MANIFEST = """\
version: 1
project:
  name: session-tests
  default_storage: ./artifacts
targets:
  local:
    provider: local
    n_workers: 2
    threads_per_worker: 1
    processes: true
  shared:
    provider: dask
    address: ${TEST_SCHEDULER}
"""


@pytest.fixture(scope="module")
def scheduler() -> str:
    """One LocalCluster for the tests that connect to an existing scheduler (provider: dask)."""
    from distributed import LocalCluster

    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0"
    )
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheduler: str) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TEST_SCHEDULER", scheduler)
    for var in ("SCALABLE_MANIFEST", "SCALABLE_TARGET", "SCALABLE_DEFAULT_STORAGE", "SCALABLE_RUNS_DIR"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "scalable.yaml").write_text(MANIFEST)
    return tmp_path


@cacheable
def simulate(member: int) -> dict[str, float]:
    """An expensive model run: cached, so 40 tasks over 10 members compute 10 times."""
    return {"member": member, "temperature": 14.0 + member / 10}


def make_and_record(i: int) -> str:
    """A task: hit the cache, write a file, record it in the run from whichever worker runs this."""
    simulate(i % 10)
    out = Path(f"member-{i:03d}.txt")
    out.write_text(f"member {i}\n" * (i + 1))
    ref = current_session().record_artifact(out, name=f"members/{out.name}", metadata={"member": i})
    out.unlink()
    return ref.key


def fail(_: int) -> None:
    raise RuntimeError("model diverged")


def test_local_cluster_40_tasks_record_every_artifact_once(project: Path) -> None:
    with ScalableSession.from_yaml(target="local") as session:
        keys = session.gather(session.map(make_and_record, range(40)))
        run_dir, run_id, store = session.run_dir, session.run_id, session.store
    assert len(set(keys)) == 40
    log = read_events(run_dir / "artifacts.jsonl")
    assert log.skipped == 0  # no torn or invalid line
    names = sorted(e.name for e in log.events)
    assert names == sorted(f"members/member-{i:03d}.txt" for i in range(40))  # each once
    assert {e.run_id for e in log.events} == {run_id}
    assert len({e.pid for e in log.events}) == 2  # written from both worker processes
    for event in log.events:
        ref = store.verify(event.key)  # resolves in the store, and every byte verifies
        assert ref.digest == event.digest and ref.size_bytes == event.size_bytes
        assert event.key == f"runs/{run_id}/{event.name}"
    tasks = read_events(run_dir / "tasks.jsonl").events
    for status in ("task.submitted", "task.started", "task.finished"):
        assert sum(1 for e in tasks if e.event == status) == 40
    assert all(e.worker.startswith("tcp://127.0.0.1:") for e in tasks if e.event == "task.finished")
    cache = read_events(run_dir / "cache.jsonl")
    assert cache.skipped == 0
    assert sum(1 for e in cache.events if e.event == "cache.miss") == 10  # each member computed once
    assert sum(1 for e in cache.events if e.event == "cache.hit") == 30
    assert all(e.task and e.run_id == run_id for e in cache.events)
    finished = [e for e in tasks if e.event == "task.finished"]
    assert sum(e.cache == "miss" for e in finished) == 10 and sum(e.cache == "hit" for e in finished) == 30
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["tasks"] == {"submitted": 40, "finished": 40, "failed": 0}
    assert summary["cache"] == {"hits": 30, "misses": 10, "hit_rate": 0.75}
    assert summary["artifacts"] == 40 and summary["bytes"] == sum(len(f"member {i}\n") * (i + 1) for i in range(40))


def test_run_directory_and_telemetry_copy(project: Path) -> None:
    (project / "output.csv").write_text("a,b\n1,2\n")
    with ScalableSession.from_yaml(target="shared") as session:
        ref = session.record_artifact("output.csv", kind="result")  # the documented usage, as written
        assert ref.key == f"runs/{session.run_id}/output.csv"
        run_dir = session.run_dir
        assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
    assert run_dir.parent == project / ".scalable" / "runs"
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "finished" and run["target"] == {"name": "shared", "provider": "dask"}
    assert run["ended_at"] and run["host"] and run["user"] and run["scalable_version"]
    assert "git_commit" in run
    assert (run_dir / "scalable.yaml").read_text().startswith("version: 1")
    store = build_artifact_store(project / "artifacts")
    telemetry = store.list_artifacts(f"runs/{session.run_id}/telemetry/")
    assert {k.rsplit("/", 1)[-1] for k in telemetry} >= {"run.json", "summary.json", "artifacts.jsonl", "tasks.jsonl"}
    copied = store.get_bytes(f"runs/{session.run_id}/telemetry/artifacts.jsonl")
    assert copied == (run_dir / "artifacts.jsonl").read_bytes()


def test_failed_task_is_recorded(project: Path) -> None:
    with ScalableSession.from_yaml(target="shared") as session:
        futures = session.map(fail, range(2))
        with pytest.raises(RuntimeError, match="model diverged"):
            session.gather(futures)
        run_dir = session.run_dir
    failed = [e for e in read_events(run_dir / "tasks.jsonl").events if e.event == "task.failed"]
    assert len(failed) == 2 and all(e.error_type == "RuntimeError" for e in failed)
    assert json.loads((run_dir / "summary.json").read_text())["tasks"]["failed"] == 2


def test_exception_in_the_with_block_marks_the_run_failed(project: Path) -> None:
    with pytest.raises(KeyError), ScalableSession.from_yaml(target="shared") as session:
        raise KeyError("boom")
    assert json.loads((session.run_dir / "run.json").read_text())["status"] == "failed"


def test_record_missing_file_records_nothing(project: Path) -> None:
    with ScalableSession.from_yaml(target="shared") as session:
        with pytest.raises(ArtifactNotFoundError, match="nope.csv"):
            session.record_artifact("nope.csv")
        assert (session.run_dir / "artifacts.jsonl").read_text() == ""


def test_session_used_after_close(project: Path) -> None:
    session = ScalableSession.from_yaml(target="shared")
    session.close()
    for call in (
        lambda: session.submit(make_and_record, 1),
        lambda: session.record_artifact("x"),
        lambda: session.gather([]),
    ):
        with pytest.raises(SessionClosedError, match="is closed"):
            call()
    session.close()  # closing twice is harmless


def test_current_session_outside_a_session() -> None:
    with pytest.raises(NoSessionError, match="no scalable session is active"):
        current_session()


def test_env_default_storage_overrides_the_manifest(project: Path, s3_server, monkeypatch: pytest.MonkeyPatch) -> None:
    url = s3_server.url(s3_server.shared_bucket(), f"session-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("SCALABLE_DEFAULT_STORAGE", url)
    # The manifest's storage options for s3:// carry the endpoint and keys of the test server.
    opts = s3_server.storage_options
    manifest = MANIFEST.replace(
        "  default_storage: ./artifacts\n",
        '  default_storage: ./artifacts\n  storage_options:\n    "s3://":\n'
        f"      key: {opts['key']}\n      secret: {opts['secret']}\n"
        f'      client_kwargs: {{endpoint_url: "{opts["client_kwargs"]["endpoint_url"]}", region_name: us-east-1}}\n',
    )
    (project / "scalable.yaml").write_text(manifest)
    (project / "output.csv").write_text("x\n")
    with ScalableSession.from_yaml(target="shared") as session:
        assert session.store.uri == url
        ref = session.record_artifact("output.csv")
        keys = session.gather(session.map(make_and_record, range(3)))
    assert ref.uri.startswith("s3://")
    remote = build_artifact_store(url, **opts)
    assert remote.verify(ref.key).digest == ref.digest
    assert all(remote.exists(k) for k in keys)
    assert not (project / "artifacts").exists()  # nothing landed in the manifest's default
    assert opts["secret"] not in (session.run_dir / "run.json").read_text()
    assert opts["secret"] not in (session.run_dir / "scalable.yaml").read_text()


def test_bad_manifest_fails_before_anything_runs(project: Path) -> None:
    (project / "scalable.yaml").write_text("version: 1\ntargets:\n  local:\n    provider: lcoal\n")
    with pytest.raises(ManifestError, match=r"scalable.yaml:4"):
        ScalableSession.from_yaml()
    assert not (project / ".scalable" / "runs").exists()


def test_unknown_target(project: Path) -> None:
    with pytest.raises(ManifestError, match="nosuch"):
        ScalableSession.from_yaml(target="nosuch")


def test_slurm_job_script_without_a_batch_system() -> None:
    pytest.importorskip("dask_jobqueue")
    script = job_script(
        Target(
            "hpc", "slurm", {"cores": 4, "memory": "8GB", "queue": "short", "account": "proj1", "walltime": "01:30:00"}
        )
    )
    assert "#SBATCH -p short" in script and "#SBATCH -A proj1" in script
    assert "#SBATCH --cpus-per-task=4" in script and "#SBATCH -t 01:30:00" in script
    assert "distributed.cli.dask_worker" in script


def test_session_target_from_environment(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALABLE_TARGET", "shared")
    with ScalableSession.from_yaml() as session:
        assert session.target.provider == "dask"
        assert session.gather(session.submit(os.getpid)) != os.getpid()


def test_workers_without_the_run_directory_relay_their_events(project: Path) -> None:
    """A worker on another machine cannot see the run directory: its events reach the trail anyway."""
    from dataclasses import replace

    with ScalableSession.from_yaml(target="shared") as session:
        # As a remote worker sees it: the run directory's path does not exist there.
        session._worker_handle = replace(session.handle, run_dir=str(project / "elsewhere" / session.run_id))
        keys = session.gather(session.map(make_and_record, range(6)))
        run_dir = session.run_dir
    assert not (project / "elsewhere").exists()
    log = read_events(run_dir / "artifacts.jsonl")
    assert sorted(e.key for e in log.events) == sorted(keys) and log.skipped == 0
    tasks = read_events(run_dir / "tasks.jsonl").events
    assert sum(1 for e in tasks if e.event == "task.finished") == 6
    assert json.loads((run_dir / "summary.json").read_text())["artifacts"] == 6


def test_local_target_with_threads_only(project: Path) -> None:
    """``processes: false`` runs tasks in this process (no loopback host forced on the in-process transport)."""
    text = (project / "scalable.yaml").read_text().replace("processes: true", "processes: false")
    (project / "scalable.yaml").write_text(text)
    with ScalableSession.from_yaml() as session:
        assert session.gather(session.submit(os.getpid)) == os.getpid()
    assert json.loads(next(project.glob(".scalable/runs/*/summary.json")).read_text())["tasks"]["finished"] == 1
