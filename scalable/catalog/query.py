"""The catalog's queries as SQL: artifacts by run, task, kind, name pattern, digest and time, and runs by id.

Each filter maps to an indexed column (see :mod:`scalable.catalog.schema`), so a query over
a million rows reads only the rows it returns. A name pattern is a glob (``*``, ``?``,
``[...]``, case-sensitive); one that starts with literal characters is answered from the
name index, one that starts with ``*`` scans the table.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from scalable.catalog.rows import ArtifactRow, RunRow, iso_utc
from scalable.catalog.schema import ARTIFACT_COLUMNS, RUN_COLUMNS
from scalable.errors import CatalogError, RunNotFoundError
from scalable.telemetry.runids import SHOWN_CANDIDATES, pick_run_id

_ARTIFACT_SELECT = "SELECT " + ", ".join(ARTIFACT_COLUMNS) + " FROM artifacts"
_RUN_SELECT = "SELECT " + ", ".join(RUN_COLUMNS) + " FROM runs"
#: A row is its key's latest when no row of the same store and key has a higher version (a
#: missing version counts as 0: telemetry from before versions is latest until a versioned row exists).
#: Answered from the identity index, which leads with (store, key, ifnull(version, 0)).
_MAX_VERSION = "SELECT max(ifnull(b.version, 0)) FROM artifacts b WHERE b.store = ? AND b.key = ?"
_IS_LATEST = (
    "ifnull(version, 0) = (SELECT max(ifnull(b.version, 0)) FROM artifacts b "
    "WHERE b.store = artifacts.store AND b.key = artifacts.key)"
)


def normalize_digest(digest: str) -> str:
    """``sha256:<hex>`` from either that or the bare hex digest."""
    digest = digest.strip().lower()
    return digest if ":" in digest else f"sha256:{digest}"


def _time_bound(value: datetime | str, name: str) -> str:
    try:
        return iso_utc(value)
    except (TypeError, ValueError):
        raise CatalogError(
            f"{name}={value!r} is not a time: give an ISO 8601 date or time, e.g. 2026-11-24 or 2026-11-24T10:00Z"
        ) from None


def find_artifacts(
    conn: sqlite3.Connection,
    *,
    run: str | None = None,
    task: str | None = None,
    kind: str | None = None,
    name: str | None = None,
    digest: str | None = None,
    store: str | None = None,
    key: str | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    limit: int | None = None,
    latest_only: bool = False,
) -> list[ArtifactRow]:
    """Artifacts matching every filter given, oldest first (then by store and key); ``latest_only``: keys' latest."""
    where: list[str] = []
    args: list[Any] = []
    if latest_only:
        where.append(_IS_LATEST)
    for column, value in (("run_id", run), ("task", task), ("kind", kind), ("store", store), ("key", key)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if digest is not None:
        where.append("digest = ?")
        args.append(normalize_digest(digest))
    if name is not None:
        where.append("name GLOB ?")
        args.append(name)
    if since is not None:
        where.append("created_at >= ?")
        args.append(_time_bound(since, "since"))
    if until is not None:
        where.append("created_at < ?")
        args.append(_time_bound(until, "until"))
    sql = _ARTIFACT_SELECT
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at, store, key, ifnull(run_id, '')"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(int(limit))
    return [ArtifactRow(*row) for row in conn.execute(sql, args)]


def latest_version(conn: sqlite3.Connection, store: str, key: str) -> int | None:
    """The highest version of ``key`` in ``store`` the catalog holds (``None`` if none has a number)."""
    row = conn.execute(_MAX_VERSION, (store, key)).fetchone()
    return int(row[0]) if row and row[0] else None


def runs_for_digest(conn: sqlite3.Connection, digest: str) -> list[str]:
    """The ids of the runs that recorded bytes with ``digest``, oldest recording first."""
    rows = conn.execute(
        "SELECT run_id, min(created_at) AS first FROM artifacts WHERE digest = ? AND run_id IS NOT NULL "
        "GROUP BY run_id ORDER BY first, run_id",
        (normalize_digest(digest),),
    )
    return [row[0] for row in rows]


def list_runs(conn: sqlite3.Connection, *, limit: int | None = None) -> list[tuple[RunRow, int]]:
    """Runs, newest first, each with how many artifacts it recorded."""
    sql = (
        "SELECT "
        + ", ".join(f"r.{c}" for c in RUN_COLUMNS)
        + ", (SELECT count(*) FROM artifacts a WHERE a.run_id = r.run_id) FROM runs r"
        " ORDER BY r.started_at DESC, r.run_id DESC"
    )
    args: list[Any] = []
    if limit is not None:
        sql += " LIMIT ?"
        args.append(int(limit))
    return [(RunRow(*row[:-1]), int(row[-1])) for row in conn.execute(sql, args)]


def resolve_run(conn: sqlite3.Connection, run: str, where: str, *, recorded: bool = False) -> str:
    """The run id that ``run`` names: the id itself, or a prefix of exactly one id.

    With ``recorded``, an id that only artifacts name (their run's telemetry was not
    found) counts too. Raises :class:`~scalable.errors.RunNotFoundError` if none matches,
    or listing the candidates if more than one does.
    """
    if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run,)).fetchone():
        return run
    if recorded and conn.execute("SELECT 1 FROM artifacts WHERE run_id = ? LIMIT 1", (run,)).fetchone():
        return run
    candidates: Sequence[str] = []
    if run:
        candidates = [
            row[0]
            for row in conn.execute(
                "SELECT run_id FROM runs WHERE run_id >= ? AND run_id < ? ORDER BY run_id LIMIT ?",
                (run, run + "\U0010ffff", SHOWN_CANDIDATES + 1),
            )
        ]
    found = pick_run_id(run, candidates, f"the catalog {where}")
    if found is None:
        raise RunNotFoundError(
            f"no run {run!r} in the catalog {where}: `scalable runs list` shows the runs it knows, "
            "and `scalable reindex STORE` adds the runs recorded in a store"
        )
    return found


def get_run(conn: sqlite3.Connection, run_id: str) -> RunRow:
    """The row of ``run_id`` (already resolved)."""
    row = conn.execute(_RUN_SELECT + " WHERE run_id = ?", (run_id,)).fetchone()
    return RunRow(*row)


__all__ = [
    "find_artifacts",
    "get_run",
    "latest_version",
    "list_runs",
    "normalize_digest",
    "resolve_run",
    "runs_for_digest",
]
