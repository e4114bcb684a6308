"""Artifact keys: relative POSIX paths that can never reach outside a store's root.

Validation is pure string work and runs before any I/O, so a hostile key costs nothing
and touches nothing.
"""

from __future__ import annotations

from scalable.errors import InvalidKeyError

#: The segment no key may use: the store keeps its records under it (``.scalable/`` at the root,
#: and ``.scalable/versions/<key>/.scalable/<N>`` below each key's folder of records).
RESERVED_SEGMENT = ".scalable"

#: S3 and GCS cap object names at 1024 bytes; the store adds a prefix of its own.
MAX_KEY_BYTES = 900

#: Local filesystems (ext4, XFS, APFS, NTFS) cap one path segment at 255 bytes; a key must fit every backend.
MAX_SEGMENT_BYTES = 255

#: How much of a rejected key an error message echoes.
SHOWN_KEY_CHARS = 80


def shorten(text: str, limit: int = SHOWN_KEY_CHARS) -> str:
    """``text`` cut to ``limit`` characters with the length said, for echoing user input in messages."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 20]}...{text[-12:]} ({len(text)} characters)"


def _reject(key: object, why: str) -> InvalidKeyError:
    shown = repr(shorten(key)) if isinstance(key, str) else repr(key)[:SHOWN_KEY_CHARS]
    return InvalidKeyError(
        f"invalid artifact key {shown}: {why}. Use a relative POSIX path such as 'runs/run-001/output.csv'."
    )


def validate_key(key: str) -> str:
    """Return ``key`` unchanged if it is a safe artifact key, else raise ``InvalidKeyError``.

    A key is a relative POSIX path: non-empty segments of at most 255 bytes separated by
    ``/``, none of them ``.`` or ``..``, no backslashes, no control characters, not
    absolute, at most 900 bytes in all, and no segment ``.scalable`` (reserved for the store's records).
    The same rules hold on every backend, so a key valid on S3 is valid on a local disk.
    """
    if not isinstance(key, str):
        raise _reject(key, f"a key must be a str, not {type(key).__name__}")
    if not key:
        raise _reject(key, "a key must not be empty")
    if key.startswith("/"):
        raise _reject(key, "absolute paths are not allowed")
    if "\\" in key:
        raise _reject(key, "backslashes are not allowed")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in key):
        raise _reject(key, "control characters are not allowed")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise _reject(key, f"keys are limited to {MAX_KEY_BYTES} bytes of UTF-8")
    segments = key.split("/")
    for segment in segments:
        if segment == "":
            raise _reject(key, "empty path segments ('//' or a trailing '/') are not allowed")
        if segment in (".", ".."):
            raise _reject(key, f"'{segment}' segments are not allowed")
        if len(segment.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES:
            raise _reject(
                key, f"a path segment is limited to {MAX_SEGMENT_BYTES} bytes of UTF-8 (file systems cap names there)"
            )
    if segments[0] == RESERVED_SEGMENT:
        raise _reject(key, f"'{RESERVED_SEGMENT}/' is reserved for the store's own records")
    if RESERVED_SEGMENT in segments:
        raise _reject(
            key,
            f"the segment '{RESERVED_SEGMENT}' is reserved for the store's own records (in any position); "
            "rename that segment, for example to '_scalable'",
        )
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise _reject(key, "keys must be valid UTF-8 (no lone surrogates)") from None
    return key


def validate_prefix(prefix: str) -> str:
    """Validate a listing prefix: ``""``, a key, or a key followed by ``/``."""
    if prefix == "":
        return prefix
    validate_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


def ancestors(key: str) -> list[str]:
    """The keys that would contain ``key``: ``a/b/c`` -> ``["a", "a/b"]``."""
    segments = key.split("/")
    return ["/".join(segments[:i]) for i in range(1, len(segments))]


__all__ = [
    "MAX_KEY_BYTES",
    "MAX_SEGMENT_BYTES",
    "RESERVED_SEGMENT",
    "ancestors",
    "shorten",
    "validate_key",
    "validate_prefix",
]
