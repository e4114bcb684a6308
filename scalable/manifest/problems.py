"""Problems named in a manifest's words: an unknown target or overlay, with a did-you-mean hint.

Shared by the schema (``Manifest.target``) and the loader (overlays), which therefore do not
import each other. The manifest's source (file label and line lookup) is read from
``manifest._source``, set by the loader.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from scalable.errors import ManifestError, ManifestProblem


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices``, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown_name_error(
    manifest: Any,
    section: str,
    what: str,
    name: str,
    choices: Iterable[str],
    *,
    chosen_by: str | None = None,
    source: Any = None,
) -> ManifestError:
    """The error for a target or overlay ``name`` that ``section`` does not define."""
    src = source if source is not None else getattr(manifest, "_source", None)
    names = sorted(set(choices))
    hint = did_you_mean(name, names)
    listed = f" ({section}: {', '.join(names)})" if names else f" (the manifest has no {section})"
    by = f" (chosen by {chosen_by})" if chosen_by else ""
    line = src.line_of((section,)) if src is not None else None
    label = src.label if src is not None else None
    return ManifestError(label, [ManifestProblem(line, section, f"no {what} named {name!r}{by}{hint}{listed}")])


__all__ = ["did_you_mean", "unknown_name_error"]
