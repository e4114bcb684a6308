"""The catalog's SQLite schema: two tables, their indexes, and the version that guards them.

``artifacts`` holds one row per recording: a run (``run_id``) recorded the bytes with
``digest`` at ``key`` in ``store`` as its ``version``. A second recording of the same bytes
at the same key and version in the same run keeps the earliest one. A retained version of a
key that no run recorded has one row with ``run_id`` NULL (added by a rebuild). A key's
latest row in its store is the one with its highest ``version`` (rows with no version,
from telemetry written before stores kept versions, count as latest while the key has no
versioned row). ``runs`` holds one row per run, from its
``run.json`` and ``summary.json``. ``lineage`` holds the edges of the lineage graph (see
:mod:`scalable.catalog.lineage_rows`), one per distinct edge.
"""

from __future__ import annotations

import sqlite3

#: Bumped when a table changes; an older catalog file is dropped and rebuilt, never migrated.
SCHEMA_VERSION = 3  # 2: the lineage table; 3: artifacts.version

ARTIFACT_COLUMNS = (
    "store",
    "key",
    "uri",
    "kind",
    "artifact_kind",
    "digest",
    "size_bytes",
    "created_at",
    "run_id",
    "task",
    "name",
    "metadata",
    "version",
)

RUN_COLUMNS = (
    "run_id",
    "status",
    "started_at",
    "ended_at",
    "target",
    "store",
    "host",
    "user",
    "git_commit",
    "tasks",
    "cache_hit_rate",
    "run_json",
    "summary_json",
)

EDGE_COLUMNS = ("src", "dst", "run_id", "task", "store", "key", "via", "error")

TABLES = """
CREATE TABLE IF NOT EXISTS artifacts (
    id            INTEGER PRIMARY KEY,
    store         TEXT NOT NULL,
    key           TEXT NOT NULL,
    uri           TEXT NOT NULL,
    kind          TEXT,
    artifact_kind TEXT,
    digest        TEXT NOT NULL,
    size_bytes    INTEGER NOT NULL,
    created_at    TEXT NOT NULL,
    run_id        TEXT,
    task          TEXT,
    name          TEXT,
    metadata      TEXT NOT NULL DEFAULT '{}',
    version       INTEGER
);
CREATE TABLE IF NOT EXISTS runs (
    run_id         TEXT PRIMARY KEY,
    status         TEXT,
    started_at     TEXT,
    ended_at       TEXT,
    target         TEXT,
    store          TEXT,
    host           TEXT,
    user           TEXT,
    git_commit     TEXT,
    tasks          INTEGER,
    cache_hit_rate REAL,
    run_json       TEXT NOT NULL,
    summary_json   TEXT
);
CREATE TABLE IF NOT EXISTS lineage (
    id     INTEGER PRIMARY KEY,
    src    TEXT NOT NULL,
    dst    TEXT NOT NULL,
    run_id TEXT NOT NULL,
    task   TEXT,
    store  TEXT,
    key    TEXT,
    via    TEXT NOT NULL,
    error  TEXT
);
"""

#: The unique index every insert relies on (a recording is identified by store, key, version, digest and run).
#: Leading with (store, key, version), it also answers "which version of this key is the latest".
IDENTITY_INDEX = (
    "CREATE UNIQUE INDEX IF NOT EXISTS artifacts_identity ON artifacts"
    "(store, key, ifnull(version, 0), digest, ifnull(run_id, ''))"
)

#: One row per distinct edge (leading with ``src``, it also answers the downstream walk).
EDGE_IDENTITY_INDEX = (
    "CREATE UNIQUE INDEX IF NOT EXISTS lineage_identity ON lineage"
    "(src, dst, ifnull(store, ''), ifnull(key, ''), via, ifnull(error, ''))"
)

#: Query indexes: each query of :mod:`scalable.catalog.query` is answered from one of them.
QUERY_INDEXES = (
    "CREATE INDEX IF NOT EXISTS artifacts_run ON artifacts(run_id, created_at)",
    "CREATE INDEX IF NOT EXISTS artifacts_digest ON artifacts(digest)",
    "CREATE INDEX IF NOT EXISTS artifacts_name ON artifacts(name)",
    "CREATE INDEX IF NOT EXISTS artifacts_task ON artifacts(task)",
    "CREATE INDEX IF NOT EXISTS artifacts_kind ON artifacts(kind, created_at)",
    "CREATE INDEX IF NOT EXISTS artifacts_created ON artifacts(created_at)",
    "CREATE INDEX IF NOT EXISTS runs_started ON runs(started_at)",
    "CREATE INDEX IF NOT EXISTS lineage_dst ON lineage(dst, src)",  # covering for the upstream walk
    "CREATE INDEX IF NOT EXISTS lineage_run ON lineage(run_id)",
    "CREATE INDEX IF NOT EXISTS lineage_store_key ON lineage(store, key)",
)

_INDEX_NAMES = (
    "artifacts_run",
    "artifacts_digest",
    "artifacts_name",
    "artifacts_task",
    "artifacts_kind",
    "artifacts_created",
    "runs_started",
    "lineage_dst",
    "lineage_run",
    "lineage_store_key",
)


def create(conn: sqlite3.Connection) -> None:
    """Create the tables and indexes if missing, and stamp the schema version."""
    for statement in TABLES.split(";"):
        if statement.strip():
            conn.execute(statement)  # not executescript: it would commit the caller's transaction
    conn.execute(IDENTITY_INDEX)
    conn.execute(EDGE_IDENTITY_INDEX)
    create_query_indexes(conn)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def create_query_indexes(conn: sqlite3.Connection) -> None:
    """Create the query indexes (after a bulk load, building them once is faster than updating them per row)."""
    for statement in QUERY_INDEXES:
        conn.execute(statement)


def drop_query_indexes(conn: sqlite3.Connection) -> None:
    """Drop the query indexes before a bulk load; :func:`create_query_indexes` puts them back."""
    for name in _INDEX_NAMES:
        conn.execute(f"DROP INDEX IF EXISTS {name}")


def drop(conn: sqlite3.Connection) -> None:
    """Drop both tables (a catalog from another schema version is rebuilt, not migrated)."""
    conn.execute("DROP TABLE IF EXISTS artifacts")
    conn.execute("DROP TABLE IF EXISTS runs")
    conn.execute("DROP TABLE IF EXISTS lineage")


__all__ = [
    "ARTIFACT_COLUMNS",
    "EDGE_COLUMNS",
    "EDGE_IDENTITY_INDEX",
    "RUN_COLUMNS",
    "SCHEMA_VERSION",
    "create",
    "create_query_indexes",
    "drop",
    "drop_query_indexes",
]
