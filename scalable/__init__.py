"""scalable: artifacts, caches and runs for scientific and data workflows.

One artifact API over local disk, S3, GCS and Azure; every artifact carries a SHA-256
digest and size, is never half-written, and is verified on read.
"""

from scalable.artifacts import (
    ArtifactKind,
    ArtifactRef,
    ArtifactStore,
    FsspecArtifactStore,
    LocalArtifactStore,
    build_artifact_store,
    register_artifact_store,
)
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
    FormatError,
    IntegrityError,
    InvalidKeyError,
    KeyConflictError,
    ManifestError,
    ManifestNotFoundError,
    RunNotFoundError,
    ScalableError,
    StoreLayoutError,
    StoreUnavailableError,
    UnhashableArgumentError,
    UnsupportedURIError,
)
from scalable.manifest import Settings, json_schema, load_manifest, resolve_settings
from scalable.session import ScalableSession, current_session
from scalable.telemetry import JsonlStream, read_events

__version__ = "0.1.0"

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
    "FormatError",
    "FsspecArtifactStore",
    "IntegrityError",
    "InvalidKeyError",
    "JsonlStream",
    "KeyConflictError",
    "LocalArtifactStore",
    "ManifestError",
    "ManifestNotFoundError",
    "RunNotFoundError",
    "ScalableError",
    "ScalableSession",
    "Settings",
    "StoreLayoutError",
    "StoreUnavailableError",
    "UnhashableArgumentError",
    "UnsupportedURIError",
    "__version__",
    "build_artifact_store",
    "cacheable",
    "configure_cache",
    "current_session",
    "json_schema",
    "load_manifest",
    "read_events",
    "register_artifact_store",
    "resolve_settings",
]
