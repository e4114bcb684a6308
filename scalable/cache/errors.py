"""The errors and warnings of the function cache.

The errors are defined with every other error in :mod:`scalable.errors` (each is a
:class:`~scalable.errors.ScalableError` and also the builtin a caller would expect, so
``except TypeError`` / ``except PermissionError`` keep working); the warnings live here.
"""

from __future__ import annotations

from scalable.errors import CacheDirectoryError, UnhashableArgumentError


class UnstableKeyWarning(UserWarning):
    """An argument was hashed through pickle: its key may differ between library or Python versions."""


class UncacheableResultWarning(UserWarning):
    """A result could not be pickled: it was returned but not cached."""


__all__ = ["CacheDirectoryError", "UncacheableResultWarning", "UnhashableArgumentError", "UnstableKeyWarning"]
