"""``open_uri``: from what ``ref.uri`` prints (or ``STORE#KEY``) back to the store and the key.

``ref.uri`` is ``<store uri>/<key>``, the key's ``%``, ``#``, ``?`` and ``@`` percent-encoded
(:func:`~scalable.artifacts.uris.encode_key`). Where the store ends is not written in the
URI, so it is found: for a local URI, the nearest folder above it that holds a
``.scalable`` folder; for an object store, the deepest prefix whose store has that key
(one look-up per candidate, deepest first). ``STORE#KEY`` says where the store ends and
needs no look-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from scalable.artifacts.uris import decode_key, redact_uri, split_protocol
from scalable.errors import ArtifactNotFoundError, UnsupportedURIError

if TYPE_CHECKING:
    from scalable.artifacts.store import BaseArtifactStore

_LOCAL = (None, "file", "local")
#: How many prefixes of an object-store URI are tried as the store's root (deepest first).
MAX_ROOT_CANDIDATES = 8


def local_path(uri: str) -> Path:
    """The absolute local path a plain path or ``file://`` URI names (``%XX`` decoded in a ``file://`` URI)."""
    protocol, _ = split_protocol(uri)
    if protocol is None:
        return Path(uri).expanduser().absolute()
    return Path(unquote(urlsplit(uri).path)).absolute()


def _build(uri: str, storage_options: dict[str, Any]) -> BaseArtifactStore:
    from scalable.artifacts.factory import build_artifact_store

    return build_artifact_store(uri, **storage_options)  # type: ignore[return-value]


def split_ref_uri(uri: str, storage_options: dict[str, Any] | None = None) -> tuple[str, str]:
    """``(store_uri, key)`` for a ref's ``uri``: find where its store ends (see the module docstring).

    Raises :class:`~scalable.errors.ArtifactNotFoundError` when no store above it holds the key.
    """
    options = dict(storage_options or {})
    protocol, rest = split_protocol(uri)
    if protocol in _LOCAL:
        path = local_path(uri)
        for root in path.parents:
            if (root / ".scalable").is_dir():
                return str(root), path.relative_to(root).as_posix()
        raise ArtifactNotFoundError(
            f"no artifact store holds {path}: no folder above it has a .scalable folder; "
            "name the artifact as STORE#KEY (./store#runs/a.csv)"
        )
    parts = [p for p in rest.split("/") if p]
    if len(parts) < 2:
        raise UnsupportedURIError(
            f"{redact_uri(uri)!r} names a bucket but no artifact: name it as STORE#KEY (s3://bucket/prefix#runs/a.csv)"
        )
    for cut in range(len(parts) - 1, max(0, len(parts) - 1 - MAX_ROOT_CANDIDATES), -1):
        root = f"{protocol}://{'/'.join(parts[:cut])}"
        key = decode_key("/".join(parts[cut:]))
        if _build(root, options).exists(key):
            return root, key
    raise ArtifactNotFoundError(
        f"no artifact at {redact_uri(uri)}: no store above it has that key; "
        "name it as STORE#KEY (s3://bucket/prefix#runs/a.csv) if the store is elsewhere"
    )


def open_uri(uri: str, **storage_options: Any) -> tuple[BaseArtifactStore, str]:
    """The store and the key that ``uri`` names: what ``ref.uri`` prints, or ``STORE#KEY``.

    >>> store, key = open_uri(ref.uri)        # doctest: +SKIP
    >>> store.get(key, "out.csv")             # doctest: +SKIP

    ``storage_options`` go to :func:`~scalable.artifacts.factory.build_artifact_store`. In
    ``STORE#KEY`` the key is percent-decoded as in ``ref.uri`` (write ``%25`` for a literal
    ``%``). Raises :class:`~scalable.errors.ArtifactNotFoundError` when no store holds a ref
    URI's key, and :class:`~scalable.errors.UnsupportedURIError` for text that names no artifact.
    """
    from scalable.artifacts.keys import validate_key

    if not isinstance(uri, str) or not uri.strip():
        raise UnsupportedURIError("open_uri() needs a URI: what ref.uri prints, or STORE#KEY")
    if "#" in uri:
        store_uri, _, key = uri.partition("#")
        if not store_uri:
            raise UnsupportedURIError(
                f"{uri!r} names no store: open_uri() needs STORE#KEY or a ref's uri (#KEY is the command line's "
                "default store)"
            )
        key = decode_key(key)
    else:
        store_uri, key = split_ref_uri(uri, storage_options)
    validate_key(key)
    return _build(store_uri, storage_options), key


__all__ = ["MAX_ROOT_CANDIDATES", "local_path", "open_uri", "split_ref_uri"]
