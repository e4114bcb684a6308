"""Edges of the lineage graph and the one way each is made from a run's ``artifacts.jsonl``.

The graph has two kinds of node: an artifact's bytes, named by digest (``sha256:<hex>``),
and a task of a run, named ``task:<run_id>/<task>`` (``(driver)`` for what the run's
driver did outside tasks). An ``artifact.used`` event makes the edge digest -> task; an
``artifact.recorded`` event makes task -> digest. An input that could not be fetched has
no digest: its edge starts at ``missing:<store>#<key>``, so the graph shows it as such.
Each edge keeps the run, the task, the artifact's store and key, how it was read or
written (``via``), and an input's error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from pydantic import ValidationError

from scalable.catalog.rows import store_of
from scalable.telemetry.events import parse_event

#: The name of the task node for what a run's driver did outside any task.
DRIVER = "(driver)"
TASK_PREFIX = "task:"
MISSING_PREFIX = "missing:"


def task_node(run_id: str, task: str | None) -> str:
    """The node id of ``task`` in ``run_id``."""
    return f"{TASK_PREFIX}{run_id}/{task or DRIVER}"


class EdgeRow(NamedTuple):
    """One edge: ``src`` -> ``dst``, in ``run_id``'s ``task``, of the artifact at ``store``/``key``."""

    src: str
    dst: str
    run_id: str
    task: str | None
    store: str | None
    key: str | None
    via: str
    error: str | None = None

    def as_tuple(self) -> tuple[Any, ...]:
        """The values in :data:`scalable.catalog.schema.EDGE_COLUMNS` order."""
        return tuple(self)


def edge_row_from_recorded(doc: Mapping[str, Any]) -> EdgeRow | None:
    """task -> digest, from an ``artifact.recorded`` event (``None`` without a run)."""
    run_id = doc.get("run_id")
    if not run_id:
        return None
    key = str(doc["key"])
    return EdgeRow(
        src=task_node(str(run_id), doc.get("task")),
        dst=str(doc["digest"]),
        run_id=str(run_id),
        task=doc.get("task"),
        store=store_of(str(doc["uri"]), key),
        key=key,
        via="recorded",
    )


def edge_row_from_used(doc: Mapping[str, Any]) -> EdgeRow | None:
    """digest -> task, from an ``artifact.used`` event (``None`` without a run)."""
    run_id = doc.get("run_id")
    if not run_id:
        return None
    store = doc.get("store")
    key = doc.get("key")
    if key is None and store is None:
        key = doc.get("uri")  # a local path passed to a cached function
    digest = doc.get("digest")
    src = str(digest) if digest else f"{MISSING_PREFIX}{store or ''}#{key or ''}"
    return EdgeRow(
        src=src,
        dst=task_node(str(run_id), doc.get("task")),
        run_id=str(run_id),
        task=doc.get("task"),
        store=store,
        key=key,
        via=str(doc.get("via") or "used"),
        error=doc.get("error"),
    )


def edge_rows(lines: bytes) -> tuple[list[EdgeRow], int]:
    """The edges of the ``artifact.used`` and ``artifact.recorded`` events in an ``artifacts.jsonl``, and lines skipped.

    A torn or invalid line is skipped (and counted), never raised: a run killed mid-way
    leaves the graph of what it recorded.
    """
    rows: list[EdgeRow] = []
    skipped = 0
    for raw in lines.splitlines():
        if b'"artifact.used"' not in raw and b'"artifact.recorded"' not in raw:
            continue
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict):
                raise ValueError("not an object")
            kind = doc.get("event")
            if kind not in ("artifact.used", "artifact.recorded"):
                continue
            parse_event(doc)
            row = edge_row_from_used(doc) if kind == "artifact.used" else edge_row_from_recorded(doc)
        except (ValueError, ValidationError, KeyError, TypeError):
            skipped += 1
            continue
        if row is not None:
            rows.append(row)
    return rows, skipped


__all__ = [
    "DRIVER",
    "MISSING_PREFIX",
    "TASK_PREFIX",
    "EdgeRow",
    "edge_row_from_recorded",
    "edge_row_from_used",
    "edge_rows",
    "task_node",
]
