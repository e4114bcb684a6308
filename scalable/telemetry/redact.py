"""Secret redaction for anything written to a stream or a log.

Every URI found in a string (a whole field or inside free text such as an error message)
goes through :func:`scalable.artifacts.uris.redact_uri`: ``user:password@`` becomes
``***@`` and secret-looking query values (signatures, tokens, keys, SAS fields) become
``***``. A URI too malformed to parse is cut down to its scheme.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from scalable.artifacts.uris import URI_IN_TEXT, redact_uri

# A URI runs to the first whitespace, quote, angle bracket or backslash (a JSON escape).


def _redact_match(match: re.Match[str]) -> str:
    uri = match.group(0)
    if "@" not in uri and "?" not in uri:
        return uri  # redact_uri changes only credentials and query strings
    # Punctuation that ends a sentence ("... failed for <uri>: 403") is not part of the URI.
    stripped = uri.rstrip(".,:;!)]}")
    tail = uri[len(stripped) :]
    try:
        return redact_uri(stripped) + tail
    except ValueError:
        return f"{match.group(1)}://***{tail}"


def redact_text(text: str) -> str:
    """``text`` with every URI in it redacted (fast when there is none)."""
    if "://" not in text:
        return text
    return URI_IN_TEXT.sub(_redact_match, text)


def redact(value: Any) -> Any:
    """A copy of ``value`` with every string in it, at any depth (mapping keys too), redacted."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {redact(k) if isinstance(k, str) else k: redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v) for v in value)
    return value


__all__ = ["redact", "redact_text"]
