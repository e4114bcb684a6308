"""``Catalog``: a SQLite index of artifacts and runs, derived from stores and run telemetry.

The catalog is a file (``.scalable/catalog.sqlite``, or ``SCALABLE_CATALOG``) in WAL mode,
so sessions can add to it while commands read it. It holds nothing that is not also in a
store or a run directory: :meth:`Catalog.rebuild` makes it again from those, with the same
rows (see :mod:`scalable.catalog.rebuild` for the rules). A file that is not a readable
SQLite database is moved aside and replaced, never raised as an error.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from scalable.artifacts.base import ArtifactStore, PathLike
from scalable.catalog import lineage, query, schema
from scalable.catalog.lineage import Lineage
from scalable.catalog.lineage_rows import EdgeRow, edge_row_from_recorded
from scalable.catalog.rebuild import RebuildReport, collect
from scalable.catalog.rows import ArtifactRow, RunRow, artifact_row_from_event
from scalable.catalog.sources import RunTelemetry, read_run_dir
from scalable.errors import CatalogDamagedError, CatalogError

#: Where the catalog lives unless ``SCALABLE_CATALOG`` says otherwise (relative to the working directory).
DEFAULT_CATALOG_PATH = ".scalable/catalog.sqlite"
CATALOG_ENV = "SCALABLE_CATALOG"
#: Files up to this size get a full ``PRAGMA quick_check`` when opened (it reads every page).
QUICK_CHECK_MAX_BYTES = 128 * 2**20

_COLUMNS = ", ".join(schema.ARTIFACT_COLUMNS)
_MARKS = ", ".join("?" * len(schema.ARTIFACT_COLUMNS))
_RANK = "(created_at, ifnull(task, ''), ifnull(name, ''), ifnull(kind, ''), metadata)"
_EXCLUDED_RANK = (
    "(excluded.created_at, ifnull(excluded.task, ''), ifnull(excluded.name, ''), "
    "ifnull(excluded.kind, ''), excluded.metadata)"
)
# One recording per (store, key, digest, run): the earliest wins, as in rebuild.recording_rank.
_UPSERT = (
    f"INSERT INTO artifacts ({_COLUMNS}) VALUES ({_MARKS}) "
    "ON CONFLICT (store, key, ifnull(version, 0), digest, ifnull(run_id, '')) DO UPDATE SET "
    "created_at = excluded.created_at, task = excluded.task, name = excluded.name, kind = excluded.kind, "
    "metadata = excluded.metadata, uri = excluded.uri, artifact_kind = excluded.artifact_kind, "
    f"size_bytes = excluded.size_bytes WHERE {_EXCLUDED_RANK} < {_RANK}"
)
_INSERT = f"INSERT INTO artifacts ({_COLUMNS}) VALUES ({_MARKS})"
# A recording of a version replaces the run-less row of that version; one without a version
# (telemetry from before versions) replaces the run-less rows of every version with its bytes.
_DROP_UNRECORDED = (
    "DELETE FROM artifacts WHERE store = ? AND key = ? AND digest = ? AND run_id IS NULL AND (? IS NULL OR version = ?)"
)
_HAS_RECORDING = (
    "SELECT 1 FROM artifacts WHERE store = ? AND key = ? AND digest = ? AND run_id IS NOT NULL "
    "AND (version IS NULL OR version = ?) LIMIT 1"
)
_EDGE_INSERT = (
    f"INSERT OR IGNORE INTO lineage ({', '.join(schema.EDGE_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(schema.EDGE_COLUMNS))})"
)
_RUN_UPSERT = (
    f"INSERT OR REPLACE INTO runs ({', '.join(schema.RUN_COLUMNS)}) VALUES ({', '.join('?' * len(schema.RUN_COLUMNS))})"
)


def catalog_disabled() -> bool:
    """Whether ``SCALABLE_CATALOG=off`` turns the catalog off."""
    return os.environ.get(CATALOG_ENV, "").strip().lower() in ("off", "0", "false", "no")


def default_catalog_path() -> Path:
    """``SCALABLE_CATALOG`` if set, else ``.scalable/catalog.sqlite`` in the project's folder.

    The project's folder is the one holding the nearest ``scalable.yaml`` (or
    ``SCALABLE_MANIFEST``); without a manifest, the working directory.
    """
    value = os.environ.get(CATALOG_ENV, "").strip()
    if value and not catalog_disabled():
        return Path(value).expanduser()
    from scalable.project import project_dir

    root = project_dir()
    return Path(DEFAULT_CATALOG_PATH) if root is None or root == Path.cwd() else root / DEFAULT_CATALOG_PATH


class Catalog:
    """An index of artifacts and runs: who produced which bytes, where, and when.

    ``path`` defaults to :func:`default_catalog_path`. ``runs_dir``, if given, is where a
    damaged catalog is rebuilt from; :attr:`recovered` then says what happened, in one line.
    Safe to share between threads; several processes may open the same file.
    """

    def __init__(
        self, path: PathLike | None = None, *, runs_dir: PathLike | None = None, timeout: float = 30.0
    ) -> None:
        if path is None and catalog_disabled():
            raise CatalogError(f"the catalog is turned off ({CATALOG_ENV}=off): unset {CATALOG_ENV} to use it")
        self.path = Path(path).expanduser() if path is not None else default_catalog_path()
        self.timeout = timeout
        #: One line saying the file was damaged, moved aside and rebuilt (``None`` if it was fine).
        self.recovered: str | None = None
        self._lock = threading.RLock()
        self._conn = self._open(runs_dir)

    # ------------------------------------------------------------------ opening
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.timeout, check_same_thread=False, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        return conn

    def _check(self, conn: sqlite3.Connection) -> str | None:
        """What is wrong with the file (``None`` if it is a catalog this version can use).

        ``PRAGMA quick_check`` reads the whole file, so it runs on files up to
        :data:`QUICK_CHECK_MAX_BYTES`; a larger one gets the header and schema checks, and
        damage found later by a query raises ``CatalogDamagedError``.
        """
        try:
            with open(self.path, "rb") as f:
                if f.read(16) != b"SQLite format 3\x00":
                    return "not an SQLite database"
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            if self.path.stat().st_size <= QUICK_CHECK_MAX_BYTES:
                verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
                if verdict != "ok":
                    return f"quick_check: {verdict}"
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, schema.SCHEMA_VERSION):
                return f"schema version {version}, this scalable reads {schema.SCHEMA_VERSION}"
        except sqlite3.DatabaseError as exc:
            return str(exc)
        return None

    def _open(self, runs_dir: PathLike | None) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._connect()
        except (OSError, sqlite3.Error) as exc:
            raise CatalogError(
                f"cannot open the catalog {self.path} ({exc}): make its folder writable, "
                f"or set {CATALOG_ENV} to another path (or to off)"
            ) from None
        problem = self._check(conn) if self.path.stat().st_size else None
        if problem is not None:
            conn.close()
            aside = self._move_aside()
            conn = self._connect()
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA cache_size = -65536")  # up to 64 MiB of pages: bulk loads and index builds spill less
            with self._write(conn):
                schema.create(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise CatalogError(
                f"cannot write the catalog {self.path} ({exc}): check the disk and its permissions, "
                f"or set {CATALOG_ENV} to another path"
            ) from None
        if problem is not None:
            self._conn = conn
            if runs_dir is not None:
                report = self.rebuild(runs_dirs=[runs_dir])
                self.recovered = (
                    f"the catalog {self.path} was damaged ({problem}); moved it to {aside.name} and rebuilt it "
                    f"from {runs_dir} ({report.runs} runs, {report.artifacts} artifacts): "
                    "`scalable reindex STORE` adds a store's artifacts that no run recorded"
                )
            else:
                self.recovered = (
                    f"the catalog {self.path} was damaged ({problem}); moved it to {aside.name} and started an "
                    "empty one: `scalable reindex STORE` rebuilds it"
                )
        return conn

    def _move_aside(self) -> Path:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        aside = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
        os.replace(self.path, aside)
        for suffix in ("-wal", "-shm"):
            extra = self.path.with_name(self.path.name + suffix)
            if extra.exists():
                os.replace(extra, aside.with_name(aside.name + suffix))
        return aside

    @contextmanager
    def _write(self, conn: sqlite3.Connection | None = None) -> Iterator[sqlite3.Connection]:
        conn = conn or self._conn
        with self._lock:
            if conn.in_transaction:  # nested in a write of this catalog: one transaction
                yield conn
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # ------------------------------------------------------------------ adding
    def add_artifacts(self, rows: Iterable[ArtifactRow]) -> int:
        """Add artifact rows (one transaction); return how many were given.

        A recording already held is kept or replaced by the rule rebuild uses (the earliest
        wins); a recorded row replaces the run-less row of the same store, key, version and
        digest, and a run-less row is not added beside a recording of the same version.
        """
        rows = list(rows)
        with self._write() as conn:
            for row in rows:
                ident = (row.store, row.key, row.digest)
                if row.run_id is not None:
                    conn.execute(_DROP_UNRECORDED, (*ident, row.version, row.version))
                elif conn.execute(_HAS_RECORDING, (*ident, row.version)).fetchone():
                    continue
                conn.execute(_UPSERT, row.as_tuple())
        return len(rows)

    def record_event(self, event: Mapping[str, Any]) -> ArtifactRow:
        """Add the row of an ``artifact.recorded`` event (the JSON object of its line) and its lineage edge."""
        row = artifact_row_from_event(event)
        edge = edge_row_from_recorded(event)
        with self._write():
            self.add_artifacts([row])
            if edge is not None:
                self.add_edges([edge])
        return row

    def add_edges(self, rows: Iterable[EdgeRow]) -> int:
        """Add lineage edges (one transaction; an edge already held is kept); return how many were given."""
        rows = list(rows)
        with self._write() as conn:
            conn.executemany(_EDGE_INSERT, (row.as_tuple() for row in rows))
        return len(rows)

    def add_run(self, row: RunRow) -> None:
        """Add or replace a run's row."""
        with self._write() as conn:
            conn.execute(_RUN_UPSERT, row.as_tuple())

    def ingest_run_dir(self, run_dir: PathLike) -> RunTelemetry:
        """Add a run directory's run, summary and recorded artifacts (idempotent)."""
        telemetry = read_run_dir(Path(run_dir))
        with self._write():
            if telemetry.run is not None:
                self.add_run(telemetry.run)
            self.add_artifacts(telemetry.artifacts)
            self.add_edges(telemetry.edges)
        return telemetry

    def bulk_load(self, rows: Iterable[ArtifactRow], runs: Iterable[RunRow] = ()) -> int:
        """Insert many rows that are new to the catalog, fast: query indexes are rebuilt once at the end.

        Rows must not repeat an identity (store, key, digest, run) already held or given
        twice (``sqlite3.IntegrityError`` otherwise); :meth:`add_artifacts` merges instead.
        """
        count = 0
        with self._write() as conn:
            conn.execute("DROP INDEX IF EXISTS artifacts_identity")
            schema.drop_query_indexes(conn)
            for batch in _batches(rows, 50_000):
                conn.executemany(_INSERT, batch)
                count += len(batch)
            conn.executemany(_RUN_UPSERT, (run.as_tuple() for run in runs))
            conn.execute(schema.IDENTITY_INDEX)
            schema.create_query_indexes(conn)
        conn.execute("ANALYZE")
        return count

    def rebuild(self, stores: Sequence[ArtifactStore] = (), runs_dirs: Iterable[PathLike] = ()) -> RebuildReport:
        """Replace every row with what ``stores`` and ``runs_dirs`` hold (see :mod:`scalable.catalog.rebuild`)."""
        artifacts, runs, report = collect(stores, runs_dirs)
        with self._write() as conn:
            conn.execute("DELETE FROM artifacts")
            conn.execute("DELETE FROM runs")
            conn.execute("DELETE FROM lineage")
            conn.execute("DROP INDEX IF EXISTS artifacts_identity")
            conn.execute("DROP INDEX IF EXISTS lineage_identity")
            schema.drop_query_indexes(conn)
            conn.executemany(_INSERT, (row.as_tuple() for row in artifacts))
            conn.executemany(_RUN_UPSERT, (run.as_tuple() for run in runs))
            conn.executemany(_EDGE_INSERT, (edge.as_tuple() for edge in report.edge_rows))
            conn.execute(schema.IDENTITY_INDEX)
            conn.execute(schema.EDGE_IDENTITY_INDEX)
            schema.create_query_indexes(conn)
        self._conn.execute("ANALYZE")
        return report

    # ------------------------------------------------------------------ queries
    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._conn
            except sqlite3.DatabaseError as exc:
                raise CatalogDamagedError(
                    f"the catalog {self.path} is damaged ({exc}): run `scalable reindex STORE` to rebuild it"
                ) from None

    def find(
        self,
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
        all_versions: bool = False,
    ) -> list[ArtifactRow]:
        """Artifacts matching every filter given, oldest first: each key's latest version (``all_versions``: all).

        ``run`` is a run id or a unique prefix of one; ``name`` a glob (``members/*``);
        ``digest`` with or without ``sha256:``; ``since`` inclusive, ``until`` exclusive
        (datetimes, or ISO 8601 text; naive times are UTC). Without ``all_versions`` a row
        is left out when its key has a later version in its store, so ``find(run=...)``
        of an older run shows only what that run made that is still current.
        """
        with self._reading():
            if run is not None:
                run = query.resolve_run(self._conn, run, str(self.path), recorded=True)
            return query.find_artifacts(
                self._conn,
                run=run,
                task=task,
                kind=kind,
                name=name,
                digest=digest,
                store=store,
                key=key,
                since=since,
                until=until,
                limit=limit,
                latest_only=not all_versions,
            )

    def latest_versions(self, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int | None]:
        """The latest version the catalog knows of each ``(store, key)`` (``None`` if it knows none with a number)."""
        with self._reading():
            return {pair: query.latest_version(self._conn, *pair) for pair in set(pairs)}

    def runs_for_digest(self, digest: str) -> list[str]:
        """Which runs produced these bytes: run ids that recorded ``digest``, earliest first."""
        with self._reading():
            return query.runs_for_digest(self._conn, digest)

    def runs(self, *, limit: int | None = None) -> list[tuple[RunRow, int]]:
        """Runs, newest first, each with its number of recorded artifacts."""
        with self._reading():
            return query.list_runs(self._conn, limit=limit)

    def resolve_run(self, run: str) -> str:
        """The full id of the run that ``run`` (an id or a unique prefix) names; ``RunNotFoundError`` otherwise."""
        with self._reading():
            return query.resolve_run(self._conn, run, str(self.path))

    def run(self, run: str) -> RunRow:
        """The row of the run that ``run`` (an id or a unique prefix) names; ``RunNotFoundError`` otherwise."""
        with self._reading():
            return query.get_run(self._conn, query.resolve_run(self._conn, run, str(self.path)))

    def upstream(self, x: str, *, depth: int = 5) -> Lineage:
        """What ``x`` came from: the tasks and inputs up to ``depth`` tasks back.

        ``x`` is a digest (``sha256:<hex>`` or the bare hex), ``STORE#KEY`` (every digest
        recorded or read at that key), or a run id or unique prefix (the run's tasks).
        Raises ``LineageNotFoundError`` if the catalog knows no such thing.
        """
        with self._reading():
            return lineage.walk(self._conn, x, upstream=True, depth=depth, where=str(self.path))

    def downstream(self, x: str, *, depth: int = 5) -> Lineage:
        """What was made from ``x``: the tasks that read it and their outputs, up to ``depth`` tasks on."""
        with self._reading():
            return lineage.walk(self._conn, x, upstream=False, depth=depth, where=str(self.path))

    def bulk_load_edges(self, rows: Iterable[EdgeRow]) -> int:
        """Insert many lineage edges that are new to the catalog, fast: indexes are rebuilt once at the end.

        Rows must not repeat an edge already held or given twice (``sqlite3.IntegrityError``
        otherwise); :meth:`add_edges` merges instead.
        """
        count = 0
        with self._write() as conn:
            conn.execute("DROP INDEX IF EXISTS lineage_identity")
            schema.drop_query_indexes(conn)
            for batch in _batches(rows, 50_000):
                conn.executemany(_EDGE_INSERT, batch)
                count += len(batch)
            conn.execute(schema.EDGE_IDENTITY_INDEX)
            schema.create_query_indexes(conn)
        self._conn.execute("ANALYZE")
        return count

    def counts(self) -> dict[str, int]:
        """How many runs and artifact rows the catalog holds."""
        with self._reading():
            runs = self._conn.execute("SELECT count(*) FROM runs").fetchone()[0]
            artifacts = self._conn.execute("SELECT count(*) FROM artifacts").fetchone()[0]
        return {"runs": int(runs), "artifacts": int(artifacts)}

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row, sorted, without row ids: two catalogs give the same answers iff their snapshots are equal."""
        with self._reading():
            artifacts = self._conn.execute(f"SELECT {_COLUMNS} FROM artifacts").fetchall()
            runs = self._conn.execute(f"SELECT {', '.join(schema.RUN_COLUMNS)} FROM runs").fetchall()
            edges = self._conn.execute(f"SELECT {', '.join(schema.EDGE_COLUMNS)} FROM lineage").fetchall()
        key = json.dumps
        return {
            "artifacts": sorted(artifacts, key=lambda r: key(r)),
            "runs": sorted(runs, key=lambda r: key(r)),
            "lineage": sorted(edges, key=lambda r: key(r)),
        }

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Close the file (closing twice is fine)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Catalog({str(self.path)!r})"


def _batches(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


__all__ = ["CATALOG_ENV", "DEFAULT_CATALOG_PATH", "Catalog", "catalog_disabled", "default_catalog_path"]
