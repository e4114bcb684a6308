"""``scalable runs list|show``, ``scalable find`` and ``scalable reindex``: in process and as a real command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from scalable import Catalog, build_artifact_store
from scalable.cli.app import main
from scalable.session import ScalableSession, Target

CLIENT_ONLY = Target("local", "local", {"n_workers": 1, "processes": False})


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for var in ("SCALABLE_CATALOG", "SCALABLE_MANIFEST", "SCALABLE_RUNS_DIR", "SCALABLE_DEFAULT_STORAGE"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def record_run(store_path: Path | str, names: list[str], **store_options: object) -> str:
    store = build_artifact_store(store_path, **store_options)
    with ScalableSession(target=CLIENT_ONLY, store=store, runs_dir=".scalable/runs") as session:
        for name in names:
            src = Path(f"src-{uuid.uuid4().hex[:6]}")
            src.write_text(f"content of {name}")
            session.record_artifact(src, name=name, kind="result")
        return session.run_id


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_runs_list_shows_each_run_newest_first(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = record_run("artifacts", ["a.txt"])
    second = record_run("artifacts", ["b.txt", "c.txt"])
    code, out, err = cli(capsys, "runs", "list")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert " ".join(lines[0].split()) == "run id status started (UTC) target tasks artifacts cache hit rate"
    assert lines[1].split()[:2] == [second, "finished"] and lines[1].split()[-3:] == ["0", "2", "-"]
    assert lines[2].split()[:2] == [first, "finished"] and lines[2].split()[-3:] == ["0", "1", "-"]

    code, out, _ = cli(capsys, "runs", "list", "--json", "--limit", "1")
    (doc,) = json.loads(out)
    assert (code, doc["run_id"], doc["artifacts"], doc["status"], doc["target"]) == (0, second, 2, "finished", "local")


def test_runs_show_takes_a_prefix_and_prints_the_run_its_summary_and_artifacts(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = record_run("artifacts", ["a.txt", "b.txt"])
    code, out, err = cli(capsys, "runs", "show", run_id[:-2])
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == f"run {run_id}  finished"
    assert "2 recorded" in out and "a.txt" in out and "b.txt" in out

    code, out, _ = cli(capsys, "runs", "show", run_id, "--json")
    doc = json.loads(out)
    assert doc["run"]["run_id"] == run_id and doc["summary"]["artifacts"] == 2
    assert [a["name"] for a in doc["artifacts"]] == ["a.txt", "b.txt"]
    assert doc["artifacts"][0]["uri"].endswith(f"runs/{run_id}/a.txt")


def test_an_unknown_or_ambiguous_run_is_one_line_and_exit_1(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record_run("artifacts", ["a.txt"])
    record_run("artifacts", ["b.txt"])
    code, out, err = cli(capsys, "runs", "show", "19990101")
    assert (code, out) == (1, "")
    assert err.startswith("error: no run '19990101' in the catalog") and err.count("\n") == 1
    code, _, err = cli(capsys, "runs", "show", "2")
    assert code == 1 and "matches 2 runs" in err and err.count("\n") == 1
    code, _, err = cli(capsys, "runs", "show")
    assert code == 2 and "Missing argument" in err


def test_find_by_name_and_digest_says_which_runs_produced_it(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = record_run("artifacts", ["members/m1.csv", "notes.txt"])
    second = record_run("artifacts", ["members/m1.csv"])
    code, out, _ = cli(capsys, "find", "--name", "members/*", "--json")
    rows = json.loads(out)
    assert code == 0 and [(r["run_id"], r["version"]) for r in rows] == [(first, 1), (second, 1)]  # a key per run
    digest = rows[0]["digest"]
    code, out, _ = cli(capsys, "find", "--digest", digest)
    assert code == 0 and out.splitlines()[-1] == f"produced by 2 runs: {first}, {second}"
    code, out, _ = cli(capsys, "find", "--run", first, "--kind", "result", "--name", "*.txt", "--json")
    assert [r["name"] for r in json.loads(out)] == ["notes.txt"]
    code, _, err = cli(capsys, "find", "--since", "last tuesday")
    assert code == 1 and err.startswith("error: since='last tuesday' is not a time")


def test_find_shows_the_latest_version_and_all_versions_as_pasteable_key_at_n(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = build_artifact_store("artifacts")
    for data in (b"first", b"second", b"third"):
        store.put_bytes(data, "model.bin")
    assert cli(capsys, "reindex", "artifacts", "-q") == (0, "", "")
    where = f"{store.uri}#model.bin"
    code, out, _ = cli(capsys, "find", "--name", "model.bin")
    header, *lines = out.splitlines()
    assert code == 0 and "version" in header.split() and len(lines) == 1
    assert lines[0].split()[-2:] == ["3", where]
    code, out, _ = cli(capsys, "find", "--name", "model.bin", "--all-versions")
    shown = [line.split()[-2:] for line in out.splitlines()[1:]]
    assert shown == [["1", f"{where}@1"], ["2", f"{where}@2"], ["3", where]]
    assert cli(capsys, "get", f"{where}@1", "old.bin", "-q")[0] == 0  # the column pastes into get
    assert Path("old.bin").read_bytes() == b"first"
    Path(".scalable/catalog.sqlite").unlink()  # a fresh catalog, rebuilt from the store: the same answers
    assert cli(capsys, "reindex", "artifacts", "-q")[0] == 0
    code, out, _ = cli(capsys, "find", "--name", "model.bin", "--all-versions", "--json")
    assert [r["version"] for r in json.loads(out)] == [1, 2, 3]
    code, out, _ = cli(capsys, "find", "--name", "model.bin", "--json")
    assert [r["version"] for r in json.loads(out)] == [3]


def test_reindex_rebuilds_from_a_store_and_the_runs_dir(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = record_run("artifacts", ["a.txt"])
    build_artifact_store("artifacts").put_bytes(b"loose", "inputs/loose.bin")
    before = Catalog().snapshot()
    code, out, err = cli(capsys, "reindex", "artifacts")
    assert (code, err) == (0, "")
    assert out.startswith("reindexed .scalable/catalog.sqlite: 1 run, 2 artifacts (1 recorded by runs, 1 not)")
    after = Catalog().snapshot()
    assert after["runs"] == before["runs"]
    assert next(a for a in after["artifacts"] if a not in before["artifacts"])[1] == "inputs/loose.bin"
    code, out, _ = cli(capsys, "reindex", "artifacts", "--runs-dir", "elsewhere", "--json")
    doc = json.loads(out)
    assert (code, doc["runs"], doc["recorded"], doc["unrecorded"]) == (0, 1, 1, 1)  # the store's telemetry copy
    assert cli(capsys, "reindex", "artifacts", "--quiet") == (0, "", "")
    assert Catalog().find(run=run_id)[0].name == "a.txt"


def test_reindex_a_missing_store_fails_in_one_line(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "reindex", "no-such-store")
    assert (code, out) == (1, "")
    assert err.startswith("error: no artifact store at") and err.count("\n") == 1


def test_reindex_an_s3_store(project: Path, capsys: pytest.CaptureFixture[str], s3_server: object) -> None:
    bucket = s3_server.shared_bucket()  # type: ignore[attr-defined]
    url = s3_server.url(bucket, uuid.uuid4().hex)  # type: ignore[attr-defined]
    options = s3_server.storage_options  # type: ignore[attr-defined]
    run_id = record_run(url, ["a.txt", "b.txt"], **options)
    Path("scalable.yaml").write_text(
        json.dumps(
            {
                "version": 1,
                "project": {"name": "t", "storage_options": {f"s3://{bucket}": options}},
            }
        )
    )
    fed = Catalog().snapshot()
    Path(".scalable/catalog.sqlite").unlink()
    code, out, err = cli(capsys, "reindex", url, "--runs-dir", "nowhere", "--json")
    assert (code, err) == (0, "")
    doc = json.loads(out)
    assert (doc["runs"], doc["recorded"], doc["unrecorded"]) == (1, 2, 0)
    assert Catalog().snapshot() == fed
    code, out, _ = cli(capsys, "runs", "show", run_id[:-1], "--json")
    assert [a["store"] for a in json.loads(out)["artifacts"]] == [url, url]


def test_a_damaged_catalog_is_rebuilt_with_one_warning(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = record_run("artifacts", ["a.txt"])
    Path(".scalable/catalog.sqlite").write_bytes(b"garbage" * 1000)
    code, out, err = cli(capsys, "runs", "list")
    assert code == 0 and run_id in out
    assert err.startswith("warning: the catalog .scalable/catalog.sqlite was damaged") and err.count("\n") == 1
    assert f"rebuilt it from {project}/.scalable/runs (1 runs, 1 artifacts)" in err
    assert cli(capsys, "runs", "list")[2] == ""  # repaired: no warning the second time


def test_the_catalog_turned_off_is_a_failure_that_says_so(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCALABLE_CATALOG", "off")
    code, _, err = cli(capsys, "runs", "list")
    assert code == 1
    assert err == "error: the catalog is turned off (SCALABLE_CATALOG=off): unset SCALABLE_CATALOG to use it\n"


def test_as_a_subprocess(project: Path) -> None:
    run_id = record_run("artifacts", ["a.txt"])
    env = {**os.environ, "SCALABLE_DIGEST_CACHE": "off"}

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "scalable", *argv], capture_output=True, text=True, env=env, timeout=120
        )

    listed = run("runs", "list", "--json")
    assert listed.returncode == 0 and [r["run_id"] for r in json.loads(listed.stdout)] == [run_id]
    missing = run("runs", "show", "nope")
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.startswith("error: no run 'nope'") and missing.stderr.count("\n") == 1
    reindexed = run("reindex", "artifacts")
    assert reindexed.returncode == 0 and "1 run, 1 artifact" in reindexed.stdout
