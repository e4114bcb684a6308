"""Finding the project, as git finds a repository: the nearest ``scalable.yaml`` here or above.

``SCALABLE_MANIFEST`` names the manifest outright; otherwise the current folder and each of
its parents, up to the filesystem's root, are looked at in turn and the first
``scalable.yaml`` found is the project's. Its folder is the project root: relative paths
in it, and the default ``.scalable/`` (catalog, runs, local cache), are taken from there,
so a command or a script run from ``proj/sub/`` sees the same project as from ``proj/``.
This module imports nothing (it sits beside ``scalable.errors``, below every layer): the
manifest, the cache, the catalog and the command line all use it, the last at startup.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

#: The manifest's file name.
MANIFEST_NAME = "scalable.yaml"
MANIFEST_ENV = "SCALABLE_MANIFEST"


def find_manifest(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The nearest ``scalable.yaml`` in ``start`` (default: the current folder) or its parents, or ``None``."""
    here = Path(start if start is not None else os.getcwd()).absolute()
    for folder in (here, *here.parents):
        candidate = folder / MANIFEST_NAME
        if candidate.is_file():
            return candidate
    return None


def project_manifest(environ: Mapping[str, str] | None = None) -> Path | None:
    """The manifest in use: ``SCALABLE_MANIFEST`` if set (whether or not it exists), else :func:`find_manifest`."""
    env = os.environ if environ is None else environ
    named = env.get(MANIFEST_ENV, "").strip()
    if named:
        return Path(named).expanduser()
    return find_manifest()


def project_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """The folder of the project's manifest (``None`` without one: defaults are relative to the current folder)."""
    manifest = project_manifest(environ)
    return manifest.absolute().parent if manifest is not None else None


__all__ = ["MANIFEST_ENV", "MANIFEST_NAME", "find_manifest", "project_dir", "project_manifest"]
