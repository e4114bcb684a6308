"""Rows of the catalog and the one way each is made from its source.

A row is made by exactly one function from exactly one source, so a catalog fed by
sessions and a catalog rebuilt from the same stores and run directories hold the same
rows: :func:`artifact_row_from_event` turns an ``artifact.recorded`` event (as written to
``artifacts.jsonl``, secrets redacted) into a recorded row; :func:`artifact_row_from_ref`
turns a committed :class:`~scalable.artifacts.ref.ArtifactRef` that no run recorded into a
row with ``run_id`` ``None``; :func:`run_row_from_docs` turns ``run.json`` and
``summary.json`` into a run row.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NamedTuple

from scalable.artifacts.ref import ArtifactRef


def iso_utc(value: datetime | str) -> str:
    """``value`` as the catalog writes every time: ISO 8601, UTC, microseconds (sorts as text)."""
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds")


def store_of(uri: str, key: str) -> str:
    """The store URI of an artifact whose URI is ``uri`` and key ``key`` (``<store>/<key>``)."""
    from scalable.artifacts.uris import encode_key

    for suffix in ("/" + encode_key(key), "/" + key):  # ref.uri percent-encodes '#', '%', '?' and '@'
        if uri.endswith(suffix):
            return uri[: -len(suffix)]
    return uri


def _metadata_text(metadata: Mapping[str, Any] | None) -> str:
    return json.dumps(dict(metadata or {}), sort_keys=True, separators=(",", ":"), default=str)


class ArtifactRow(NamedTuple):
    """One artifact in the catalog: where it is, its bytes' digest and size, and who recorded it.

    ``kind`` is the role the run gave it (``result``, ``input``, ``log``, ...; ``None`` when
    no run recorded it), ``artifact_kind`` what it holds (``file``, ``dir``, ``blob``).
    ``created_at`` is when it was recorded (for a recorded row) or committed (otherwise),
    as ISO 8601 UTC text; ``metadata`` is JSON text; ``version`` the version of ``key``
    it is (``None`` for a recording made before stores kept versions). A named tuple, because a query can
    return thousands and a tuple is the cheapest immutable row to build.
    """

    store: str
    key: str
    uri: str
    kind: str | None
    artifact_kind: str | None
    digest: str
    size_bytes: int
    created_at: str
    run_id: str | None
    task: str | None
    name: str | None
    metadata: str = "{}"
    version: int | None = None

    def as_tuple(self) -> tuple[Any, ...]:
        """The values in :data:`scalable.catalog.schema.ARTIFACT_COLUMNS` order."""
        return tuple(self)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``metadata`` parsed back into an object)."""
        doc = self._asdict()
        doc["metadata"] = json.loads(self.metadata)
        return doc


def artifact_row_from_event(doc: Mapping[str, Any]) -> ArtifactRow:
    """The recorded row of an ``artifact.recorded`` event, given as the JSON object of its line."""
    key = str(doc["key"])
    uri = str(doc["uri"])
    return ArtifactRow(
        store=store_of(uri, key),
        key=key,
        uri=uri,
        kind=doc.get("kind"),
        artifact_kind=doc.get("artifact_kind"),
        digest=str(doc["digest"]),
        size_bytes=int(doc["size_bytes"]),
        created_at=iso_utc(doc["timestamp"]),
        run_id=doc.get("run_id"),
        task=doc.get("task"),
        name=doc.get("name"),
        metadata=_metadata_text(doc.get("metadata")),
        version=None if doc.get("version") is None else int(doc["version"]),
    )


def artifact_row_from_ref(ref: ArtifactRef, store: str) -> ArtifactRow:
    """The row of a committed artifact that no run recorded (``run_id`` ``None``, named by its last key segment)."""
    return ArtifactRow(
        store=store,
        key=ref.key,
        uri=ref.uri,
        kind=None,
        artifact_kind=str(ref.kind),
        digest=ref.digest,
        size_bytes=ref.size_bytes,
        created_at=iso_utc(ref.created_at),
        run_id=None,
        task=None,
        name=ref.key.rpartition("/")[2],
        metadata=_metadata_text(ref.metadata),
        version=ref.version,
    )


@dataclass(frozen=True)
class RunRow:
    """One run: its ``run.json`` fields the queries use, and both documents whole."""

    run_id: str
    status: str | None
    started_at: str | None
    ended_at: str | None
    target: str | None
    store: str | None
    host: str | None
    user: str | None
    git_commit: str | None
    tasks: int | None
    cache_hit_rate: float | None
    run_json: str
    summary_json: str | None

    def as_tuple(self) -> tuple[Any, ...]:
        """The values in :data:`scalable.catalog.schema.RUN_COLUMNS` order."""
        return tuple(getattr(self, name) for name in self.__dataclass_fields__)

    @property
    def run(self) -> dict[str, Any]:
        """``run.json`` as a dict."""
        return dict(json.loads(self.run_json))

    @property
    def summary(self) -> dict[str, Any] | None:
        """``summary.json`` as a dict (``None`` while the run has not closed)."""
        return None if self.summary_json is None else dict(json.loads(self.summary_json))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with ``run`` and ``summary`` as objects."""
        doc = {name: getattr(self, name) for name in self.__dataclass_fields__ if not name.endswith("_json")}
        doc["run"] = self.run
        doc["summary"] = self.summary
        return doc


def _opt_time(value: Any) -> str | None:
    if not value:
        return None
    try:
        return iso_utc(str(value))
    except ValueError:
        return None


def run_row_from_docs(run: Mapping[str, Any], summary: Mapping[str, Any] | None) -> RunRow:
    """The row of a run from its ``run.json`` (required) and ``summary.json`` (``None`` while it runs)."""
    target = run.get("target")
    target_name = target.get("name") if isinstance(target, Mapping) else target
    tasks = hit_rate = None
    if summary is not None:
        submitted = (summary.get("tasks") or {}).get("submitted")
        tasks = int(submitted) if submitted is not None else None
        rate = (summary.get("cache") or {}).get("hit_rate")
        hit_rate = float(rate) if rate is not None else None
    return RunRow(
        run_id=str(run["run_id"]),
        status=run.get("status"),
        started_at=_opt_time(run.get("started_at")),
        ended_at=_opt_time(run.get("ended_at")),
        target=None if target_name is None else str(target_name),
        store=run.get("store"),
        host=run.get("host"),
        user=run.get("user"),
        git_commit=run.get("git_commit"),
        tasks=tasks,
        cache_hit_rate=hit_rate,
        run_json=json.dumps(dict(run), sort_keys=True, separators=(",", ":"), default=str),
        summary_json=None
        if summary is None
        else json.dumps(dict(summary), sort_keys=True, separators=(",", ":"), default=str),
    )


__all__ = [
    "ArtifactRow",
    "RunRow",
    "artifact_row_from_event",
    "artifact_row_from_ref",
    "iso_utc",
    "run_row_from_docs",
    "store_of",
]
