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

from typing import TYPE_CHECKING

from scalable._lazy import lazy_namespace

# A function named like its module: bound now, so importing the module cannot shadow it.
from scalable.manifest.expand import expand

if TYPE_CHECKING:
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

_EXPORTS = {
    "ManifestError": "scalable.manifest.errors",
    "ManifestNotFoundError": "scalable.manifest.errors",
    "ManifestProblem": "scalable.manifest.errors",
    "DEFAULT_MANIFEST": "scalable.manifest.load",
    "load_manifest": "scalable.manifest.load",
    "parse_manifest": "scalable.manifest.load",
    "PROVIDERS": "scalable.manifest.schema",
    "TARGET_MODELS": "scalable.manifest.schema",
    "DaskTarget": "scalable.manifest.schema",
    "LocalTarget": "scalable.manifest.schema",
    "LSFTarget": "scalable.manifest.schema",
    "Manifest": "scalable.manifest.schema",
    "Overlay": "scalable.manifest.schema",
    "PBSTarget": "scalable.manifest.schema",
    "Project": "scalable.manifest.schema",
    "SGETarget": "scalable.manifest.schema",
    "SlurmTarget": "scalable.manifest.schema",
    "Target": "scalable.manifest.schema",
    "json_schema": "scalable.manifest.schema",
    "ENV_VARS": "scalable.manifest.settings",
    "Settings": "scalable.manifest.settings",
    "resolve_settings": "scalable.manifest.settings",
}

__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS, globals())

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
