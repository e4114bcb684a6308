"""Rebuilding the catalog from its sources: stores' committed refs and runs' telemetry.

The rows a rebuild makes are the rows sessions add as they record, by the same functions
(:mod:`scalable.catalog.rows`), merged by the same rules the catalog's inserts apply:

- one recorded row per (store, key, version, digest, run); of several recordings, the
  earliest (then the smallest task, name, kind and metadata, so ties too are decided the
  same way);
- every retained version of every key (``store.iter_versions()``: one listing) that no run
  recorded (same store, key, version and digest, or a recording without a version of the
  same bytes) gets a row with ``run_id`` ``None``; a ref under ``runs/<id>/telemetry/`` is a run's telemetry and
  feeds the ``runs`` table instead;
- a run found in several places (its run directory and its store's copy) takes the most
  finished copy: one with an end time, then one with a summary, then the local one.

Recorded rows stay when their bytes were later overwritten or deleted: the catalog says
which runs produced what, so "which runs produced this digest" still answers after the
key moved on. What a store holds now is ``store.list_artifacts()``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scalable.artifacts.base import ArtifactStore
from scalable.artifacts.ref import ArtifactRef
from scalable.catalog.lineage_rows import EdgeRow
from scalable.catalog.rows import ArtifactRow, RunRow, artifact_row_from_ref
from scalable.catalog.sources import (
    RunTelemetry,
    iter_run_dirs,
    read_run_dir,
    read_store_telemetry,
    telemetry_key,
)


def _edge_order(row: EdgeRow) -> tuple[str, ...]:
    return tuple("" if v is None else str(v) for v in row)


def recording_rank(row: ArtifactRow) -> tuple[Any, ...]:
    """Which of two recordings of the same identity the catalog keeps: the smaller."""
    return (row.created_at, row.task or "", row.name or "", row.kind or "", row.metadata)


def run_rank(row: RunRow, local: bool) -> tuple[bool, bool, bool]:
    """Which copy of a run's telemetry wins: the larger (ended, summarized, local)."""
    return (row.ended_at is not None, row.summary_json is not None, local)


@dataclass
class RebuildReport:
    """What a rebuild read and wrote."""

    stores: list[str] = field(default_factory=list)
    runs_dirs: list[str] = field(default_factory=list)
    refs: int = 0
    runs: int = 0
    recorded: int = 0
    unrecorded: int = 0
    skipped_lines: int = 0
    seconds: float = 0.0
    edges: int = 0
    #: The lineage edges found (not part of :meth:`to_dict`).
    edge_rows: list[EdgeRow] = field(default_factory=list, repr=False)

    @property
    def artifacts(self) -> int:
        """Rows in the ``artifacts`` table after the rebuild."""
        return self.recorded + self.unrecorded

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "stores": self.stores,
            "runs_dirs": self.runs_dirs,
            "refs": self.refs,
            "runs": self.runs,
            "artifacts": self.artifacts,
            "recorded": self.recorded,
            "unrecorded": self.unrecorded,
            "skipped_lines": self.skipped_lines,
            "edges": self.edges,
            "seconds": round(self.seconds, 3),
        }


class _Merge:
    def __init__(self) -> None:
        self.recorded: dict[tuple[str, str, str, int | None, str | None], ArtifactRow] = {}
        self.runs: dict[str, tuple[tuple[bool, bool, bool], RunRow]] = {}
        self.edges: set[EdgeRow] = set()
        self.skipped = 0

    def add_telemetry(self, telemetry: RunTelemetry, *, local: bool) -> None:
        self.skipped += telemetry.skipped
        self.edges.update(telemetry.edges)
        if telemetry.run is not None:
            rank = run_rank(telemetry.run, local)
            held = self.runs.get(telemetry.run.run_id)
            if held is None or rank > held[0]:
                self.runs[telemetry.run.run_id] = (rank, telemetry.run)
        for row in telemetry.artifacts:
            ident = (row.store, row.key, row.digest, row.version, row.run_id)
            held_row = self.recorded.get(ident)
            if held_row is None or recording_rank(row) < recording_rank(held_row):
                self.recorded[ident] = row


def _retained_versions(store: ArtifactStore) -> Iterator[ArtifactRef]:
    """Every retained version of every key of ``store`` (a store without versions: each key's current ref)."""
    iter_versions = getattr(store, "iter_versions", None)
    return iter_versions("") if iter_versions is not None else store.iter_refs("")


def collect(
    stores: Sequence[ArtifactStore], runs_dirs: Iterable[str | Path]
) -> tuple[list[ArtifactRow], list[RunRow], RebuildReport]:
    """Every artifact and run row the catalog holds when derived from ``stores`` and ``runs_dirs``.

    The lineage edges found on the way are in ``report.edge_rows``.
    """
    started = time.perf_counter()
    report = RebuildReport()
    merge = _Merge()
    unrecorded_refs = []
    for store in stores:
        report.stores.append(store.uri)
        telemetry: dict[str, dict[str, str]] = {}
        for ref in _retained_versions(store):
            report.refs += 1
            found = telemetry_key(ref.key)
            if found is not None:
                telemetry.setdefault(found[0], {})[found[1]] = ref.key
            else:
                unrecorded_refs.append((ref, store.uri))
        for run in read_store_telemetry(store, telemetry):
            merge.add_telemetry(run, local=False)
    for runs_dir in runs_dirs:
        path = Path(runs_dir).expanduser()
        report.runs_dirs.append(str(path))
        for run_dir in iter_run_dirs(path):
            merge.add_telemetry(read_run_dir(run_dir), local=True)
    # A recording of a version stands for it; one without a version (from before versions) for every version
    # with its bytes: as Catalog.add_artifacts decides.
    recorded_idents = {(s, k, d, v) for (s, k, d, v, _run) in merge.recorded}
    artifacts = list(merge.recorded.values())
    report.recorded = len(artifacts)
    for ref, store_uri in unrecorded_refs:
        ident = (store_uri, ref.key, ref.digest)
        if (*ident, ref.version) not in recorded_idents and (*ident, None) not in recorded_idents:
            artifacts.append(artifact_row_from_ref(ref, store_uri))
    report.unrecorded = len(artifacts) - report.recorded
    runs = [row for _rank, row in merge.runs.values()]
    report.runs = len(runs)
    report.skipped_lines = merge.skipped
    report.edge_rows = sorted(merge.edges, key=_edge_order)
    report.edges = len(report.edge_rows)
    report.seconds = time.perf_counter() - started
    return artifacts, runs, report


__all__ = ["RebuildReport", "collect", "recording_rank", "run_rank"]
