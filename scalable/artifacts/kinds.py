"""``ArtifactKind``, in a module of its own so that code that only needs the kind imports no pydantic.

Its home for users and pickles stays :mod:`scalable.artifacts.ref` (``__module__`` says so,
and that module re-exports it): ``scalable.artifacts.ref.ArtifactKind`` is this class.
"""

from __future__ import annotations

from enum import Enum


class ArtifactKind(str, Enum):
    """What an artifact holds: one file, a directory tree, or bytes put from memory."""

    FILE = "file"
    DIR = "dir"
    BLOB = "blob"
    #: JGCRI scalable 2.0's name for ``DIR`` (the same member), so code written for it runs unchanged.
    DIRECTORY = "dir"

    def __str__(self) -> str:
        return self.value


# Pickles and docs name the class where users import it from (pickle checks it is the same object there).
ArtifactKind.__module__ = "scalable.artifacts.ref"

__all__ = ["ArtifactKind"]
