"""Reading what the catalog is derived from: run directories, and a store's refs and copied telemetry.

A run's telemetry is the same whether it is read from its local run directory
(``<runs dir>/<run_id>/``) or from the copy a closed session leaves in its store
(``runs/<run_id>/telemetry/``): ``run.json``, ``summary.json`` and ``artifacts.jsonl``.
Lines of ``artifacts.jsonl`` that are torn or not valid events are skipped and counted,
as :func:`scalable.telemetry.read_events` does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from scalable.artifacts.base import ArtifactStore
from scalable.catalog.lineage_rows import EdgeRow, edge_rows
from scalable.catalog.rows import ArtifactRow, RunRow, artifact_row_from_event, run_row_from_docs
from scalable.telemetry.events import parse_event

RUN_JSON = "run.json"
SUMMARY_JSON = "summary.json"
ARTIFACTS_JSONL = "artifacts.jsonl"
#: Where a closed session copies its telemetry in its store: ``runs/<run_id>/telemetry/<name>``.
TELEMETRY_DIR = "telemetry"


@dataclass
class RunTelemetry:
    """One run's telemetry as read from one place: its row, its recorded artifacts, lines skipped."""

    run: RunRow | None
    artifacts: list[ArtifactRow] = field(default_factory=list)
    skipped: int = 0
    #: The lineage edges of its ``artifact.used`` and ``artifact.recorded`` events.
    edges: list[EdgeRow] = field(default_factory=list)


def recorded_rows(lines: bytes) -> tuple[list[ArtifactRow], int]:
    """The rows of the ``artifact.recorded`` events in the bytes of an ``artifacts.jsonl``, and lines skipped."""
    rows: list[ArtifactRow] = []
    skipped = 0
    for raw in lines.splitlines():
        if not raw.strip():
            continue
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict):
                raise ValueError("not an object")
            if doc.get("event") != "artifact.recorded":
                continue
            parse_event(doc)  # the same validity rule as the telemetry reader
            rows.append(artifact_row_from_event(doc))
        except (ValueError, ValidationError, KeyError, TypeError):
            skipped += 1
    return rows, skipped


def _json_doc(data: bytes | None) -> dict[str, Any] | None:
    if data is None:
        return None
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def telemetry_from_docs(run: bytes | None, summary: bytes | None, artifacts: bytes | None) -> RunTelemetry:
    """A run's telemetry from the bytes of its three files (any may be missing)."""
    run_doc = _json_doc(run)
    row = run_row_from_docs(run_doc, _json_doc(summary)) if run_doc and "run_id" in run_doc else None
    rows, skipped = recorded_rows(artifacts or b"")
    edges, _ = edge_rows(artifacts or b"")  # its skipped lines are the ones recorded_rows counted
    return RunTelemetry(row, rows, skipped, edges)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None


def read_run_dir(run_dir: Path) -> RunTelemetry:
    """The telemetry in a local run directory."""
    return telemetry_from_docs(
        _read(run_dir / RUN_JSON), _read(run_dir / SUMMARY_JSON), _read(run_dir / ARTIFACTS_JSONL)
    )


def iter_run_dirs(runs_dir: Path) -> Iterator[Path]:
    """The run directories in ``runs_dir`` (those holding a ``run.json``), in name order."""
    if not runs_dir.is_dir():
        return
    for child in sorted(runs_dir.iterdir()):
        if (child / RUN_JSON).is_file():
            yield child


def telemetry_key(key: str) -> tuple[str, str] | None:
    """``(run_id, file name)`` if ``key`` is a run's copied telemetry (``runs/<id>/telemetry/<name>``)."""
    parts = key.split("/")
    if len(parts) == 4 and parts[0] == "runs" and parts[2] == TELEMETRY_DIR:
        return parts[1], parts[3]
    return None


def read_store_telemetry(store: ArtifactStore, files: dict[str, dict[str, str]]) -> Iterator[RunTelemetry]:
    """The telemetry of each run in ``files`` (run id -> file name -> key), read from ``store``."""
    for run_id in sorted(files):
        names = files[run_id]

        def get(name: str, names: dict[str, str] = names) -> bytes | None:
            key = names.get(name)
            return store.get_bytes(key) if key is not None else None

        yield telemetry_from_docs(get(RUN_JSON), get(SUMMARY_JSON), get(ARTIFACTS_JSONL))


__all__ = [
    "RunTelemetry",
    "iter_run_dirs",
    "read_run_dir",
    "read_store_telemetry",
    "recorded_rows",
    "telemetry_from_docs",
    "telemetry_key",
]
