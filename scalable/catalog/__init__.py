"""The catalog: a SQLite index of artifacts and runs, derived from stores and run telemetry.

    from scalable import Catalog

    catalog = Catalog()                      # .scalable/catalog.sqlite, or SCALABLE_CATALOG
    catalog.find(run="20261124T", name="members/*")
    catalog.runs_for_digest("sha256:...")    # which runs produced these bytes
    catalog.rebuild([store], ["./.scalable/runs"])

See ``docs/catalog.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scalable._lazy import lazy_namespace

if TYPE_CHECKING:
    from scalable.catalog.catalog import (
        CATALOG_ENV,
        DEFAULT_CATALOG_PATH,
        Catalog,
        catalog_disabled,
        default_catalog_path,
    )
    from scalable.catalog.rebuild import RebuildReport
    from scalable.catalog.rows import (
        ArtifactRow,
        RunRow,
        artifact_row_from_event,
        artifact_row_from_ref,
        run_row_from_docs,
    )

_EXPORTS = {
    "CATALOG_ENV": "scalable.catalog.catalog",
    "DEFAULT_CATALOG_PATH": "scalable.catalog.catalog",
    "Catalog": "scalable.catalog.catalog",
    "catalog_disabled": "scalable.catalog.catalog",
    "default_catalog_path": "scalable.catalog.catalog",
    "RebuildReport": "scalable.catalog.rebuild",
    "ArtifactRow": "scalable.catalog.rows",
    "RunRow": "scalable.catalog.rows",
    "artifact_row_from_event": "scalable.catalog.rows",
    "artifact_row_from_ref": "scalable.catalog.rows",
    "run_row_from_docs": "scalable.catalog.rows",
}

__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS, globals())

__all__ = [
    "CATALOG_ENV",
    "DEFAULT_CATALOG_PATH",
    "ArtifactRow",
    "Catalog",
    "RebuildReport",
    "RunRow",
    "artifact_row_from_event",
    "artifact_row_from_ref",
    "catalog_disabled",
    "default_catalog_path",
    "run_row_from_docs",
]
