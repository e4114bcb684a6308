"""pytest plugin: no known test secret may appear in any test's output or run records.

The secrets are the test servers' credentials (SeaweedFS's secret keys, Azurite's account
key) and the canary that the secrets tests inject through URIs, storage options and the
environment (``tests/reliability/_helpers_f.py``); ``SCALABLE_TEST_SECRETS`` (comma-separated)
adds more. After each test, its captured stdout, stderr and log records, and every
``run.json``, ``summary.json`` and ``*.jsonl`` under its ``tmp_path``, are searched: a hit
fails the test (at teardown) and says where, without printing the secret. At the end of
the session the same files anywhere under pytest's base temp dir are searched once more
(directories from ``tmp_path_factory``), and a hit fails the run.

Only test *output* is searched, never the servers' own config (their credentials belong
there) nor a failing test's traceback (pytest's, not scalable's). Disable with
``-p no:tests.secret_scan``.
"""

from __future__ import annotations

import inspect
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability._helpers_f import CANARY_KEY, CANARY_SECRET
from tests.servers.azurite import ACCOUNT_KEY
from tests.servers.seaweedfs import SeaweedFS

#: Files a run writes whose content must be free of secrets.
RECORD_NAMES = ("run.json", "summary.json")
RECORD_SUFFIXES = (".jsonl",)
EXTRA_ENV = "SCALABLE_TEST_SECRETS"


def _known_secrets() -> dict[str, str]:
    """Secret -> a name to report it by (the value itself is never printed)."""
    defaults = inspect.signature(SeaweedFS.__init__).parameters
    found = {
        str(defaults["secret_key"].default): "the SeaweedFS test secret key",
        str(defaults["readonly_secret_key"].default): "the SeaweedFS read-only secret key",
        ACCOUNT_KEY: "the Azurite account key",
        CANARY_SECRET: "the canary secret",
        CANARY_KEY: "the canary access key",
    }
    for i, extra in enumerate(os.environ.get(EXTRA_ENV, "").split(",")):
        if extra.strip():
            found[extra.strip()] = f"${EXTRA_ENV} secret #{i + 1}"
    return found


SECRETS = _known_secrets()
_PATTERN = re.compile("|".join(re.escape(s) for s in sorted(SECRETS, key=len, reverse=True)))
_PATTERN_BYTES = re.compile(_PATTERN.pattern.encode("utf-8"))


def find_in_text(text: str) -> list[str]:
    """The names of the secrets in ``text``, in order of first appearance."""
    return list(dict.fromkeys(SECRETS[m.group(0)] for m in _PATTERN.finditer(text)))


def _record_files(folder: Path) -> Iterator[Path]:
    for dirpath, _dirnames, filenames in os.walk(folder):
        for name in filenames:
            if name in RECORD_NAMES or name.endswith(RECORD_SUFFIXES):
                _stats["files"] += 1
                yield Path(dirpath) / name


def find_in_files(folder: Path) -> list[str]:
    """``"<file>: <secret name>"`` for each run record under ``folder`` that holds a secret."""
    hits = []
    for path in _record_files(folder):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        names = {SECRETS[m.group(0).decode("utf-8")] for m in _PATTERN_BYTES.finditer(data)}
        hits.extend(f"{path}: {name}" for name in sorted(names))
    return hits


def _leaks(item: pytest.Item, report: pytest.TestReport) -> list[str]:
    found = []
    for title, content in report.sections:  # captured stdout/stderr/log of setup, call and teardown
        found.extend(f"{title}: {name}" for name in find_in_text(content))
    tmp = getattr(item, "funcargs", {}).get("tmp_path")
    if isinstance(tmp, Path) and tmp.is_dir():
        found.extend(find_in_files(tmp))
    return found


def _mask(report: pytest.TestReport) -> None:
    """Replace any secret in the captured output pytest is about to show (``-rA``, a failure) by ``***``."""
    if any(_PATTERN.search(content) for _, content in report.sections):
        report.sections = [(title, _PATTERN.sub("***", content)) for title, content in report.sections]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    began = time.perf_counter()
    report: pytest.TestReport = outcome.get_result()
    try:
        if report.when != "teardown":
            _mask(report)
            return
        _stats["tests"] += 1
        leaks = _leaks(item, report)
        _mask(report)
    finally:
        _stats["seconds"] += time.perf_counter() - began
    if leaks:
        report.outcome = "failed"
        report.longrepr = "a known test secret leaked into the test's output or run records:\n  " + "\n  ".join(leaks)


_session_leaks: list[str] = []
#: What the scan cost: tests and files searched, seconds spent (shown in the terminal summary).
_stats = {"tests": 0, "files": 0, "seconds": 0.0}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    factory = getattr(session.config, "_tmp_path_factory", None)
    base = getattr(factory, "_basetemp", None)
    if base is None or not Path(base).is_dir():
        return
    began = time.perf_counter()
    _session_leaks.extend(find_in_files(Path(base)))
    _stats["seconds"] += time.perf_counter() - began
    if _session_leaks and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _stats["tests"]:
        terminalreporter.write_line(
            f"secret scan: {_stats['tests']} tests and {_stats['files']} run records searched "
            f"in {_stats['seconds']:.2f} s"
        )
    if _session_leaks:
        terminalreporter.section("secret scan: FAILED", red=True)
        terminalreporter.write_line("a known test secret is in run records written by the tests:")
        for line in _session_leaks:
            terminalreporter.write_line(f"  {line}")
