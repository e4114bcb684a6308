"""Sphinx extension: replace ``% generated: NAME`` lines in pages with text made from the code.

A page asks for a generated section with a MyST comment line of its own, for instance
``% generated: cli-reference``. The line is replaced, when the page is read, by the
markdown that the generator ``NAME`` returns (see :data:`GENERATORS`), so the CLI, the
manifest schema and the event schemas in the docs always match the installed code. Pages
holding a marker are read again on every build, because the code may have changed even
when the page has not.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from cli_reference import cli_reference
from event_reference import event_reference
from schema_reference import manifest_reference

#: Generator name -> function returning markdown.
GENERATORS: dict[str, Callable[[], str]] = {
    "cli-reference": cli_reference,
    "manifest-schema": manifest_reference,
    "event-schemas": event_reference,
}

MARKER = re.compile(r"^% generated: (?P<name>[\w-]+)[ \t]*$", re.MULTILINE)


class UnknownGeneratorError(ValueError):
    """A page names a generator that does not exist."""


def expand(text: str, docname: str = "<page>") -> str:
    """``text`` with every ``% generated: NAME`` line replaced by that generator's markdown."""

    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in GENERATORS:
            raise UnknownGeneratorError(
                f"{docname}: '% generated: {name}' names no generator; known: {', '.join(sorted(GENERATORS))}"
            )
        return GENERATORS[name]().rstrip("\n")

    return MARKER.sub(replace, text)


def _source_read(app: Any, docname: str, source: list[str]) -> None:
    if MARKER.search(source[0]):
        _generated_docs(app.env).add(docname)
        source[0] = expand(source[0], docname)


def _generated_docs(env: Any) -> set[str]:
    if not hasattr(env, "scalable_generated_docs"):
        env.scalable_generated_docs = set()
    return env.scalable_generated_docs  # type: ignore[no-any-return]


def _always_reread(app: Any, env: Any, added: set[str], changed: set[str], removed: set[str]) -> list[str]:
    return sorted(_generated_docs(env) - added - changed - removed)


def _purge(app: Any, env: Any, docname: str) -> None:
    _generated_docs(env).discard(docname)


def _merge(app: Any, env: Any, docnames: set[str], other: Any) -> None:
    _generated_docs(env).update(_generated_docs(other) & docnames)


def setup(app: Any) -> dict[str, Any]:
    """Register the source-read hook and re-read generated pages on every build."""
    app.connect("source-read", _source_read)
    app.connect("env-get-outdated", _always_reread)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
