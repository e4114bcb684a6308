"""URI helpers: protocol splitting and secret redaction."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

_PROTOCOL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_SECRET_PARAMS = re.compile(
    r"(sig|signature|token|key|secret|password|passwd|credential|x-amz-signature|x-amz-credential|"
    r"x-amz-security-token|x-goog-signature|x-goog-credential|sv|se|sp|skoid|sktid)$",
    re.IGNORECASE,
)


#: A URI inside free text (a log line, a manifest value): its scheme is group 1. Written once,
#: here; the telemetry redaction and the manifest snapshot both use it.
URI_IN_TEXT = re.compile(r"(?<![A-Za-z0-9+.-])([A-Za-z][A-Za-z0-9+.-]*)://[^\s\"'<>\\]+")


def split_protocol(uri: str) -> tuple[str | None, str]:
    """``"s3://b/k"`` -> ``("s3", "b/k")``; a plain path -> ``(None, path)``."""
    match = _PROTOCOL.match(uri)
    if match is None:
        return None, uri
    return match.group(1).lower(), uri[match.end() :]


def redact_uri(uri: str) -> str:
    """``uri`` with any ``user:password@`` and secret-looking query values replaced by ``***``."""
    protocol, _ = split_protocol(uri)
    if protocol is None:
        return uri
    try:
        parts = urlsplit(uri)
    except ValueError:  # e.g. "s3://[": too malformed to find its credentials, so hide everything
        return f"{protocol}://***"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if _SECRET_PARAMS.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


#: Characters of a key that ``uri_for`` percent-encodes: each would otherwise read as URI syntax
#: (``#`` the CLI's STORE#KEY separator, ``%`` an escape, ``?`` a query, ``@`` a version suffix).
KEY_RESERVED = "%#?@"


def encode_key(key: str) -> str:
    """``key`` as it appears in a URI: ``%``, ``#``, ``?`` and ``@`` percent-encoded, everything else as is.

    :func:`decode_key` undoes it exactly, so ``uri_for(key)`` names one key without ambiguity.
    """
    return "".join(f"%{ord(ch):02X}" if ch in KEY_RESERVED else ch for ch in key)


def decode_key(text: str) -> str:
    """The key that ``text`` (a key as a URI or the command line writes it) names: ``%XX`` escapes decoded."""
    return unquote(text) if "%" in text else text


__all__ = ["KEY_RESERVED", "URI_IN_TEXT", "decode_key", "encode_key", "redact_uri", "split_protocol"]
