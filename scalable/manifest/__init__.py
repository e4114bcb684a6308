"""``scalable.yaml``: the manifest schema, its loader and the effective settings.

    from scalable.manifest import load_manifest, resolve_settings

    manifest = load_manifest("scalable.yaml", overlay="cluster")
    settings = resolve_settings(manifest, target="hpc")
    settings.default_storage, settings.target.cluster_kwargs()

Precedence, highest first: explicit argument, environment variable, manifest, built-in
default. A bad manifest raises :class:`ManifestError`, whose message names the file, the
line and the field of every problem. ``json_schema()`` is the schema editors can use.
"""

from __future__ import annotations

from scalable.manifest.errors import ManifestError, ManifestNotFoundError, ManifestProblem
from scalable.manifest.expand import expand
from scalable.manifest.load import DEFAULT_MANIFEST, load_manifest, parse_manifest
from scalable.manifest.schema import (
    PROVIDERS,
    TARGET_MODELS,
    DaskTarget,
    LocalTarget,
    LSFTarget,
    Manifest,
    Overlay,
    PBSTarget,
    Project,
    SGETarget,
    SlurmTarget,
    Target,
    json_schema,
)
from scalable.manifest.settings import ENV_VARS, Settings, resolve_settings

__all__ = [
    "DEFAULT_MANIFEST",
    "ENV_VARS",
    "PROVIDERS",
    "TARGET_MODELS",
    "DaskTarget",
    "LSFTarget",
    "LocalTarget",
    "Manifest",
    "ManifestError",
    "ManifestNotFoundError",
    "ManifestProblem",
    "Overlay",
    "PBSTarget",
    "Project",
    "SGETarget",
    "Settings",
    "SlurmTarget",
    "Target",
    "expand",
    "json_schema",
    "load_manifest",
    "parse_manifest",
    "resolve_settings",
]
