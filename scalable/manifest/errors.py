"""Errors a manifest can cause: each names the file, the line and the field.

They are defined with every other error in :mod:`scalable.errors`; this module keeps the
names importable from :mod:`scalable.manifest`.
"""

from scalable.errors import ManifestError, ManifestNotFoundError, ManifestProblem

__all__ = ["ManifestError", "ManifestNotFoundError", "ManifestProblem"]
