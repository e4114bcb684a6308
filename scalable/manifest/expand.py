"""``${VAR}`` and ``${VAR:-default}`` expansion of manifest values.

The rules, kept small on purpose (a subset of POSIX shell and docker compose):

- ``${NAME}`` is the value of the environment variable ``NAME``; unset is an error, so a
  missing setting stops the load instead of becoming an empty path.
- ``${NAME:-default}`` is the default when ``NAME`` is unset *or empty*. The default may
  itself hold references (``${A:-${B:-x}}``), expanded only when it is used.
- ``$$`` is a literal ``$``. A ``$`` not followed by ``{`` or ``$`` is left as it is, so
  passwords and regular expressions with a lone ``$`` survive.
- A variable's value is inserted as text and never expanded again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ExpansionError(ValueError):
    """A reference is malformed or names an unset variable (the loader adds file and line)."""


def expand(text: str, environ: Mapping[str, str]) -> str:
    """``text`` with every ``${...}`` reference replaced and ``$$`` turned into ``$``."""
    if "$" not in text:
        return text
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "$" and i + 1 < n:
            following = text[i + 1]
            if following == "$":
                out.append("$")
                i += 2
                continue
            if following == "{":
                value, i = _reference(text, i, environ)
                out.append(value)
                continue
        out.append(char)
        i += 1
    return "".join(out)


def _reference(text: str, start: int, environ: Mapping[str, str]) -> tuple[str, int]:
    """Expand the reference that begins at ``text[start] == "$"``; return (value, index after it)."""
    match = _NAME.match(text, start + 2)
    if match is None:
        raise ExpansionError(f"malformed reference {_excerpt(text, start)}: write ${{NAME}} or ${{NAME:-default}}")
    name, pos = match.group(0), match.end()
    if text.startswith("}", pos):
        value = environ.get(name)
        if value is None:
            raise ExpansionError(
                f"${{{name}}} is not set: set the environment variable {name}, "
                f"or give a default with ${{{name}:-value}}"
            )
        return value, pos + 1
    if text.startswith(":-", pos):
        end = _closing_brace(text, pos + 2)
        if end < 0:
            raise ExpansionError(f"unclosed reference {_excerpt(text, start)}: add the closing '}}'")
        value = environ.get(name)
        if not value:
            value = expand(text[pos + 2 : end], environ)
        return value, end + 1
    raise ExpansionError(f"malformed reference {_excerpt(text, start)}: write ${{NAME}} or ${{NAME:-default}}")


def _closing_brace(text: str, pos: int) -> int:
    """Index of the ``}`` that closes a default starting at ``pos`` (nested ``${...}`` skipped), or -1."""
    depth = 0
    n = len(text)
    while pos < n:
        if text.startswith("$$", pos):
            pos += 2
            continue
        if text.startswith("${", pos):
            depth += 1
            pos += 2
            continue
        if text[pos] == "}":
            if depth == 0:
                return pos
            depth -= 1
        pos += 1
    return -1


def _excerpt(text: str, start: int) -> str:
    end = text.find("}", start)
    piece = text[start : end + 1] if 0 <= end < start + 60 else text[start : start + 20] + "..."
    return repr(piece)


__all__ = ["ExpansionError", "expand"]
