"""Reading what the catalog is derived from: run directories, and a store's refs and copied telemetry.

A run's telemetry is the same whether it is read from its local run directory
(``<runs dir>/<run_id>/``) or from the copy a closed session leaves in its store
(``runs/<run_id>/telemetry/``): ``run.json``, ``summary.json`` and ``artifacts.jsonl``.
Lines of ``artifacts.jsonl`` that are torn or not valid events are skipped and counted,
as :func:`scalable.telemetry.read_events` does.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from scalable.artifacts.base import ArtifactStore
from scalable.artifacts.local import LocalArtifactStore
from scalable.artifacts.ref import ArtifactRef
from scalable.artifacts.store import RECORD_FORMAT, REFS, RefRecord
from scalable.catalog.rows import ArtifactRow, RunRow, artifact_row_from_event, iso_utc, run_row_from_docs
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
    return RunTelemetry(row, rows, skipped)


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


@dataclass(frozen=True)
class RefEntry:
    """What the catalog keeps of a committed ref (the fields of :class:`ArtifactRef`, times as text)."""

    key: str
    uri: str
    kind: str
    digest: str
    size_bytes: int
    created_at: str
    metadata: dict[str, Any]

    @classmethod
    def from_ref(cls, ref: ArtifactRef) -> RefEntry:
        return cls(
            ref.key, ref.uri, str(ref.kind), ref.digest, ref.size_bytes, iso_utc(ref.created_at), dict(ref.metadata)
        )


def iter_store_refs(store: ArtifactStore) -> Iterator[RefEntry]:
    """Every committed ref in ``store``, in key order.

    A local store's ref records are read straight from ``<root>/.scalable/refs/`` (the
    layout ``docs/design.md`` fixes) and parsed without building an ``ArtifactRef``: the
    walk does not follow symlinks, so the store's per-path symlink check (a ``realpath``
    per read) is not needed, and a record that does not look right goes through
    ``RefRecord.from_bytes``, which validates it fully (and names a damaged one). These
    two costs were most of the time of a 100,000-ref rebuild. Other stores use ``iter_refs``.
    """
    if isinstance(store, LocalArtifactStore):
        yield from _local_refs(store)
    else:
        for ref in store.iter_refs(""):
            yield RefEntry.from_ref(ref)


def _walk_files(folder: str, prefix: str, out: list[str]) -> None:
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if entry.is_symlink():
            continue
        if entry.is_dir():
            _walk_files(entry.path, f"{prefix}{entry.name}/", out)
        elif entry.is_file():
            out.append(prefix + entry.name)


_SHA256 = re.compile(r"sha256:[0-9a-f]{64}")
_KINDS = frozenset(("file", "dir", "blob"))


def _fast_entry(data: bytes, key: str) -> RefEntry | None:
    """The entry of a well-formed ref record of ``key``; ``None`` if anything is off (the slow path decides)."""
    try:
        doc = json.loads(data)
        ref = doc["ref"]
        if doc.get("format") != RECORD_FORMAT or ref.get("key") != key or set(ref) - _REF_FIELDS:
            return None
        digest, size, kind, meta = ref["digest"], ref["size_bytes"], ref["kind"], ref.get("metadata", {})
        if (
            _SHA256.fullmatch(digest) is None
            or type(size) is not int
            or size < 0
            or kind not in _KINDS
            or not isinstance(meta, dict)
            or not isinstance(ref["uri"], str)
        ):
            return None
        return RefEntry(key, ref["uri"], kind, digest, size, iso_utc(ref["created_at"]), meta)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


_REF_FIELDS = frozenset(("uri", "key", "kind", "digest", "size_bytes", "created_at", "metadata"))


def _local_refs(store: LocalArtifactStore) -> Iterator[RefEntry]:
    base = os.path.join(store.root, REFS)
    keys: list[str] = []
    _walk_files(base, "", keys)
    keys.sort()
    for key in keys:
        try:
            with open(os.path.join(base, key), "rb") as f:
                data = f.read()
        except FileNotFoundError:  # deleted since the walk
            continue
        entry = _fast_entry(data, key)
        yield entry if entry is not None else RefEntry.from_ref(RefRecord.from_bytes(data, key, store.uri).ref)


__all__ = [
    "RefEntry",
    "RunTelemetry",
    "iter_run_dirs",
    "iter_store_refs",
    "read_run_dir",
    "read_store_telemetry",
    "recorded_rows",
    "telemetry_from_docs",
    "telemetry_key",
]
