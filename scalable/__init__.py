"""scalable: artifacts, caches and runs for scientific and data workflows.

One artifact API over local disk, S3, GCS and Azure; every artifact carries a SHA-256
digest and size, is never half-written, and is verified on read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scalable._lazy import lazy_namespace
from scalable._version import __version__

if TYPE_CHECKING:
    from scalable.artifacts import (
        ArtifactKind,
        ArtifactRef,
        ArtifactStore,
        FsspecArtifactStore,
        LocalArtifactStore,
        build_artifact_store,
        register_artifact_store,
    )
    from scalable.artifacts.resolve import open_uri
    from scalable.cache import CacheInfo, CallInfo, cacheable, configure_cache
    from scalable.catalog import Catalog
    from scalable.errors import (
        AccessDeniedError,
        AmbiguousVersionError,
        ArtifactChangingError,
        ArtifactKindError,
        ArtifactNotFoundError,
        BucketNotFoundError,
        CacheDirectoryError,
        CatalogDamagedError,
        CatalogError,
        DestinationExistsError,
        FormatError,
        IntegrityError,
        InvalidKeyError,
        KeyConflictError,
        LineageNotFoundError,
        LocalPathError,
        ManifestError,
        ManifestNotFoundError,
        MirrorError,
        MirrorFullError,
        RunNotFoundError,
        ScalableError,
        StoreLayoutError,
        StoreNotFoundError,
        StoreUnavailableError,
        UnhashableArgumentError,
        UnsupportedURIError,
        VersionNotSupportedError,
    )
    from scalable.manifest import Settings, json_schema, load_manifest, resolve_settings
    from scalable.session import ScalableSession, current_session
    from scalable.telemetry import JsonlStream, read_events

_EXPORTS = {
    "ArtifactKind": "scalable.artifacts",
    "ArtifactRef": "scalable.artifacts",
    "ArtifactStore": "scalable.artifacts",
    "FsspecArtifactStore": "scalable.artifacts",
    "LocalArtifactStore": "scalable.artifacts",
    "build_artifact_store": "scalable.artifacts",
    "register_artifact_store": "scalable.artifacts",
    "CacheInfo": "scalable.cache",
    "CallInfo": "scalable.cache",
    "cacheable": "scalable.cache",
    "configure_cache": "scalable.cache",
    "Catalog": "scalable.catalog",
    "AccessDeniedError": "scalable.errors",
    "ArtifactChangingError": "scalable.errors",
    "ArtifactKindError": "scalable.errors",
    "ArtifactNotFoundError": "scalable.errors",
    "BucketNotFoundError": "scalable.errors",
    "CacheDirectoryError": "scalable.errors",
    "CatalogDamagedError": "scalable.errors",
    "CatalogError": "scalable.errors",
    "FormatError": "scalable.errors",
    "IntegrityError": "scalable.errors",
    "InvalidKeyError": "scalable.errors",
    "KeyConflictError": "scalable.errors",
    "ManifestError": "scalable.errors",
    "ManifestNotFoundError": "scalable.errors",
    "RunNotFoundError": "scalable.errors",
    "DestinationExistsError": "scalable.errors",
    "LineageNotFoundError": "scalable.errors",
    "LocalPathError": "scalable.errors",
    "MirrorError": "scalable.errors",
    "MirrorFullError": "scalable.errors",
    "VersionNotSupportedError": "scalable.errors",
    "AmbiguousVersionError": "scalable.errors",
    "StoreLayoutError": "scalable.errors",
    "ScalableError": "scalable.errors",
    "StoreNotFoundError": "scalable.errors",
    "StoreUnavailableError": "scalable.errors",
    "open_uri": "scalable.artifacts.resolve",
    "UnhashableArgumentError": "scalable.errors",
    "UnsupportedURIError": "scalable.errors",
    "Settings": "scalable.manifest",
    "json_schema": "scalable.manifest",
    "load_manifest": "scalable.manifest",
    "resolve_settings": "scalable.manifest",
    "ScalableSession": "scalable.session",
    "current_session": "scalable.session",
    "JsonlStream": "scalable.telemetry",
    "read_events": "scalable.telemetry",
}

__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS, globals())


__all__ = [
    "AccessDeniedError",
    "AmbiguousVersionError",
    "ArtifactChangingError",
    "ArtifactKind",
    "ArtifactKindError",
    "ArtifactNotFoundError",
    "ArtifactRef",
    "ArtifactStore",
    "BucketNotFoundError",
    "CacheDirectoryError",
    "CacheInfo",
    "CallInfo",
    "Catalog",
    "CatalogDamagedError",
    "CatalogError",
    "DestinationExistsError",
    "FormatError",
    "FsspecArtifactStore",
    "IntegrityError",
    "InvalidKeyError",
    "JsonlStream",
    "KeyConflictError",
    "LineageNotFoundError",
    "LocalArtifactStore",
    "LocalPathError",
    "ManifestError",
    "ManifestNotFoundError",
    "MirrorError",
    "MirrorFullError",
    "RunNotFoundError",
    "ScalableError",
    "ScalableSession",
    "Settings",
    "StoreLayoutError",
    "StoreNotFoundError",
    "StoreUnavailableError",
    "UnhashableArgumentError",
    "UnsupportedURIError",
    "VersionNotSupportedError",
    "__version__",
    "build_artifact_store",
    "cacheable",
    "configure_cache",
    "current_session",
    "json_schema",
    "load_manifest",
    "open_uri",
    "read_events",
    "register_artifact_store",
    "resolve_settings",
]
