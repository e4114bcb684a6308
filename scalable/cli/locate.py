"""Where a command-line argument points: ``STORE#KEY``, ``STORE`` or ``#KEY``.

Every command names artifacts the same way:

* ``STORE#KEY``: the artifact ``KEY`` in the store at ``STORE`` (a path, ``file://``,
  ``s3://bucket/prefix``, ``gs://...``, any URI :func:`~scalable.build_artifact_store` takes);
* ``STORE`` (or ``STORE#``): the whole store, for ``ls`` and ``verify``; ``STORE#PREFIX``
  limits those to keys starting with ``PREFIX``;
* ``STORE#KEY@N`` / ``STORE#KEY@sha256:<hex prefix>``: version ``N`` of the artifact, or its
  newest version with that content (``get``, ``info``, ``cat``-like commands);
* ``#KEY`` (or ``#`` alone): the default store of the manifest (``SCALABLE_DEFAULT_STORAGE``,
  else ``project.default_storage`` of ``scalable.yaml``, else ``./artifacts``).

The text is split at its first ``#``: a store path cannot contain ``#``, a key can.
Storage options (endpoints, credentials) come from the manifest's ``storage_options``
for the store's URI, and from the driver's usual environment variables
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...).

Two kinds of failure, two exit codes: :func:`parse_artifact_uri` checks the text alone
(commands call it while parsing their arguments, so a malformed URI is a usage error,
exit 2); :func:`open_store` finds out whether the store can be opened (an unknown scheme,
a missing driver, a local store that does not exist: a failure, exit 1).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from scalable.artifacts.keys import shorten, validate_key, validate_prefix
from scalable.artifacts.resolve import local_path
from scalable.artifacts.uris import decode_key, redact_uri, split_protocol
from scalable.errors import (
    ArtifactNotFoundError,
    InvalidKeyError,
    ScalableError,
    StoreNotFoundError,
    UnsupportedURIError,
)

if TYPE_CHECKING:
    from scalable.artifacts.store import BaseArtifactStore

#: How an artifact is named on the command line, for error messages.
ACCEPTED_FORMS = (
    "name an artifact as STORE#KEY (./store#runs/a.csv, s3://bucket/prefix#runs/a.csv), "
    "a whole store as STORE, or use #KEY for the default store"
)

# ``name:`` not followed by ``//``: a URI with a typo in its ``://`` (``s3:/bucket``, ``s3:bucket``).
_BROKEN_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]+):(?!//)")
_LOCAL = (None, "file", "local")


def _bad(text: str, why: str) -> UnsupportedURIError:
    return UnsupportedURIError(f"cannot parse {shorten(redact_uri(text))!r}: {why}; {ACCEPTED_FORMS}")


def parse_artifact_uri(text: str) -> tuple[str, str]:
    """Split ``STORE#KEY`` into ``(store_uri, key)``, checking the text only (no I/O, no manifest).

    ``store_uri`` is ``""`` for the default store (``#KEY``); ``key`` is ``""`` when only a
    store is named. A non-empty key is checked as a listing prefix (a key, or a key and a
    trailing ``/``); :func:`open_store` checks it as a key when one is needed. Raises
    :class:`~scalable.errors.UnsupportedURIError` (a ``ScalableError``) with one line that
    says what is wrong and shows the accepted forms.
    """
    if not isinstance(text, str) or not text.strip():
        raise _bad(str(text), "it is empty")
    if text != text.strip():
        raise _bad(text, "it starts or ends with whitespace")
    store, key = split_store_key(text)
    if store:
        protocol, rest = split_protocol(store)
        if protocol is None:
            broken = _BROKEN_SCHEME.match(store)
            if broken and len(broken.group(1)) > 1:  # one letter: a Windows drive (C:\...)
                raise _bad(
                    text, f"{broken.group(1)!r} looks like a scheme without '://' (write {broken.group(1)}://...)"
                )
        elif protocol not in _LOCAL and not rest.strip("/"):
            raise _bad(text, f"the {protocol}:// URI names no bucket or container")
    if key:
        try:
            validate_prefix(key)
        except InvalidKeyError as exc:
            raise _bad(text, str(exc).split(". Use ")[0]) from None
    return store, key


def split_store_key(text: str) -> tuple[str, str]:
    """``STORE#KEY`` split at its first ``#``; the key's ``%XX`` escapes decoded, as in ``ref.uri``.

    So ``%23`` is a ``#``, ``%40`` an ``@`` and ``%25`` a ``%`` in a key; a ``#`` after the
    first one is part of the key.
    """
    store, _, key = text.partition("#")
    return store, decode_key(key)


#: ``KEY@N`` or ``KEY@sha256:<hex prefix>`` at the end of a key: a version of the artifact.
_VERSION_SUFFIX = re.compile(r"@(?:([1-9][0-9]*)|(sha256:[0-9a-fA-F]{1,64}))$")


def split_version(key: str) -> tuple[str, int | str | None]:
    """Split ``KEY@N`` / ``KEY@sha256:<hex prefix>`` into the key and the version (``None`` if none is given).

    A key whose own name ends in ``@<digits>`` is named with an explicit version, ``KEY@N@M``.
    """
    match = _VERSION_SUFFIX.search(key)
    if match is None or match.start() == 0:
        return key, None
    number, digest = match.groups()
    return key[: match.start()], int(number) if number else digest.lower()


def split_version_text(text: str) -> tuple[str, int | str | None]:
    """``STORE#KEY@N`` (or a ref's uri ending in ``@N``) as the text without its version, and the version.

    The version is split off the text as typed, before the key's ``%XX`` escapes are decoded,
    so ``%40`` stays a literal ``@`` of the key.
    """
    store, sep, raw_key = text.partition("#")
    if not sep:
        return split_version(text)
    raw_key, version = split_version(raw_key)
    return f"{store}#{raw_key}", version


def _local_root(uri: str, protocol: str | None) -> Path:
    return local_path(uri)


def _store_above(path: Path) -> tuple[str, str] | None:
    """``(store root, key)`` when ``path`` lies inside a local store, else ``None``."""
    from scalable.artifacts.resolve import split_ref_uri

    try:
        return split_ref_uri(str(path))
    except ScalableError:
        return None


def _no_manifest() -> bool:
    from scalable.project import project_manifest

    return project_manifest() is None


def _default_origin(sources: dict[str, str]) -> str:
    source = sources.get("default_storage", "default")
    if source == "default":
        return "built in: set SCALABLE_DEFAULT_STORAGE or project.default_storage in scalable.yaml"
    if source == "manifest":
        return f"from {sources.get('manifest', 'the manifest')}"
    return f"from ${source}"


def open_store(text: str, *, need_key: bool, create: bool = False) -> tuple[BaseArtifactStore, str]:
    """Parse ``text`` and build its store; return ``(store, key)`` (``key`` is a prefix if not ``need_key``).

    ``need_key``: the command acts on one artifact (``get``, ``info``, ``rm``...), so the
    text must name a key. ``create``: the command writes (``put``), so a local store that
    does not exist yet is created; otherwise a missing local store is an error rather than
    a new empty folder. Storage options come from the manifest
    (``resolve_settings().storage_options_for(uri)``); ``#KEY`` uses its default store.
    Raises a :class:`~scalable.errors.ScalableError` for every problem a user can cause.
    """
    store_text, key = parse_artifact_uri(text)
    if need_key and store_text and not key and "#" not in text:
        return open_ref_uri(store_text)
    if need_key:
        if not key:
            hint = f"{store_text or ''}#runs/a.csv"
            raise UnsupportedURIError(
                f"{redact_uri(text)!r} names a store but no artifact: add #KEY, as in {hint!r}; {ACCEPTED_FORMS}"
            )
        validate_key(key)

    protocol, _ = split_protocol(store_text)
    settings = None
    if not (store_text and protocol in _LOCAL and _no_manifest()):
        # Only a manifest can add storage options to a named local store: without one, skip loading it.
        from scalable.manifest import resolve_settings

        settings = resolve_settings()
    uri = store_text or settings.default_storage  # type: ignore[union-attr]
    protocol, _ = split_protocol(uri)
    if protocol in _LOCAL and not create:
        root = _local_root(uri, protocol)
        where = "" if store_text else f" (the default store, {_default_origin(settings.sources)})"  # type: ignore[union-attr]
        if store_text and not key and not (root / ".scalable").is_dir():
            inside = _store_above(root)
            if inside is not None:  # a ref's uri (or a path inside a store): that store, and the key as prefix
                return open_store(f"{inside[0]}#{inside[1].replace('%', '%25')}", need_key=need_key)
        if not root.is_dir():
            raise StoreNotFoundError(
                f"no artifact store at {root}{where}: the folder does not exist; check the path "
                "(a store is created by its first put)"
            )
        if not (root / ".scalable").is_dir():
            raise StoreNotFoundError(
                f"{root}{where} is not an artifact store (it has no .scalable folder): check the path "
                "(a store is created by its first put)"
            )
    if settings is None:
        from scalable.artifacts.local import LocalArtifactStore

        return LocalArtifactStore(_local_root(uri, protocol)), key
    from scalable.artifacts.factory import build_artifact_store

    try:
        store = build_artifact_store(uri, **settings.storage_options_for(uri))
    except UnsupportedURIError as exc:
        message = str(exc)
        if "unknown URI scheme" in message:
            raise UnsupportedURIError(f"{message}; {ACCEPTED_FORMS}") from None
        raise
    if protocol not in _LOCAL:
        from scalable.artifacts.reach import probe_store

        probe_store(store)  # a dead endpoint fails in bounded time, before the driver's own retries
    if not need_key and not create:
        store.check()  # an unreachable service, a missing bucket: the error info gives, not "0 artifacts"
    return store, key  # type: ignore[return-value]


def open_ref_uri(text: str) -> tuple[BaseArtifactStore, str]:
    """The store and key of a ref's ``uri`` (``<store uri>/<key>``, no ``#``): see :mod:`scalable.artifacts.resolve`."""
    from scalable.artifacts.resolve import open_uri, split_ref_uri
    from scalable.manifest import resolve_settings

    protocol, _ = split_protocol(text)
    if protocol in _LOCAL and (local_path(text) / ".scalable").is_dir():
        raise UnsupportedURIError(
            f"{redact_uri(text)!r} names a store but no artifact: add #KEY, as in {text + '#runs/a.csv'!r}; "
            f"{ACCEPTED_FORMS}"
        )
    settings = resolve_settings()
    options = {} if protocol in _LOCAL else settings.storage_options_for(text)
    try:
        store_uri, key = split_ref_uri(text, options)
    except ArtifactNotFoundError:
        if protocol not in _LOCAL:
            raise
        raise UnsupportedURIError(
            f"{redact_uri(text)!r} names a store but no artifact (and no store above it holds it as a ref's uri): "
            f"add #KEY, as in {text + '#runs/a.csv'!r}; {ACCEPTED_FORMS}"
        ) from None
    validate_key(key)
    return open_uri(f"{store_uri}#{key.replace('%', '%25')}", **settings.storage_options_for(store_uri))


def artifact_not_found(store: BaseArtifactStore, key: str, store_text: str) -> ArtifactNotFoundError:
    """The CLI's wording of a missing key: which store, and the command that lists its keys."""
    listing = f"scalable ls '{store_text}#{key.rpartition('/')[0]}'" if "/" in key else f"scalable ls '{store_text}#'"
    return ArtifactNotFoundError(f"no artifact {key!r} in {store.uri}: list the keys with {listing}")


__all__ = [
    "ACCEPTED_FORMS",
    "artifact_not_found",
    "open_ref_uri",
    "open_store",
    "parse_artifact_uri",
    "split_store_key",
    "split_version",
    "split_version_text",
]
