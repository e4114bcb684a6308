"""The telemetry event reference, as markdown, generated from the pydantic models.

One table per event model of :mod:`scalable.telemetry.events` (the common fields of
``Event`` first): field, type, required or default, and the attribute docstring written
under the field in the model's source. What a stream line may hold is therefore exactly
what the models validate.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import json
import re
import textwrap
import types
import typing
from typing import Any


def _field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (a string literal right after ``name: type = ...``) of ``cls`` itself."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, after in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _type_name(annotation: Any) -> str:
    """``str | None``, ``"hit" | "miss" | None``, ``dict[str, Any]``: the annotation as a reader writes it."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " | ".join(json.dumps(value) for value in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return "None"
    if origin is not None:
        args = ", ".join(_type_name(arg) for arg in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', origin)}[{args}]"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: Any) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        factory = getattr(field.default_factory, "__name__", "")
        return {"dict": "`{}`", "list": "`[]`", "utc_now": "now (UTC)", "_host": "this host", "getpid": "this pid"}.get(
            factory, "computed"
        )
    return f"`{field.default!r}`"


def _cell(text: str) -> str:
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", text.replace("``", "`"))
    return " ".join(text.split()).replace("|", "\\|")


def _docstring(cls: type) -> str:
    return _cell((inspect.getdoc(cls) or "").split("\n\n")[0])


def _table(model: type, fields: list[str], docs: dict[str, str]) -> list[str]:
    rows = ["| field | type | default | meaning |", "|---|---|---|---|"]
    for name in fields:
        info = model.model_fields[name]  # type: ignore[attr-defined]
        rows.append(
            f"| `{name}` | `{_cell(_type_name(info.annotation))}` | {_default(info)} | {_cell(docs.get(name, ''))} |"
        )
    return rows


def _all_docs(model: type) -> dict[str, str]:
    docs: dict[str, str] = {}
    for klass in reversed(model.__mro__):
        if hasattr(klass, "model_fields"):
            docs.update(_field_docs(klass))
    return docs


def event_reference(level: int = 3) -> str:
    """Markdown for the common event fields and one section per event model, headings at ``level``."""
    from scalable.telemetry import EVENT_TYPES, SCHEMA_VERSION, Event

    hashes = "#" * level
    base_fields = list(Event.model_fields)
    lines = [
        f"{hashes} Fields of every event",
        "",
        f"{_docstring(Event)} The format version written today is `schema_version: {SCHEMA_VERSION}`.",
        "",
        *_table(Event, base_fields, _all_docs(Event)),
        "",
    ]
    models: list[type] = []
    for model in EVENT_TYPES.values():
        if model not in models:
            models.append(model)
    for model in models:
        names = ", ".join(f"`{name}`" for name in model.event_names)  # type: ignore[attr-defined]
        own = [name for name in model.model_fields if name not in base_fields or name == "event"]  # type: ignore[attr-defined]
        own = [name for name in own if name != "event"]
        lines += [
            f"{hashes} `{model.__name__}`: {names}",
            "",
            _docstring(model),
            "",
            *_table(model, own, _all_docs(model)),
            "",
        ]
    return "\n".join(lines)
