"""The reliability suite: crashes, concurrency, corruption, hostile input, secrets, faults.

``make test`` runs it with modest counts; ``make stress`` sets ``SCALABLE_STRESS=1`` and runs
it with the counts the issue names, then prints one table: per area, the trials run, the
failures found, and the artifacts lost or corrupt (which must be zero).

A test asks for its count with ``trials(fast, stress)`` and reports what it saw with
``tally.add(area, trials=..., failures=..., lost=...)``; a test that finds a failure also
fails, so the table and the pass/fail agree.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

STRESS = os.environ.get("SCALABLE_STRESS", "") not in ("", "0")


def trials(fast: int, stress: int) -> int:
    """The number of trials: ``fast`` in ``make test``, ``stress`` in ``make stress``."""
    return stress if STRESS else fast


@dataclass
class Tally:
    """Figures per area, summed over the tests that report them."""

    rows: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))

    def add(self, area: str, *, trials: int, failures: int = 0, lost: int = 0) -> None:
        """Count ``trials`` run in ``area``, the ``failures`` found, and artifacts ``lost`` or corrupt."""
        row = self.rows[area]
        row["trials"] += trials
        row["failures"] += failures
        row["lost"] += lost


_TALLY = Tally()


@pytest.fixture
def tally() -> Tally:
    return _TALLY


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _TALLY.rows:
        return
    tr = terminalreporter
    mode = "stress" if STRESS else "fast"
    tr.section(f"reliability figures ({mode} counts)")
    width = max(len(a) for a in _TALLY.rows) + 2
    tr.write_line(f"{'area':<{width}}{'trials':>10}{'failures':>10}{'lost or corrupt':>17}")
    total = defaultdict(int)
    for area in sorted(_TALLY.rows):
        row = _TALLY.rows[area]
        for k in ("trials", "failures", "lost"):
            total[k] += row[k]
        tr.write_line(f"{area:<{width}}{row['trials']:>10}{row['failures']:>10}{row['lost']:>17}")
    tr.write_line(f"{'total':<{width}}{total['trials']:>10}{total['failures']:>10}{total['lost']:>17}")
    out = os.environ.get("SCALABLE_STRESS_REPORT")
    if out:
        Path(out).write_text(json.dumps({k: dict(v) for k, v in _TALLY.rows.items()}, indent=2) + "\n")
