"""``scalable report RUN``: the path it prints, where it writes, --json, --quiet, and bad RUN values."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scalable import build_artifact_store
from scalable.cli.app import main
from tests.test_report import Dom, dump_dom, write_synthetic_run

RUN_ID = "20261124T010000Z-abc123"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder (the cwd) with one run of 5 tasks in .scalable/runs and an empty default store."""
    monkeypatch.chdir(tmp_path)
    for var in ("SCALABLE_MANIFEST", "SCALABLE_RUNS_DIR", "SCALABLE_DEFAULT_STORAGE", "SCALABLE_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    write_synthetic_run(tmp_path / ".scalable" / "runs" / RUN_ID, 5)
    return tmp_path


def test_report_by_prefix_writes_into_the_run_dir_and_prints_the_path(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "20261124T01"]) == 0
    out, err = capsys.readouterr()
    expected = project / ".scalable" / "runs" / RUN_ID / "report.html"
    assert out.splitlines()[-1] == str(expected)
    assert f"run {RUN_ID} (finished): 5 tasks, 0 failed, 3 artifacts" in out
    assert err == ""
    assert expected.read_text().startswith("<!DOCTYPE html>")


def test_output_option_quiet_and_json(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", RUN_ID, "-o", "out/r.html", "--quiet"]) == 0
    out, _ = capsys.readouterr()
    assert out == f"{project / 'out' / 'r.html'}\n"  # only the path: easy to use in a script
    assert main(["report", str(project / ".scalable" / "runs" / RUN_ID), "--json", "-o", "j.html"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["path"] == str(project / "j.html") and doc["run_id"] == RUN_ID
    assert doc["tasks"] == {"total": 5, "submitted": 5, "finished": 5, "failed": 0, "unfinished": 0}
    assert doc["cache"] == {"hits": 3, "misses": 2, "hit_rate": 0.6}
    assert doc["artifacts"] == 3 and doc["bytes"] == 111 and doc["notes"] == []


def test_skipped_lines_are_a_warning_not_a_failure(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with open(project / ".scalable" / "runs" / RUN_ID / "tasks.jsonl", "ab") as stream:
        stream.write(b'{"event": "task.fin')  # a writer killed mid-line
    assert main(["report", RUN_ID]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[-1].endswith("report.html")
    assert err == "warning: tasks.jsonl: skipped 1 unreadable line(s) (line 18)\n"
    assert main(["report", RUN_ID, "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_run_from_the_store_is_reported_into_the_cwd(
    project: Path, capsys: pytest.CaptureFixture[str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    other = tmp_path_factory.mktemp("other-machine")
    write_synthetic_run(other / "20261124T030000Z-remote", 4)
    store = build_artifact_store(project / "artifacts")  # the default store (./artifacts)
    for file in (other / "20261124T030000Z-remote").iterdir():
        store.put(file, f"runs/20261124T030000Z-remote/telemetry/{file.name}")
    assert main(["report", "20261124T03", "--quiet"]) == 0
    written = project / "report-20261124T030000Z-remote.html"
    assert capsys.readouterr().out == f"{written}\n"
    dom = Dom(dump_dom(written, project))
    assert len(dom.select("g", "task")) == 4 and dom.by_id("run-id").text == "20261124T030000Z-remote"


@pytest.mark.parametrize(
    ("run", "expected"),
    [
        ("nosuchrun", "error: no run 'nosuchrun': looked in runs directory"),
        ("2026", "error: run id prefix '2026' is ambiguous: it matches 2 runs in"),
        ("./not/a/dir", "error: no run './not/a/dir': looked in path not/a/dir (does not exist); runs directory"),
    ],
)
def test_bad_run_is_one_line_and_exit_1(
    project: Path, capsys: pytest.CaptureFixture[str], run: str, expected: str
) -> None:
    write_synthetic_run(project / ".scalable" / "runs" / "20261124T020000Z-def456", 1)
    assert main(["report", run]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(expected) and err.count("\n") == 1 and "Traceback" not in err


def test_unwritable_output_is_one_line_and_exit_1(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "a-file").write_text("not a folder")
    assert main(["report", RUN_ID, "-o", "a-file/report.html"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith(f"error: cannot write the report of run {RUN_ID} to {project / 'a-file' / 'report.html'}: ")
    assert err.rstrip().endswith("write it elsewhere (scalable report RUN -o FILE)")


def test_real_command_line(project: Path) -> None:
    env = {**os.environ, "SCALABLE_DIGEST_CACHE": "off"}
    ok = subprocess.run(
        [sys.executable, "-m", "scalable", "report", RUN_ID], cwd=project, capture_output=True, text=True, env=env
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[-1] == str(project / ".scalable" / "runs" / RUN_ID / "report.html")
    bad = subprocess.run(
        [sys.executable, "-m", "scalable", "report", "missing-run"],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.startswith("error: no run 'missing-run'") and bad.stderr.count("\n") == 1


def test_missing_argument_is_a_usage_error(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report"]) == 2
    assert "Missing argument 'RUN'" in capsys.readouterr().err
