"""The effective settings of a run: explicit argument > environment variable > manifest > default.

Environment variables are read when :func:`resolve_settings` is called, never at import.
Relative paths are made absolute: those written in the manifest (and the built-in
defaults, when a manifest file is in use) against the manifest's folder, those from
arguments and environment variables against the current directory. URIs are left as
they are.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr, field_serializer

from scalable.artifacts.uris import redact_uri, split_protocol
from scalable.manifest.load import load_manifest, unknown_name_error
from scalable.manifest.schema import (
    DaskTarget,
    LocalTarget,
    LSFTarget,
    Manifest,
    PBSTarget,
    SGETarget,
    SlurmTarget,
)

#: Built-in defaults: the lowest level of precedence.
DEFAULT_STORAGE = "./artifacts"
DEFAULT_LOCAL_CACHE = "./.scalable/cache"
DEFAULT_RUNS_DIR = "./.scalable/runs"
DEFAULT_TARGET = "local"

#: The environment variables read, by setting.
ENV_VARS = {
    "manifest": "SCALABLE_MANIFEST",
    "target": "SCALABLE_TARGET",
    "default_storage": "SCALABLE_DEFAULT_STORAGE",
    "local_cache": "SCALABLE_CACHE_DIR",
    "cache_remote": "SCALABLE_CACHE_REMOTE",
    "cache_secret": "SCALABLE_CACHE_SECRET",
    "runs_dir": "SCALABLE_RUNS_DIR",
}

#: ``cache_remote`` values (argument or environment) that turn the remote tier off.
REMOTE_OFF = ("off", "none")


class Settings(BaseModel):
    """What a session uses, each value resolved by precedence; ``sources`` says where each came from.

    ``cache_secret`` is a :class:`pydantic.SecretStr`: ``repr``, ``str`` and JSON dumps show
    ``**********``; ``settings.cache_secret.get_secret_value()`` gives the key. Credentials
    in URIs and secret-looking storage and cluster options are masked in ``repr``, ``str``
    and dumps (``model_dump``, ``model_dump_json``) too; the attributes hold the real values.
    """

    model_config = ConfigDict(frozen=True)

    manifest: Manifest
    manifest_path: Path | None
    overlay: str | None
    target_name: str
    target: LocalTarget | DaskTarget | SlurmTarget | PBSTarget | SGETarget | LSFTarget
    default_storage: str
    local_cache: Path
    cache_remote: str | None
    cache_secret: SecretStr | None
    runs_dir: Path
    #: Setting name -> ``"argument"``, the environment variable's name, ``"manifest"`` or ``"default"``.
    sources: dict[str, str]

    @property
    def manifest_text(self) -> str | None:
        """The manifest file as written, secrets masked, for the run's snapshot (``None``: no file)."""
        return self.manifest.snapshot_text()

    def target_options(self) -> dict[str, Any]:
        """The target's options by the cluster's own names: ``cluster_kwargs()`` plus ``jobs``, or ``address``.

        For a batch target, ``jobs`` (if set) is for ``cluster.scale(jobs=...)`` and is not
        a keyword of the cluster class; ``n_workers`` is.
        """
        if isinstance(self.target, DaskTarget):
            return {"address": self.target.address}
        options = self.target.cluster_kwargs()
        jobs = getattr(self.target, "jobs", None)
        if jobs is not None:
            options["jobs"] = jobs
        return options

    def cache_settings(self) -> dict[str, Any]:
        """Keyword arguments for ``scalable.cache.configure_cache(as_defaults=True, ...)``.

        ``local_dir``, ``remote`` (``None``: no remote tier), ``remote_options`` (the
        manifest's storage options for the remote URI) and, when one is set, ``secret`` in
        clear: pass the dict on, do not log it.
        """
        settings: dict[str, Any] = {
            "local_dir": str(self.local_cache),
            "remote": self.cache_remote,
            "remote_options": self.storage_options_for(self.cache_remote) if self.cache_remote else {},
        }
        if self.cache_secret is not None:
            settings["secret"] = self.cache_secret.get_secret_value()
        return settings

    def storage_options_for(self, uri: str | None = None) -> dict[str, Any]:
        """The manifest's storage options for ``uri`` (default: :attr:`default_storage`), longest prefix."""
        return self.manifest.project.storage_options_for(self.default_storage if uri is None else uri)

    @field_serializer("default_storage", "cache_remote")
    def _redacted_uri(self, value: str | None) -> str | None:
        return None if value is None else redact_uri(value)

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if name in ("default_storage", "cache_remote") and isinstance(value, str):
                value = redact_uri(value)
            yield name, value


def resolve_settings(
    manifest: Manifest | str | os.PathLike[str] | None = None,
    *,
    overlay: str | None = None,
    target: str | None = None,
    default_storage: str | os.PathLike[str] | None = None,
    local_cache: str | os.PathLike[str] | None = None,
    cache_remote: str | os.PathLike[str] | None = None,
    cache_secret: str | None = None,
    runs_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """The effective settings: explicit argument > environment variable > manifest > built-in default.

    ``manifest`` is a loaded :class:`Manifest` or a path (``None``: ``SCALABLE_MANIFEST``,
    else ``./scalable.yaml`` if it exists, else built-in defaults). An argument left as
    ``None`` is not given; an empty environment variable counts as unset. ``cache_remote``
    set to ``"off"`` (argument or ``SCALABLE_CACHE_REMOTE``) turns the remote tier off
    whatever the manifest says. ``environ`` defaults to ``os.environ``, read now.

    Raises :class:`~scalable.manifest.ManifestError` for a bad manifest or an unknown
    target (naming the file, the line and the targets there are).
    """
    env = os.environ if environ is None else environ
    if isinstance(manifest, Manifest):
        if overlay is not None and overlay != manifest.overlay:
            raise ValueError("overlay= applies when the manifest is loaded: pass a path, or load it with the overlay")
        loaded = manifest
    else:
        loaded = load_manifest(manifest, overlay=overlay, environ=env)
    project = loaded.project
    manifest_dir = loaded.path.parent if loaded.path is not None else None
    sources: dict[str, str] = {}

    def pick(name: str, argument: Any, from_manifest: Any, default: Any) -> tuple[Any, str]:
        var = ENV_VARS[name]
        for value, source in ((argument, "argument"), (env.get(var) or None, var), (from_manifest, "manifest")):
            if value is not None:
                sources[name] = source
                return (os.fspath(value) if isinstance(value, os.PathLike) else value), source
        sources[name] = "default"
        return default, "default"

    def local_path(value: str, source: str) -> str:
        """Absolute for a local path; a URI (file:// included) is returned as it is."""
        protocol, _ = split_protocol(value)
        if protocol is not None:
            return value
        base = manifest_dir if source in ("manifest", "default") and manifest_dir is not None else Path.cwd()
        return os.path.normpath(os.path.join(base, os.path.expanduser(value)))

    target_name, target_source = pick("target", target, None, DEFAULT_TARGET)
    if target_name not in loaded.targets and target_name != DEFAULT_TARGET:
        raise unknown_name_error(
            loaded,
            "targets",
            "target",
            target_name,
            [*loaded.targets, DEFAULT_TARGET],
            chosen_by=None if target_source == "argument" else target_source,
        )

    storage, source = pick("default_storage", default_storage, project.default_storage, DEFAULT_STORAGE)
    storage = local_path(storage, source)
    cache_dir, source = pick("local_cache", local_cache, project.local_cache, DEFAULT_LOCAL_CACHE)
    cache_dir = local_path(cache_dir, source)
    remote, source = pick("cache_remote", cache_remote, project.cache_remote, None)
    if remote is not None:
        remote = None if remote.strip().lower() in REMOTE_OFF or not remote.strip() else local_path(remote, source)
    secret, _ = pick("cache_secret", cache_secret, None, None)
    runs, source = pick("runs_dir", runs_dir, None, DEFAULT_RUNS_DIR)
    runs = local_path(runs, source)
    sources["manifest"] = "none" if loaded.path is None else str(loaded.path)

    return Settings(
        manifest=loaded,
        manifest_path=loaded.path,
        overlay=loaded.overlay,
        target_name=target_name,
        target=loaded.get_target(target_name),
        default_storage=storage,
        local_cache=Path(cache_dir),
        cache_remote=remote,
        cache_secret=SecretStr(secret) if secret else None,
        runs_dir=Path(runs),
        sources=sources,
    )


__all__ = [
    "DEFAULT_LOCAL_CACHE",
    "DEFAULT_RUNS_DIR",
    "DEFAULT_STORAGE",
    "DEFAULT_TARGET",
    "ENV_VARS",
    "REMOTE_OFF",
    "Settings",
    "resolve_settings",
]
