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
from urllib.parse import unquote, urlsplit

from scalable.artifacts.keys import validate_key, validate_prefix
from scalable.artifacts.uris import redact_uri, split_protocol
from scalable.errors import ArtifactNotFoundError, InvalidKeyError, UnsupportedURIError

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
    return UnsupportedURIError(f"cannot parse {redact_uri(text)!r}: {why}; {ACCEPTED_FORMS}")


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
    store, _, key = text.partition("#")
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


def _local_root(uri: str, protocol: str | None) -> Path:
    if protocol is None:
        return Path(uri).expanduser().absolute()
    return Path(unquote(urlsplit(uri).path)).absolute()


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
    if need_key:
        if not key:
            hint = f"{store_text or ''}#runs/a.csv"
            raise UnsupportedURIError(
                f"{redact_uri(text)!r} names a store but no artifact: add #KEY, as in {hint!r}; {ACCEPTED_FORMS}"
            )
        validate_key(key)

    from scalable.artifacts.factory import build_artifact_store
    from scalable.manifest import resolve_settings

    settings = resolve_settings()
    uri = store_text or settings.default_storage
    protocol, _ = split_protocol(uri)
    if protocol in _LOCAL and not create:
        root = _local_root(uri, protocol)
        where = "" if store_text else f" (the default store, {_default_origin(settings.sources)})"
        if not root.is_dir():
            raise ArtifactNotFoundError(
                f"no artifact store at {root}{where}: the folder does not exist; check the path "
                "(a store is created by its first put)"
            )
        if not (root / ".scalable").is_dir():
            raise ArtifactNotFoundError(
                f"{root} is not an artifact store (it has no .scalable folder): check the path "
                "(a store is created by its first put)"
            )
    try:
        store = build_artifact_store(uri, **settings.storage_options_for(uri))
    except UnsupportedURIError as exc:
        message = str(exc)
        if "unknown URI scheme" in message:
            raise UnsupportedURIError(f"{message}; {ACCEPTED_FORMS}") from None
        raise
    return store, key  # type: ignore[return-value]


def artifact_not_found(store: BaseArtifactStore, key: str, store_text: str) -> ArtifactNotFoundError:
    """The CLI's wording of a missing key: which store, and the command that lists its keys."""
    listing = f"scalable ls '{store_text}#{key.rpartition('/')[0]}'" if "/" in key else f"scalable ls '{store_text}#'"
    return ArtifactNotFoundError(f"no artifact {key!r} in {store.uri}: list the keys with {listing}")


__all__ = ["ACCEPTED_FORMS", "artifact_not_found", "open_store", "parse_artifact_uri", "split_version"]
