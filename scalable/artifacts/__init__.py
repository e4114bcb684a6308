"""Artifacts: refs, the store protocol, the local and fsspec stores, and the URI factory."""

from __future__ import annotations

from typing import TYPE_CHECKING

from scalable._lazy import lazy_namespace

if TYPE_CHECKING:
    from scalable.artifacts.base import ArtifactStore
    from scalable.artifacts.digests import DigestCache, TreeEntry, digest_bytes, hash_file
    from scalable.artifacts.factory import build_artifact_store, register_artifact_store
    from scalable.artifacts.fsspec_store import FsspecArtifactStore
    from scalable.artifacts.keys import validate_key
    from scalable.artifacts.kinds import ArtifactKind
    from scalable.artifacts.local import LocalArtifactStore
    from scalable.artifacts.ref import ArtifactRef
    from scalable.artifacts.store import BaseArtifactStore

_EXPORTS = {
    "ArtifactStore": "scalable.artifacts.base",
    "DigestCache": "scalable.artifacts.digests",
    "TreeEntry": "scalable.artifacts.digests",
    "digest_bytes": "scalable.artifacts.digests",
    "hash_file": "scalable.artifacts.digests",
    "build_artifact_store": "scalable.artifacts.factory",
    "register_artifact_store": "scalable.artifacts.factory",
    "FsspecArtifactStore": "scalable.artifacts.fsspec_store",
    "validate_key": "scalable.artifacts.keys",
    "LocalArtifactStore": "scalable.artifacts.local",
    "ArtifactKind": "scalable.artifacts.kinds",
    "ArtifactRef": "scalable.artifacts.ref",
    "BaseArtifactStore": "scalable.artifacts.store",
}

__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS, globals())

__all__ = [
    "ArtifactKind",
    "ArtifactRef",
    "ArtifactStore",
    "BaseArtifactStore",
    "DigestCache",
    "FsspecArtifactStore",
    "LocalArtifactStore",
    "TreeEntry",
    "build_artifact_store",
    "digest_bytes",
    "hash_file",
    "register_artifact_store",
    "validate_key",
]
