"""``ArtifactStore``: the protocol every store keeps, whatever holds the bytes.

Code written against this protocol runs unchanged on a laptop's disk, S3, GCS, Azure or
``memory://``. :class:`scalable.artifacts.store.BaseArtifactStore` implements it once on
top of a handful of primitives; a backend supplies only those.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, runtime_checkable

if TYPE_CHECKING:
    from scalable.artifacts.kinds import ArtifactKind
    from scalable.artifacts.ref import ArtifactRef

PathLike = str | os.PathLike[str]


@runtime_checkable
class ArtifactStore(Protocol):
    """Put, get, list and verify artifacts by key; every artifact carries a SHA-256 digest."""

    @property
    def uri(self) -> str:
        """The store's root URI (``file:///...``, ``s3://bucket/prefix``, ...), without secrets."""
        ...

    @property
    def scheme(self) -> str:
        """The URI scheme this store serves (``"file"``, ``"s3"``, ``"gs"``, ``"memory"``, ...)."""
        ...

    def put(
        self,
        local_path: PathLike,
        key: str,
        *,
        kind: ArtifactKind | str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> ArtifactRef:
        """Store a local file or directory under ``key`` and commit it; return its ref."""
        ...

    def put_bytes(self, data: bytes, key: str, *, metadata: dict[str, Any] | None = None) -> ArtifactRef:
        """Store ``data`` as a blob under ``key`` and commit it."""
        ...

    def get(
        self, key: str, local_path: PathLike, *, verify: bool = True, overwrite: bool = False, merge: bool = False
    ) -> Path:
        """Copy the artifact to ``local_path`` (verified by default); return the local path.

        Never removes or replaces local files unless ``overwrite=True``; ``merge=True`` adds a
        directory artifact's files to an existing directory.
        """
        ...

    def open(self, key: str) -> BinaryIO:
        """A binary stream of a file or blob artifact, verified as it is read."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """The verified bytes of a file or blob artifact."""
        ...

    def exists(self, key: str) -> bool:
        """Whether a committed artifact is at ``key``."""
        ...

    def info(self, key: str) -> ArtifactRef:
        """The ref of the committed artifact at ``key``."""
        ...

    def list_artifacts(self, prefix: str = "") -> list[str]:
        """Sorted keys of the committed artifacts whose key starts with ``prefix``."""
        ...

    def iter_refs(self, prefix: str = "") -> Iterator[ArtifactRef]:
        """The refs of :meth:`list_artifacts`, in key order."""
        ...

    def delete(self, key: str) -> None:
        """Remove the artifact at ``key`` (its ref first, then its bytes)."""
        ...

    def verify(self, key: str) -> ArtifactRef:
        """Re-hash the stored bytes; return the ref, or raise ``IntegrityError``."""
        ...

    def uri_for(self, key: str) -> str:
        """The URI that names ``key`` in this store."""
        ...

    def save(self, key: str, obj: Any, *, metadata: dict[str, Any] | None = None) -> ArtifactRef:
        """Serialize ``obj`` in the format of the key's extension and store it."""
        ...

    def load(self, key: str) -> Any:
        """Load a value saved with :meth:`save`."""
        ...


__all__ = ["ArtifactStore", "PathLike"]
