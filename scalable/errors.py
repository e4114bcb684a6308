"""Every error a user can cause, in one place.

Each class is something a caller can catch; each message says what went wrong and what
to do about it. Where a builtin exception already means the same thing, the class also
derives from it, so ``except FileNotFoundError`` keeps working for code that does not
know about scalable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class ScalableError(Exception):
    """Base class of every error scalable raises on purpose."""


class ArtifactNotFoundError(ScalableError, FileNotFoundError):
    """A key has no committed artifact, or a local source path does not exist."""


class InvalidKeyError(ScalableError, ValueError):
    """A key is not a safe relative POSIX path (rejected before any I/O)."""


class KeyConflictError(ScalableError, ValueError):
    """A key would nest inside another artifact, or another artifact inside it."""


class ArtifactKindError(ScalableError, ValueError):
    """The source or the requested kind does not fit the operation (a file for a dir...)."""


class IntegrityError(ScalableError):
    """Stored bytes do not match the digest recorded when the artifact was committed."""


class StoreLayoutError(ScalableError):
    """A store is in a layout this version does not read or write (``scalable migrate STORE`` converts it)."""


class AmbiguousVersionError(ScalableError, ValueError):
    """A digest prefix names more than one version of a key."""


class ArtifactChangingError(ScalableError):
    """An artifact was overwritten again and again while it was read, so no whole version could be read."""


class UnsupportedURIError(ScalableError, ValueError):
    """A URI's scheme is unknown, or its driver (an optional extra) is not installed."""


class StoreUnavailableError(ScalableError, ConnectionError):
    """The storage service could not be reached or refused the request."""


class AccessDeniedError(ScalableError, PermissionError):
    """The storage service refused the credentials, or they lack a permission."""


class BucketNotFoundError(StoreUnavailableError):
    """The bucket or container at the root of a store URI does not exist."""


class DestinationExistsError(ScalableError, FileExistsError):
    """A ``get`` would remove or replace local files, and the call did not say it may (``overwrite=True``)."""


class LocalPathError(ScalableError, OSError):
    """A local path given to ``put`` or ``get`` cannot be used (a NUL byte, a file where a folder must be...)."""


class StoreNotFoundError(StoreUnavailableError, ArtifactNotFoundError):
    """A local store's folder does not exist, or is not an artifact store (it has no ``.scalable`` folder).

    Also an ``ArtifactNotFoundError`` (what a missing local store raised before it had a class of its own).
    """


class FormatError(ScalableError, ValueError):
    """``save``/``load`` cannot serialize or parse a value in the format of the key's extension."""


@dataclass(frozen=True)
class ManifestProblem:
    """One thing wrong with a manifest: where (line, dotted field path) and what."""

    line: int | None
    field: str | None
    message: str

    def format(self, source: str | None) -> str:
        """``file:line: field: message``, leaving out the parts that are unknown."""
        where = source or "(no manifest file)"
        if self.line is not None:
            where = f"{where}:{self.line}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class ManifestError(ScalableError, ValueError):
    """A manifest cannot be read, expanded or validated.

    ``str(error)`` has one line per problem, each ``file:line: field: message``; the same
    facts are in ``error.source`` and ``error.problems`` for programs.
    """

    def __init__(self, source: str | None, problems: Sequence[ManifestProblem]) -> None:
        self.source = source
        self.problems = tuple(sorted(problems, key=lambda p: (p.line or 0, p.field or "")))
        super().__init__("\n".join(p.format(source) for p in self.problems))

    def __reduce__(self) -> tuple[object, ...]:
        # Pickles whole, so an error raised on a Dask worker reaches the client intact.
        return (type(self), (self.source, self.problems))


class ManifestNotFoundError(ManifestError, FileNotFoundError):
    """The manifest file that was asked for (by argument or ``SCALABLE_MANIFEST``) does not exist."""


class NoSessionError(ScalableError, RuntimeError):
    """``current_session()`` was called outside a session and outside a session's task."""


class SessionClosedError(ScalableError, RuntimeError):
    """A session was used after ``close()``."""


class TargetError(ScalableError, ValueError):
    """A target cannot be built: unknown provider, missing extra, or bad options."""


class UnhashableArgumentError(ScalableError, TypeError):
    """An argument of a cached call cannot be turned into a cache key (an open file, a lock...)."""


class CacheDirectoryError(ScalableError, PermissionError):
    """The local cache directory cannot be created or written."""


class RunNotFoundError(ScalableError, LookupError):
    """No run has this id (or an id prefix matches none, or more than one)."""


class CatalogError(ScalableError):
    """The catalog cannot be opened or written (a damaged file is rebuilt, not raised)."""


class CatalogDamagedError(CatalogError):
    """The catalog file is not a readable SQLite database; ``scalable reindex`` rebuilds it."""


class ReportError(ScalableError, OSError):
    """A run report cannot be written where it was asked to go (a read-only run directory, a full disk)."""


class VersionNotSupportedError(ScalableError, ValueError):
    """A read asked for a ``version=`` of an artifact, and the store cannot read past versions."""


class LineageNotFoundError(CatalogError, LookupError):
    """The catalog has no artifact, digest or run of that name to trace."""


class MirrorError(ScalableError):
    """The local mirror cannot hold or serve an artifact (a bound too small, an unwritable folder, no versions)."""


class MirrorFullError(MirrorError, OSError):
    """The local mirror's disk filled up during a fetch; nothing partial was left in the mirror."""


class PutModeError(ScalableError, ValueError):
    """A put's ``mode=`` is unknown, or this store or filesystem cannot do it (a hard link to a bucket)."""


class SyncConflictError(ScalableError, FileExistsError):
    """A copy or sync would replace a different artifact at a destination key, and ``overwrite=False`` refused it."""


__all__ = [
    "AccessDeniedError",
    "AmbiguousVersionError",
    "ArtifactChangingError",
    "ArtifactKindError",
    "ArtifactNotFoundError",
    "BucketNotFoundError",
    "CacheDirectoryError",
    "CatalogDamagedError",
    "CatalogError",
    "DestinationExistsError",
    "FormatError",
    "IntegrityError",
    "InvalidKeyError",
    "KeyConflictError",
    "LineageNotFoundError",
    "LocalPathError",
    "ManifestError",
    "ManifestNotFoundError",
    "ManifestProblem",
    "MirrorError",
    "MirrorFullError",
    "NoSessionError",
    "PutModeError",
    "ReportError",
    "RunNotFoundError",
    "ScalableError",
    "SessionClosedError",
    "StoreLayoutError",
    "StoreNotFoundError",
    "StoreUnavailableError",
    "SyncConflictError",
    "TargetError",
    "UnhashableArgumentError",
    "UnsupportedURIError",
    "VersionNotSupportedError",
]
