"""``build_artifact_store(uri)``: one call from a URI or path to a store.

A plain path (absolute, relative, ``~``) or ``file://`` gives a
:class:`~scalable.artifacts.local.LocalArtifactStore`; ``s3://`` and ``az://`` (and their
aliases) give the native :class:`~scalable.artifacts.obstore_store.ObstoreArtifactStore`
unless the transport is ``fsspec`` (the ``transport`` argument, else ``SCALABLE_TRANSPORT``,
else the manifest); any other fsspec protocol, and those with ``transport="fsspec"``, gives a
:class:`~scalable.artifacts.fsspec_store.FsspecArtifactStore` (``S3ArtifactStore`` for S3). Plugins add or replace
schemes through the ``scalable.artifact_stores`` entry-point group: each entry point is
named after its scheme and loads a callable ``(uri, **storage_options) -> store``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import unquote

from fsspec.registry import get_filesystem_class, known_implementations, registry

from scalable.artifacts import fsspec_view
from scalable.artifacts.base import ArtifactStore
from scalable.artifacts.fsspec_store import FsspecArtifactStore
from scalable.artifacts.local import LocalArtifactStore
from scalable.artifacts.transport_errors import SERVICE_OF
from scalable.artifacts.uris import redact_uri, split_protocol
from scalable.errors import UnsupportedURIError

StoreFactory = Callable[..., ArtifactStore]

ENTRY_POINT_GROUP = "scalable.artifact_stores"

#: The ``pip install 'scalable[extra]'`` that brings each protocol's fsspec driver: the
#: extras are named after the services (``s3``, ``gcs``, ``azure``).
EXTRAS = SERVICE_OF

#: Schemes with a store of their own (``module:class``, imported on first use) instead of the generic one.
BUILTIN_STORES = {
    "s3": "scalable.artifacts.s3:S3ArtifactStore",
    "s3a": "scalable.artifacts.s3:S3ArtifactStore",
}

#: Options that configure the store itself rather than its filesystem.
STORE_OPTIONS = ("max_concurrency", "create", "retry_policy", "keep_versions")

# scalable:// (ref.url) opens with fsspec in any process that builds a store, entry point or not.
fsspec_view.register()

#: Schemes served by the native (obstore) transport by default.
NATIVE_STORE = "scalable.artifacts.obstore_store:ObstoreArtifactStore"
NATIVE_SCHEMES = frozenset({"s3", "s3a", "az", "abfs", "abfss"})
TRANSPORT_ENV = "SCALABLE_TRANSPORT"
TRANSPORTS = ("native", "fsspec")


def _transport(explicit: Any, text: str) -> str:
    """The transport asked for: the argument, else ``SCALABLE_TRANSPORT``, else ``native``."""
    value = explicit if explicit is not None else (os.environ.get(TRANSPORT_ENV) or "native")
    value = {"obstore": "native", "auto": "native"}.get(str(value).lower(), str(value).lower())
    if value not in TRANSPORTS:
        where = "transport=" if explicit is not None else f"${TRANSPORT_ENV}="
        raise UnsupportedURIError(
            f"{where}{value!r} for {redact_uri(text)!r} is not a transport: use 'native' (obstore, for s3:// "
            "and az://) or 'fsspec'"
        )
    return value


def _load(spec: str) -> Any:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


_registry: dict[str, StoreFactory] = {}
_entry_points_loaded = False


def register_artifact_store(scheme: str, factory: StoreFactory) -> None:
    """Make ``build_artifact_store`` build ``scheme://...`` URIs with ``factory``."""
    _registry[scheme.lower()] = factory


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        _registry.setdefault(ep.name.lower(), ep.load())


def _local_path(uri: str, protocol: str | None, rest: str) -> str:
    if protocol is None:
        return uri
    host, slash, path = rest.partition("/")
    if host not in ("", "localhost"):
        raise UnsupportedURIError(
            f"file URI {uri!r} names host {host!r}: only local file URIs (file:///path) are supported"
        )
    return unquote(slash + path)


def build_artifact_store(uri: str | os.PathLike[str], **storage_options: Any) -> ArtifactStore:
    """Build the artifact store for ``uri``; ``storage_options`` reach its filesystem.

    >>> store = build_artifact_store("./artifacts")            # doctest: +SKIP
    >>> store = build_artifact_store("s3://bucket/prefix",      # doctest: +SKIP
    ...     endpoint_url="http://127.0.0.1:8333", key="...", secret="...")

    ``transport="fsspec"`` (or ``SCALABLE_TRANSPORT=fsspec``) builds ``s3://`` and ``az://``
    stores on s3fs/adlfs instead of the native obstore transport; other schemes ignore it.
    """
    text = os.fspath(uri)
    if not isinstance(text, str) or not text:
        raise UnsupportedURIError(f"{uri!r} is not a store URI: give a path or a URI such as s3://bucket/prefix")
    protocol, rest = split_protocol(text)
    transport = _transport(storage_options.pop("transport", None), text)
    store_kwargs = {k: storage_options.pop(k) for k in STORE_OPTIONS if k in storage_options}
    if protocol in (None, "file", "local"):
        store_kwargs.pop("create", None)  # a local store always creates its root
        if "retry_policy" in store_kwargs:
            raise UnsupportedURIError(f"local store {text!r} does not retry: retry_policy is for object stores")
        local_kwargs = {**store_kwargs}
        if "durable" in storage_options:
            local_kwargs["durable"] = storage_options.pop("durable")
        if storage_options:
            raise UnsupportedURIError(f"local store {text!r} takes no storage options, got {sorted(storage_options)}")
        return LocalArtifactStore(_local_path(text, protocol, rest), **local_kwargs)
    _load_entry_points()
    assert protocol is not None
    if protocol in _registry:
        return _registry[protocol](text, **store_kwargs, **storage_options)
    if protocol in NATIVE_SCHEMES and transport == "native":
        native = _load(NATIVE_STORE)
        for option in native.store_options:  # part_size, deadlines, ...
            if option in storage_options:
                store_kwargs[option] = storage_options.pop(option)
        return native(text, storage_options=storage_options, **store_kwargs)  # type: ignore[no-any-return]
    if protocol not in known_implementations and protocol not in registry:
        raise UnsupportedURIError(
            f"unknown URI scheme {protocol!r} in {redact_uri(text)!r}: use a path, file://, s3://, gs://, "
            "az://, memory:// or another fsspec protocol, or register one under the "
            f"'{ENTRY_POINT_GROUP}' entry-point group"
        )
    try:
        get_filesystem_class(protocol)
    except (ImportError, AttributeError) as exc:  # AttributeError: a driver that dropped the class (adl://)
        extra = EXTRAS.get(protocol)
        how = f"pip install 'scalable[{extra}]'" if extra else f"install the fsspec driver for {protocol}://"
        raise UnsupportedURIError(f"the {protocol}:// driver is not installed ({exc}): {how}") from None
    store_class: type[FsspecArtifactStore] = FsspecArtifactStore
    if protocol in BUILTIN_STORES:
        store_class = _load(BUILTIN_STORES[protocol])
    for option in getattr(store_class, "store_options", ()):  # deadlines; part_size for S3
        if option in storage_options:
            store_kwargs[option] = storage_options.pop(option)
    return store_class(text, storage_options=storage_options, **store_kwargs)


__all__ = ["ENTRY_POINT_GROUP", "NATIVE_SCHEMES", "TRANSPORT_ENV", "build_artifact_store", "register_artifact_store"]
