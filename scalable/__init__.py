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
from scalable.errors import (
    AccessDeniedError,
    ArtifactKindError,
    ArtifactNotFoundError,
    BucketNotFoundError,
    FormatError,
    IntegrityError,
    InvalidKeyError,
    KeyConflictError,
    ManifestError,
    ManifestNotFoundError,
    ScalableError,
    StoreUnavailableError,
    UnsupportedURIError,
)
from scalable.manifest import Settings, json_schema, load_manifest, resolve_settings
from scalable.telemetry import JsonlStream, read_events

__version__ = "0.1.0"

__all__ = [
    "AccessDeniedError",
    "ArtifactKind",
    "ArtifactKindError",
    "ArtifactNotFoundError",
    "ArtifactRef",
    "ArtifactStore",
    "BucketNotFoundError",
    "FormatError",
    "FsspecArtifactStore",
    "IntegrityError",
    "InvalidKeyError",
    "JsonlStream",
    "KeyConflictError",
    "LocalArtifactStore",
    "ManifestError",
    "ManifestNotFoundError",
    "ScalableError",
    "Settings",
    "StoreUnavailableError",
    "UnsupportedURIError",
    "__version__",
    "build_artifact_store",
    "json_schema",
    "load_manifest",
    "read_events",
    "register_artifact_store",
    "resolve_settings",
]
