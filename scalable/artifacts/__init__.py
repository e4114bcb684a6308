"""Artifacts: refs, the store protocol, the local and fsspec stores, and the URI factory."""

from scalable.artifacts import fsspec_view
from scalable.artifacts.base import ArtifactStore
from scalable.artifacts.digests import DigestCache, TreeEntry, digest_bytes, hash_file
from scalable.artifacts.factory import build_artifact_store, register_artifact_store
from scalable.artifacts.fsspec_store import FsspecArtifactStore
from scalable.artifacts.keys import validate_key
from scalable.artifacts.local import LocalArtifactStore
from scalable.artifacts.ref import ArtifactKind, ArtifactRef
from scalable.artifacts.store import BaseArtifactStore

fsspec_view.register()  # scalable:// opens with fsspec once scalable is imported, entry point or not

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
