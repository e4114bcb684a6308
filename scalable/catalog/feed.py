"""How sessions feed the catalog, without ever failing because of it.

The client process of a session holds a :class:`CatalogFeed`. An artifact recorded in that
process (by the driver, or by a task on a thread worker) is added at once
(:func:`notify_recorded`, called by ``record_artifact``); at close the session ingests its
whole run directory, which adds what workers in other processes recorded. Both are
idempotent. The first failure logs one warning and turns the feed off for the run: the
catalog is derived, and ``scalable reindex STORE`` restores it.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

from scalable.artifacts.base import PathLike
from scalable.catalog.catalog import Catalog, catalog_disabled
from scalable.telemetry.events import Event
from scalable.telemetry.stream import encode_event

log = logging.getLogger("scalable.catalog")

_feeds: dict[str, CatalogFeed] = {}
_feeds_lock = threading.Lock()


class CatalogFeed:
    """One session's link to the catalog; every method swallows and reports (once) a catalog failure."""

    def __init__(self, run_id: str, run_dir: PathLike, path: PathLike | None = None) -> None:
        self.run_id = run_id
        self.run_dir = Path(run_dir)
        self.path = path
        self._catalog: Catalog | None = None
        self._failed = False
        self._lock = threading.Lock()  # thread workers of a LocalCluster record from several threads

    @classmethod
    def start(cls, run_id: str, run_dir: PathLike) -> CatalogFeed | None:
        """A feed for a new run, registered for :func:`notify_recorded` (``None`` if the catalog is off)."""
        if catalog_disabled():
            return None
        feed = cls(run_id, run_dir)
        with _feeds_lock:
            _feeds[run_id] = feed
        feed.ingest()
        return feed

    def _guard(self, what: str, action: Any) -> None:
        with self._lock:
            self._guarded(what, action)

    def _guarded(self, what: str, action: Any) -> None:
        if self._failed:
            return
        try:
            if self._catalog is None:
                self._catalog = Catalog(self.path, runs_dir=self.run_dir.parent)
                if self._catalog.recovered:
                    log.warning("%s", self._catalog.recovered)
            action(self._catalog)
        except Exception as exc:  # the catalog is derived: never fail a run for it
            self._failed = True
            log.warning(
                "run %s: could not %s in the catalog (%s: %s); the run goes on without it, "
                "and `scalable reindex STORE` rebuilds the catalog",
                self.run_id,
                what,
                type(exc).__name__,
                exc,
            )

    def recorded(self, event: Event) -> None:
        """Add one recorded artifact (the event as its line in ``artifacts.jsonl`` reads)."""
        doc = json.loads(encode_event(event))
        self._guard("add an artifact", lambda catalog: catalog.record_event(doc))

    def ingest(self) -> None:
        """Add (again) the run directory: run.json, summary.json, every recorded artifact."""
        self._guard("add the run", lambda catalog: catalog.ingest_run_dir(self.run_dir))

    def close(self) -> None:
        """Ingest the run one last time, unregister, and close the catalog."""
        self.ingest()
        with _feeds_lock:
            _feeds.pop(self.run_id, None)
        with self._lock:
            if self._catalog is not None:
                try:
                    self._catalog.close()
                except Exception:  # pragma: no cover - closing a SQLite handle does not fail in practice
                    pass
                self._catalog = None


def notify_recorded(event: Event) -> None:
    """Add ``event`` to the catalog if this process holds the feed of its run (a no-op elsewhere)."""
    run_id = getattr(event, "run_id", None)
    if run_id is None:
        return
    with _feeds_lock:
        feed = _feeds.get(run_id)
    if feed is not None:
        feed.recorded(event)


__all__ = ["CatalogFeed", "notify_recorded"]
