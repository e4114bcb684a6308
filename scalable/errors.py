"""Every error a user can cause, in one place.

Each class is something a caller can catch; each message says what went wrong and what
to do about it. Where a builtin exception already means the same thing, the class also
derives from it, so ``except FileNotFoundError`` keeps working for code that does not
know about scalable.
"""

from __future__ import annotations


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


class UnsupportedURIError(ScalableError, ValueError):
    """A URI's scheme is unknown, or its driver (an optional extra) is not installed."""


class StoreUnavailableError(ScalableError, ConnectionError):
    """The storage service could not be reached or refused the request."""


class AccessDeniedError(ScalableError, PermissionError):
    """The storage service refused the credentials, or they lack a permission."""


class BucketNotFoundError(StoreUnavailableError):
    """The bucket or container at the root of a store URI does not exist."""


class FormatError(ScalableError, ValueError):
    """``save``/``load`` cannot serialize or parse a value in the format of the key's extension."""


__all__ = [
    "AccessDeniedError",
    "ArtifactKindError",
    "ArtifactNotFoundError",
    "BucketNotFoundError",
    "FormatError",
    "IntegrityError",
    "InvalidKeyError",
    "KeyConflictError",
    "ScalableError",
    "StoreUnavailableError",
    "UnsupportedURIError",
]
