"""Reading ``scalable.yaml``: YAML with line numbers, ``${VAR}`` expansion, overlays, validation.

Every failure is a :class:`~scalable.manifest.errors.ManifestError` whose lines read
``file:line: field: message``. To get there the loader keeps the YAML nodes (which carry
their line) instead of loading plain data, records the line of every field path, and
maps each pydantic error's ``loc`` back to a path and so to a line.
"""

from __future__ import annotations

import copy
import os
import re
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from scalable.artifacts.uris import redact_uri
from scalable.manifest.errors import ManifestError, ManifestNotFoundError, ManifestProblem
from scalable.manifest.expand import ExpansionError, expand
from scalable.manifest.problems import did_you_mean, unknown_name_error
from scalable.manifest.schema import PROVIDERS, Manifest
from scalable.project import find_manifest

#: The file read when no path is given and ``SCALABLE_MANIFEST`` is not set.
DEFAULT_MANIFEST = "scalable.yaml"

_STR = "tag:yaml.org,2002:str"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MERGE = "tag:yaml.org,2002:merge"

#: A field's place in the document: its keys, list indexes as strings.
FieldPath = tuple[str, ...]


class _Loader(yaml.SafeLoader):
    """Safe YAML with YAML 1.2 scalars.

    PyYAML follows YAML 1.1, where ``walltime: 01:30:00`` is the integer 5400, ``on`` and
    ``no`` are booleans, ``account: 0123`` is octal and ``2024-01-01`` a date. Here only
    ``true``/``false`` are booleans, numbers are decimal without leading zeros, and
    everything else stays a string.
    """


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_BOOL, _INT, _FLOAT, _TIMESTAMP)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Loader.add_implicit_resolver(_INT, re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789"))
_Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(r"^[-+]?(?:0|[1-9][0-9]*)(?:\.[0-9]+(?:[eE][-+]?[0-9]+)?|[eE][-+]?[0-9]+)$|^[-+]?\.(?:inf|Inf|INF)$"),
    list("-+0123456789."),
)


@dataclass
class _Source:
    """Where a manifest came from, and the line of every field path in it."""

    label: str
    path: Path | None
    lines: dict[FieldPath, int] = field(default_factory=dict)
    text: str | None = None  # the file as written, for the run's snapshot

    def line_of(self, path: Sequence[str]) -> int | None:
        """The line of ``path``, or of its nearest written ancestor (a missing field: its parent)."""
        key = tuple(path)
        while True:
            if key in self.lines:
                return self.lines[key]
            if not key:
                return None
            key = key[:-1]


def load_manifest(
    path: str | os.PathLike[str] | None = None,
    *,
    overlay: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Manifest:
    """Read, expand and validate a manifest, with ``overlay`` merged in if given.

    With no ``path``: the file named by ``SCALABLE_MANIFEST``, else the nearest
    ``scalable.yaml`` in the current folder or its parents (see :mod:`scalable.project`);
    when neither exists the built-in defaults (:meth:`Manifest.builtin`) are returned. A
    file named explicitly (argument or variable) must exist. ``environ`` (default
    ``os.environ``, read now) supplies ``${VAR}`` values.

    Raises :class:`ManifestError` (:class:`ManifestNotFoundError` for a missing file)
    whose message names the file, the line and the field of every problem found.
    """
    env = os.environ if environ is None else environ
    chosen_by = "argument"
    if path is None:
        if env.get("SCALABLE_MANIFEST"):
            path, chosen_by = env["SCALABLE_MANIFEST"], "SCALABLE_MANIFEST"
        elif (found := find_manifest()) is not None:  # the nearest scalable.yaml here or above
            path, chosen_by = str(found), "default"
        else:
            if overlay is not None:
                raise ManifestNotFoundError(
                    None,
                    [
                        ManifestProblem(
                            None,
                            "overlays",
                            f"overlay {overlay!r} was asked for, but there is no manifest: "
                            f"no {DEFAULT_MANIFEST} here or in a parent folder, and SCALABLE_MANIFEST is not set",
                        )
                    ],
                )
            return Manifest.builtin()
    file = Path(path).expanduser()
    label = os.fspath(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        how = " (from SCALABLE_MANIFEST)" if chosen_by == "SCALABLE_MANIFEST" else ""
        raise ManifestNotFoundError(
            label, [ManifestProblem(None, None, f"manifest file not found{how}: check the path, or create it")]
        ) from None
    except UnicodeDecodeError as exc:
        raise ManifestError(label, [ManifestProblem(None, None, f"not UTF-8 text ({exc.reason})")]) from None
    except OSError as exc:
        raise ManifestError(label, [ManifestProblem(None, None, f"cannot read the manifest: {exc.strerror}")]) from None
    return parse_manifest(text, source=label, overlay=overlay, environ=env, path=file.resolve())


def parse_manifest(
    text: str,
    *,
    source: str = "<string>",
    overlay: str | None = None,
    environ: Mapping[str, str] | None = None,
    path: str | os.PathLike[str] | None = None,
) -> Manifest:
    """Like :func:`load_manifest` for manifest text; ``source`` names it in messages.

    ``path``, if given, is where the text came from: relative paths in it are resolved
    against its folder by :func:`~scalable.manifest.resolve_settings`.
    """
    env = os.environ if environ is None else environ
    src = _Source(source, None if path is None else Path(path), text=text)

    try:
        loader = _Loader(text)  # the reader checks every character here, before any parsing
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, max(0, exc.position)) + 1
        raise ManifestError(source, [ManifestProblem(line, None, f"invalid YAML: {exc}")]) from None
    try:
        root = loader.get_single_node()
        problems: list[tuple[tuple[str | int, ...], int, str]] = []
        if root is not None:
            _expand(root, (), env, loader, problems, set())
        broken_overlays = {p[1] for p, _, _ in problems if len(p) > 1 and p[0] == "overlays"}
        fatal = [
            ManifestProblem(line, _show(p), msg)
            for p, line, msg in problems
            if not (len(p) > 1 and p[0] == "overlays" and p[1] != overlay)
        ]
        if fatal:
            raise ManifestError(source, fatal)
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        raise ManifestError(source, [_yaml_problem(exc)]) from None
    except yaml.YAMLError as exc:
        raise ManifestError(source, [ManifestProblem(None, None, f"invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()

    if not isinstance(data, dict):
        what = "empty" if data is None else f"a {_kind(data)}, not a mapping of fields"
        raise ManifestError(source, [ManifestProblem(1, None, f"the manifest is {what}: start it with 'version: 1'")])
    _record_lines(root, (), src.lines, set())

    base = _validate(data, src)
    overlays = data.get("overlays") or {}
    if overlay is not None and overlay not in overlays:
        raise unknown_name_error(base, "overlays", "overlay", overlay, list(overlays), source=src)
    selected: Manifest | None = None
    problems_in_overlays: list[ManifestProblem] = []
    for name, body in overlays.items():
        if name in broken_overlays and name != overlay:
            continue  # it needs a variable that is not set; it is checked when selected
        merged_data, merged_src = _apply_overlay(data, src, name, body)
        try:
            merged = _validate(merged_data, merged_src, note=f" (with overlay {name!r})")
        except ManifestError as exc:
            problems_in_overlays.extend(exc.problems)
            continue
        if name == overlay:
            selected = merged.model_copy(update={"overlays": base.overlays})
            selected._source = merged_src
            selected._overlay = name
    if problems_in_overlays:
        raise ManifestError(source, problems_in_overlays)
    return selected if selected is not None else base


# --- expansion and line numbers -------------------------------------------------------------


def _expand(
    node: yaml.Node,
    path: tuple[str | int, ...],
    env: Mapping[str, str],
    loader: _Loader,
    problems: list[tuple[tuple[str | int, ...], int, str]],
    seen: set[int],
) -> None:
    """Expand ``${VAR}`` in every scalar (keys too) and flag duplicate keys, in place."""
    if id(node) in seen:  # an alias: already done where its anchor is
        return
    seen.add(id(node))
    if isinstance(node, yaml.ScalarNode):
        if "$" in node.value:
            try:
                value = expand(node.value, env)
            except ExpansionError as exc:
                problems.append((path, node.start_mark.line + 1, str(exc)))
                return
            if node.style is None and node.tag == _STR:
                # A plain scalar takes the type of what it expands to: ${N:-2} is a number, ${X:-} null.
                node.tag = loader.resolve(yaml.ScalarNode, value, (True, False))
            node.value = value
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _expand(item, (*path, index), env, loader, problems, seen)
    elif isinstance(node, yaml.MappingNode):
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                _expand(value_node, path, env, loader, problems, seen)
                continue
            _expand(key_node, path, env, loader, problems, seen)
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            line = key_node.start_mark.line + 1
            if key in first_line:
                problems.append(((*path, key), line, f"duplicate key (first written at line {first_line[key]})"))
            else:
                first_line[key] = line
            _expand(value_node, (*path, key), env, loader, problems, seen)


def _record_lines(node: yaml.Node, path: FieldPath, lines: dict[FieldPath, int], seen: set[int]) -> None:
    """Fill ``lines`` with the line of every field path (a key's line; an item's first line)."""
    if id(node) in seen:
        return
    seen.add(id(node))
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, str(index))] = item.start_mark.line + 1
            _record_lines(item, (*path, str(index)), lines, seen)
    elif isinstance(node, yaml.MappingNode):
        # After construction, merged (<<) pairs come first and the mapping's own keys win.
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            child = (*path, str(key_node.value))
            lines[child] = key_node.start_mark.line + 1
            _record_lines(value_node, child, lines, seen)


def _yaml_problem(exc: yaml.MarkedYAMLError) -> ManifestProblem:
    mark = exc.problem_mark or exc.context_mark
    message = f"invalid YAML: {exc.problem or exc.context}"
    if exc.problem and exc.context:
        at = f" at line {exc.context_mark.line + 1}" if exc.context_mark is not None else ""
        message += f" ({exc.context}{at})"
    return ManifestProblem(None if mark is None else mark.line + 1, None, message)


# --- overlays -------------------------------------------------------------------------------


def _apply_overlay(data: dict[str, Any], src: _Source, name: str, body: Any) -> tuple[dict[str, Any], _Source]:
    """The base (without ``overlays``) with overlay ``name`` deep-merged in, and its line map."""
    base = {k: v for k, v in data.items() if k != "overlays"}
    replaced: list[FieldPath] = []
    merged = _deep_merge(base, body if isinstance(body, dict) else {}, (), replaced)
    lines = {p: line for p, line in src.lines.items() if p[:1] != ("overlays",)}
    for path in replaced:
        for p in [p for p in lines if p[: len(path)] == path and len(p) > len(path)]:
            del lines[p]
    prefix = ("overlays", name)
    for p, line in src.lines.items():
        if p[:2] == prefix and len(p) > 2:
            lines[p[2:]] = line
    return merged, _Source(src.label, src.path, lines, src.text)


def _deep_merge(base: Any, over: Any, path: FieldPath, replaced: list[FieldPath]) -> Any:
    """Mappings merge key by key; anything else (and a target whose provider changes) is replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        is_target = len(path) == 2 and path[0] == "targets"
        if is_target and "provider" in over and over.get("provider") != base.get("provider"):
            replaced.append(path)
            return copy.deepcopy(over)
        out = dict(base)
        for key, value in over.items():
            child = (*path, str(key))
            out[key] = _deep_merge(base[key], value, child, replaced) if key in base else copy.deepcopy(value)
        return out
    replaced.append(path)
    return copy.deepcopy(over)


# --- validation and messages ----------------------------------------------------------------


def _validate(data: dict[str, Any], src: _Source, note: str = "") -> Manifest:
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        raise ManifestError(src.label, [_pydantic_problem(err, src, note) for err in exc.errors()]) from None
    manifest._source = src
    return manifest


_EXPECTED = {
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "string_type": "expected a string",
    "dict_type": "expected a mapping (key: value lines)",
    "model_type": "expected a mapping (key: value lines)",
    "model_attributes_type": "expected a mapping (key: value lines)",
    "list_type": "expected a list (lines starting with '- ')",
}


def _pydantic_problem(err: Mapping[str, Any], src: _Source, note: str) -> ManifestProblem:
    path, model = _field_path(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        known = [] if model is None else list(model.model_fields)
        hint = did_you_mean(str(path[-1]), known) if path else ""
        message = f"unknown field{hint}" if hint else f"unknown field (fields here: {', '.join(known)})"
    elif kind == "missing":
        message = "required field is missing"
    elif kind == "union_tag_invalid":
        path = (*path, "provider")
        tag = str(err["ctx"]["tag"])
        message = f"unknown provider {tag!r}{did_you_mean(tag, PROVIDERS)} (providers: {', '.join(PROVIDERS)})"
    elif kind == "union_tag_not_found":
        message = f"a target needs a provider: one of {', '.join(PROVIDERS)}"
    elif kind == "string_too_short":
        message = "cannot be empty"
    elif kind in ("value_error", "assertion_error"):
        message = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    else:
        expected = _EXPECTED.get(kind) or str(err["msg"]).replace("Input should be", "should be")
        message = f"{expected}, got {_describe(err.get('input'))}"
    line = src.line_of([str(p) for p in path])
    return ManifestProblem(line, _show(path), message + note)


def _field_path(loc: Sequence[Any]) -> tuple[tuple[str | int, ...], type[BaseModel] | None]:
    """The data path of a pydantic ``loc``, and the model that holds its last part.

    pydantic puts labels in ``loc`` that are not in the data: a discriminated union's tag
    (``targets.hpc.slurm.cores``) and union members' names. They are dropped here.
    """
    path: list[str | int] = []
    current: Any = Manifest
    holder: type[BaseModel] | None = None
    for item in loc:
        current, is_tag = _unwrap(current, item)
        if is_tag:
            continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            holder = current
            path.append(item)
            info = current.model_fields.get(str(item))
            current = None if info is None else info.annotation
        elif get_origin(current) in (dict, list):
            path.append(item)
            current = get_args(current)[-1]
    return tuple(path), holder


def _unwrap(tp: Any, item: Any) -> tuple[Any, bool]:
    """Strip ``Annotated`` and ``None`` from ``tp``; ``(model, True)`` if ``item`` is a provider tag."""
    while True:
        if get_origin(tp) is Annotated:
            tp = get_args(tp)[0]
        elif get_origin(tp) in (Union, types.UnionType):
            members = [m for m in get_args(tp) if m is not type(None)]
            for member in members:
                if isinstance(member, type) and issubclass(member, BaseModel):
                    provider = member.model_fields.get("provider")
                    if provider is not None and provider.default == item:
                        return member, True
            if len(members) != 1:
                return None, False
            tp = members[0]
        else:
            return tp, False


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _show(path: Sequence[str | int]) -> str | None:
    """``targets.hpc.job_extra_directives[1]``; keys that are not names in ``["..."]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENT.match(part):
            out += f".{part}" if out else part
        else:
            out += f'["{part}"]'
    return out or None


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list):
        return "list"
    return type(value).__name__


def _describe(value: Any) -> str:
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        text = redact_uri(value) if "://" in value else value
        return repr(text if len(text) <= 60 else text[:57] + "...")
    return repr(value)


__all__ = ["DEFAULT_MANIFEST", "load_manifest", "parse_manifest", "unknown_name_error"]
