"""The catalog: sessions feed it, a rebuild from stores and run telemetry gives the same answers, queries are right."""

from __future__ import annotations

import fnmatch
import json
import logging
import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scalable import Catalog, RunNotFoundError, build_artifact_store
from scalable.artifacts.layout import version_path
from scalable.artifacts.store import BaseArtifactStore
from scalable.catalog import ArtifactRow
from scalable.errors import CatalogError
from scalable.session import ScalableSession, Target, current_session

from .conftest import make_store_factory

THREADS = Target("local", "local", {"n_workers": 1, "threads_per_worker": 2, "processes": False})


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with no manifest and no catalog settings: the defaults apply."""
    monkeypatch.chdir(tmp_path)
    for var in ("SCALABLE_CATALOG", "SCALABLE_MANIFEST", "SCALABLE_RUNS_DIR", "SCALABLE_DEFAULT_STORAGE"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


@pytest.fixture(params=["local", "s3"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> BaseArtifactStore:
    return make_store_factory(request, request.param, tmp_path)()


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def run_session(
    store: BaseArtifactStore,
    runs_dir: Path,
    files: dict[str, str],
    *,
    key_for: Callable[[str], str] | None = None,
    target: Target = THREADS,
) -> str:
    """A session that records ``files`` (name -> content) from the driver; returns its run id."""
    with ScalableSession(target=target, store=store, runs_dir=runs_dir) as session:
        for name, text in files.items():
            src = write(runs_dir.parent / f"src-{uuid.uuid4().hex[:6]}", text)
            session.record_artifact(
                src, name=name, key=key_for(name) if key_for else None, kind="result", metadata={"name": name}
            )
        return session.run_id


def rebuilt(tmp_path: Path, stores: list[BaseArtifactStore], runs_dirs: list[Path]) -> Catalog:
    catalog = Catalog(tmp_path / f"rebuilt-{uuid.uuid4().hex[:6]}.sqlite")
    catalog.rebuild(stores, runs_dirs)
    return catalog


# ---------------------------------------------------------------------------------------------- feeding and rebuild
def test_a_session_feeds_the_catalog_and_a_rebuild_gives_the_same_rows(
    project: Path, any_store: BaseArtifactStore
) -> None:
    runs_dir = project / ".scalable" / "runs"
    first = run_session(any_store, runs_dir, {"a.txt": "alpha", "b.txt": "beta"})
    second = run_session(any_store, runs_dir, {"a.txt": "alpha", "c.txt": "gamma"})

    catalog = Catalog()  # the default place, where the sessions wrote
    assert catalog.path == Path(".scalable/catalog.sqlite") and (project / ".scalable/catalog.sqlite").is_file()
    fed = catalog.snapshot()
    assert len(fed["runs"]) == 2 and len(fed["artifacts"]) == 4
    assert [r.run_id for r, _ in catalog.runs()] == [second, first]
    assert {r.status for r, _ in catalog.runs()} == {"finished"}
    alpha = catalog.find(run=first, name="a.txt")[0]
    assert catalog.runs_for_digest(alpha.digest) == [first, second]

    # From the store and the local runs dir; from the store alone (the telemetry copies); twice in a row.
    assert rebuilt(project, [any_store], [runs_dir]).snapshot() == fed
    shutil.rmtree(runs_dir)
    assert rebuilt(project, [any_store], []).snapshot() == fed
    report = catalog.rebuild([any_store], [])
    assert (report.runs, report.recorded, report.unrecorded) == (2, 4, 0)
    assert catalog.snapshot() == fed


def test_worker_processes_records_reach_the_catalog_at_close(project: Path) -> None:
    store = build_artifact_store(project / "artifacts")
    runs_dir = project / ".scalable" / "runs"
    processes = Target("local", "local", {"n_workers": 1, "threads_per_worker": 1, "processes": True})

    def record(i: int) -> str:
        out = Path(f"w-{i}.txt")
        out.write_text(f"worker {i}")
        return current_session().record_artifact(out, name=f"members/w-{i}.txt").key

    with ScalableSession(target=processes, store=store, runs_dir=runs_dir) as session:
        session.gather(session.map(record, range(3)))
        run_id = session.run_id
        assert Catalog().find(run=run_id) == []  # recorded in another process: not here yet
    catalog = Catalog()
    rows = catalog.find(run=run_id)
    assert sorted(r.name for r in rows) == ["members/w-0.txt", "members/w-1.txt", "members/w-2.txt"]
    assert {r.task for r in rows} == {"record-00001", "record-00002", "record-00003"}
    assert rebuilt(project, [store], [runs_dir]).snapshot() == catalog.snapshot()


def test_the_driver_s_recordings_are_in_the_catalog_at_once(project: Path) -> None:
    store = build_artifact_store(project / "artifacts")
    with ScalableSession(target=THREADS, store=store, runs_dir=project / ".scalable" / "runs") as session:
        session.record_artifact(write(project / "a.txt", "alpha"), name="a.txt", kind="input")
        catalog = Catalog()
        assert catalog.run(session.run_id).status == "running"
        assert [(r.name, r.kind, r.task) for r in catalog.find(run=session.run_id)] == [("a.txt", "input", None)]
    assert catalog.run(session.run_id).status == "finished"


def test_an_overwritten_artifact_keeps_the_run_that_made_its_old_bytes(project: Path) -> None:
    store = build_artifact_store(project / "artifacts")
    runs_dir = project / ".scalable" / "runs"
    first = run_session(store, runs_dir, {"model": "v1"}, key_for=lambda name: "shared/model.txt")
    second = run_session(store, runs_dir, {"model": "v2"}, key_for=lambda name: "shared/model.txt")
    catalog = Catalog()
    assert catalog.find(key="shared/model.txt", run=first) == []  # superseded: only with all_versions
    old, new = (catalog.find(key="shared/model.txt", run=run, all_versions=True) for run in (first, second))
    assert (old[0].version, new[0].version) == (1, 2)
    assert old[0].digest != new[0].digest
    assert store.info("shared/model.txt").digest == new[0].digest
    assert catalog.runs_for_digest(old[0].digest) == [first]
    store.delete("shared/model.txt")  # history stays: the catalog says who produced what
    again = rebuilt(project, [store], [runs_dir])
    assert again.snapshot() == catalog.snapshot()
    assert again.runs_for_digest(old[0].digest) == [first]


def test_a_rebuild_adds_artifacts_no_run_recorded_and_a_later_recording_takes_their_place(project: Path) -> None:
    store = build_artifact_store(project / "artifacts")
    runs_dir = project / ".scalable" / "runs"
    loose = store.put_bytes(b"made by hand", "inputs/loose.bin", metadata={"by": "hand"})
    catalog = Catalog()
    report = catalog.rebuild([store], [runs_dir])
    assert (report.refs, report.recorded, report.unrecorded) == (1, 0, 1)
    (row,) = catalog.find(digest=loose.digest)
    assert (row.run_id, row.name, row.kind, row.artifact_kind, row.key) == (
        None,
        "loose.bin",
        None,
        "blob",
        "inputs/loose.bin",
    )
    assert json.loads(row.metadata) == {"by": "hand"}
    run_id = run_session(store, runs_dir, {"loose.bin": "made by hand"}, key_for=lambda name: "inputs/loose.bin")
    rows = catalog.find(digest=loose.digest)
    assert [r.run_id for r in rows] == [run_id]  # the recording replaced the run-less row
    assert rebuilt(project, [store], [runs_dir]).snapshot() == catalog.snapshot()


def test_a_key_recorded_three_times_is_one_row_and_three_with_all_versions(project: Path) -> None:
    store = build_artifact_store(project / "artifacts")
    runs_dir = project / ".scalable" / "runs"
    same_key: Callable[[str], str] = lambda name: "shared/model.txt"  # noqa: E731
    runs = [run_session(store, runs_dir, {"model": f"v{i}"}, key_for=same_key) for i in (1, 2, 3)]
    events = [json.loads(line) for line in (runs_dir / runs[2] / "artifacts.jsonl").read_text().splitlines()]
    assert [e["version"] for e in events if e["event"] == "artifact.recorded"] == [3]  # the version the put made
    fed = Catalog()
    from_store = rebuilt(project, [store], [])  # a fresh catalog from the store alone (its telemetry copies)
    for catalog in (fed, from_store):
        (latest,) = catalog.find(key="shared/model.txt")
        assert (latest.version, latest.run_id, latest.digest) == (3, runs[2], store.info("shared/model.txt").digest)
        every = catalog.find(key="shared/model.txt", all_versions=True)
        assert [(r.version, r.run_id) for r in every] == [(1, runs[0]), (2, runs[1]), (3, runs[2])]
        assert catalog.latest_versions([(latest.store, latest.key)]) == {(latest.store, latest.key): 3}
    assert from_store.snapshot()["artifacts"] == fed.snapshot()["artifacts"]


def test_a_rebuild_indexes_every_retained_version_of_keys_no_run_recorded(
    project: Path, any_store: BaseArtifactStore
) -> None:
    for data in (b"one", b"two", b"one"):  # the third version has the first one's bytes: still its own row
        any_store.put_bytes(data, "inputs/x.bin")
    any_store.put_bytes(b"other", "inputs/y.bin")
    any_store.put_bytes(b"gone", "inputs/z.bin")
    any_store.delete("inputs/z.bin")  # a deleted key has no retained version
    catalog = Catalog(project / "fresh.sqlite")
    report = catalog.rebuild([any_store])
    assert (report.refs, report.unrecorded) == (4, 4)
    assert [(r.key, r.version) for r in catalog.find()] == [("inputs/x.bin", 3), ("inputs/y.bin", 1)]
    every = catalog.find(key="inputs/x.bin", all_versions=True)
    assert [r.version for r in every] == [1, 2, 3] and every[0].digest == every[2].digest != every[1].digest
    assert [r.version for r in catalog.find(digest=every[0].digest, all_versions=True)] == [1, 3]
    assert [(r.key, r.version) for r in any_store.iter_versions("inputs/x")] == [("inputs/x.bin", n) for n in (1, 2, 3)]


def test_rows_without_a_version_are_latest_until_the_key_has_a_versioned_row(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "c.sqlite")
    catalog.add_artifacts([make_row(digest=DIGESTS[0], run="run-a"), make_row(digest=DIGESTS[1], run="run-b")])
    assert len(catalog.find(key="k")) == 2  # telemetry from before versions: nothing says which is older
    catalog.add_artifacts([make_row(digest=DIGESTS[2], run="run-c")._replace(version=4)])
    assert [r.digest for r in catalog.find(key="k")] == [DIGESTS[2]]
    assert len(catalog.find(key="k", all_versions=True)) == 3


def test_torn_and_invalid_telemetry_lines_are_skipped_the_same_way(project: Path) -> None:
    store = build_artifact_store(project / "artifacts")
    runs_dir = project / ".scalable" / "runs"
    run_id = run_session(store, runs_dir, {"a.txt": "alpha"})
    with open(runs_dir / run_id / "artifacts.jsonl", "a") as f:
        f.write('{"event": "artifact.recorded", "run_id": "x"}\n{"event": "artifact.rec')
    catalog = Catalog(project / "fresh.sqlite")
    report = catalog.rebuild([], [runs_dir])
    assert (report.runs, report.recorded, report.skipped_lines) == (1, 1, 2)
    assert [r.name for r in catalog.find(run=run_id)] == ["a.txt"]


def test_the_earliest_of_two_recordings_of_the_same_bytes_in_a_run_is_kept(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "c.sqlite")
    late, early = make_row(created=T0 + timedelta(minutes=5), task="late"), make_row(created=T0, task="early")
    catalog.add_artifacts([late])
    catalog.add_artifacts([early])
    catalog.add_artifacts([late])
    assert [r.task for r in catalog.find()] == ["early"]


# ---------------------------------------------------------------------------------------------- failures
def test_a_damaged_catalog_is_moved_aside_and_rebuilt_from_the_runs_dir(project: Path) -> None:
    store = build_artifact_store(project / "artifacts")
    runs_dir = project / ".scalable" / "runs"
    run_id = run_session(store, runs_dir, {"a.txt": "alpha"})
    good = Catalog().snapshot()
    path = project / ".scalable" / "catalog.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    catalog = Catalog(runs_dir=runs_dir)
    assert catalog.recovered is not None and "\n" not in catalog.recovered
    assert "damaged" in catalog.recovered and str(runs_dir) in catalog.recovered
    assert "1 runs, 1 artifacts" in catalog.recovered
    assert catalog.snapshot() == good
    (aside,) = path.parent.glob("catalog.sqlite.damaged-*Z")  # its -wal and -shm go with it
    assert aside.read_bytes().startswith(b"this is not a database")
    assert catalog.find(run=run_id[:10])[0].name == "a.txt"


def test_a_damaged_catalog_without_a_runs_dir_starts_empty_and_says_how_to_rebuild(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"\x00" * 4096)
    catalog = Catalog(path)
    assert catalog.recovered is not None and "scalable reindex STORE" in catalog.recovered
    assert catalog.counts() == {"runs": 0, "artifacts": 0}


def test_a_catalog_that_cannot_be_written_never_fails_a_session(
    project: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = write(project / "not-a-folder", "a file where the catalog's folder should be")
    monkeypatch.setenv("SCALABLE_CATALOG", str(blocker / "catalog.sqlite"))
    store = build_artifact_store(project / "artifacts")
    with caplog.at_level(logging.WARNING, logger="scalable.catalog"):
        run_id = run_session(store, project / ".scalable" / "runs", {"a.txt": "alpha", "b.txt": "beta"})
    warnings = [r for r in caplog.records if r.name == "scalable.catalog"]
    assert len(warnings) == 1 and run_id in warnings[0].getMessage()
    assert "scalable reindex STORE" in warnings[0].getMessage()
    assert (project / ".scalable" / "runs" / run_id / "summary.json").is_file()
    with pytest.raises(CatalogError, match="cannot open the catalog"):
        Catalog()


def test_scalable_catalog_off_writes_no_catalog(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALABLE_CATALOG", "off")
    run_session(build_artifact_store(project / "artifacts"), project / ".scalable" / "runs", {"a.txt": "alpha"})
    assert not list(project.rglob("*.sqlite*"))
    with pytest.raises(CatalogError, match="turned off"):
        Catalog()


def test_run_ids_resolve_by_unique_prefix(tmp_path: Path) -> None:
    from scalable.catalog import run_row_from_docs

    catalog = Catalog(tmp_path / "c.sqlite")
    for run_id in ("20261124T010000Z-aaaaaa", "20261124T010000Z-aabbbb", "20261124T020000Z-cccccc"):
        catalog.add_run(run_row_from_docs({"run_id": run_id, "status": "finished"}, None))
    assert catalog.resolve_run("20261124T02") == "20261124T020000Z-cccccc"
    assert catalog.run("20261124T010000Z-aab").run_id == "20261124T010000Z-aabbbb"
    both = r"matches 2 runs in .* \(20261124T010000Z-aaaaaa, 20261124T010000Z-aabbbb\)"
    with pytest.raises(RunNotFoundError, match=both):
        catalog.run("20261124T01")
    with pytest.raises(RunNotFoundError, match="no run 'nope' in the catalog"):
        catalog.find(run="nope")
    with pytest.raises(LookupError):
        catalog.run("")


# ---------------------------------------------------------------------------------------------- queries
T0 = datetime(2026, 11, 24, 10, 0, tzinfo=timezone.utc)
DIGESTS = [f"sha256:{i:064x}" for i in range(4)]


def make_row(
    *,
    store: str = "file:///s",
    key: str = "k",
    digest: str = DIGESTS[0],
    run: str | None = "run-a",
    task: str | None = None,
    kind: str | None = "result",
    name: str | None = "a.txt",
    created: datetime = T0,
) -> ArtifactRow:
    return ArtifactRow(
        store=store,
        key=key,
        uri=f"{store}/{key}",
        kind=kind,
        artifact_kind="file",
        digest=digest,
        size_bytes=1,
        created_at=created.isoformat(timespec="microseconds"),
        run_id=run,
        task=task,
        name=name,
        metadata="{}",
    )


rows_strategy = st.lists(
    st.builds(
        make_row,
        key=st.sampled_from(["a", "b/c", "d"]),
        digest=st.sampled_from(DIGESTS),
        run=st.sampled_from(["run-a", "run-b", "run-c"]),
        task=st.sampled_from([None, "t1", "t2"]),
        kind=st.sampled_from(["result", "input", "log"]),
        name=st.sampled_from(["a.txt", "members/m1.csv", "members/m2.csv", "b.txt"]),
        created=st.integers(0, 100).map(lambda m: T0 + timedelta(minutes=m)),
    ),
    max_size=25,
    unique_by=lambda r: (r.store, r.key, r.digest, r.run_id),
)
filters_strategy = st.fixed_dictionaries(
    {},
    optional={
        "run": st.sampled_from(["run-a", "run-b"]),
        "task": st.sampled_from(["t1", "t2"]),
        "kind": st.sampled_from(["result", "log"]),
        "name": st.sampled_from(["members/*", "*.txt", "a.txt", "members/m?.csv", "x*"]),
        "digest": st.sampled_from([*DIGESTS[:2], DIGESTS[2].removeprefix("sha256:")]),
        "since": st.integers(0, 100).map(lambda m: T0 + timedelta(minutes=m)),
        "until": st.integers(0, 100).map(lambda m: (T0 + timedelta(minutes=m)).isoformat()),
    },
)


def expected(rows: list[ArtifactRow], f: dict[str, Any]) -> list[ArtifactRow]:
    def keep(r: ArtifactRow) -> bool:
        created = datetime.fromisoformat(r.created_at)
        return (
            ("run" not in f or r.run_id == f["run"])
            and ("task" not in f or r.task == f["task"])
            and ("kind" not in f or r.kind == f["kind"])
            and ("name" not in f or fnmatch.fnmatchcase(r.name or "", f["name"]))
            and ("digest" not in f or r.digest.removeprefix("sha256:") == f["digest"].removeprefix("sha256:"))
            and ("since" not in f or created >= f["since"])
            and ("until" not in f or created < datetime.fromisoformat(f["until"]))
        )

    return sorted((r for r in rows if keep(r)), key=lambda r: (r.created_at, r.store, r.key, r.run_id or ""))


@pytest.fixture
def query_catalog(tmp_path: Path) -> Iterator[Catalog]:
    catalog = Catalog(tmp_path / "q.sqlite")
    yield catalog
    catalog.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows_strategy, filters=filters_strategy)
def test_find_returns_exactly_the_rows_every_filter_matches(
    query_catalog: Catalog, rows: list[ArtifactRow], filters: dict[str, Any]
) -> None:
    from scalable.catalog import run_row_from_docs

    query_catalog.rebuild()  # empty it
    for run in ("run-a", "run-b", "run-c"):
        query_catalog.add_run(run_row_from_docs({"run_id": run}, None))
    query_catalog.add_artifacts(rows)
    assert query_catalog.find(**filters) == expected(rows, filters)
    wanted = {
        r.run_id: r.created_at for r in sorted(rows, key=lambda r: r.created_at, reverse=True) if r.digest == DIGESTS[0]
    }
    assert query_catalog.runs_for_digest(DIGESTS[0]) == sorted(wanted, key=lambda run: (wanted[run], run))


def test_bulk_load_then_queries_use_the_indexes(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "bulk.sqlite")
    rows = [
        make_row(
            key=f"k/{i}",
            digest=DIGESTS[i % 4],
            run=f"run-{i % 10}",
            name=f"members/m{i:04d}.csv",
            created=T0 + timedelta(seconds=i),
        )
        for i in range(2000)
    ]
    assert catalog.bulk_load(rows) == 2000
    assert len(catalog.find(name="members/m00*")) == 100
    assert len(catalog.find(run="run-3", since=T0 + timedelta(seconds=1000))) == 100
    plans = {
        "run": "SELECT * FROM artifacts WHERE run_id = 'run-3'",
        "digest": f"SELECT * FROM artifacts WHERE digest = '{DIGESTS[1]}'",
        "name": "SELECT * FROM artifacts WHERE name GLOB 'members/m00*'",
    }
    for what, sql in plans.items():
        plan = " ".join(str(row[-1]) for row in catalog._conn.execute("EXPLAIN QUERY PLAN " + sql))
        assert "USING INDEX" in plan, (what, plan)
    with pytest.raises(CatalogError, match="is not a time"):
        catalog.find(since="yesterday")


def test_a_rebuild_over_a_damaged_ref_record_names_it(tmp_path: Path, tree: Path) -> None:
    from scalable import IntegrityError

    store = build_artifact_store(tmp_path / "store")
    store.put(tree, "trees/t1")
    store.put_bytes(b"x", "blobs/b.bin", metadata={"n": 1, "nested": {"é": [1, 2]}})
    store.put(write(tmp_path / "f.txt", "text"), "files/f.txt")
    catalog = Catalog(tmp_path / "catalog.sqlite")
    catalog.rebuild([store])
    assert sorted((r.key, r.artifact_kind) for r in catalog.find()) == [
        ("blobs/b.bin", "blob"),
        ("files/f.txt", "file"),
        ("trees/t1", "dir"),
    ]
    # A rebuild reads the version records (the head is a copy of the latest one).
    (store.root / version_path("files/f.txt", 1)).write_text('{"format": "scalable.ref/2", "ref": {}}')
    with pytest.raises(IntegrityError, match="'files/f.txt'.*damaged"):
        catalog.rebuild([store])
