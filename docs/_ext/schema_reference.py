"""The manifest field reference, as markdown, generated from ``scalable.manifest.json_schema()``.

One table per object of the schema (the file, ``project``, each target provider,
overlays): field, type, default and the description written in the pydantic model. The
schema is what validates ``scalable.yaml``, so the reference is exactly what is accepted.
"""

from __future__ import annotations

import json
from typing import Any

ENV_REF = "#/$defs/EnvReference"


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _type(schema: dict[str, Any]) -> str:
    """A short human name for a property's type."""
    if "$ref" in schema:
        return "`${VAR}`" if schema["$ref"] == ENV_REF else f"[{_ref_name(schema['$ref'])}](#{_anchor(schema['$ref'])})"
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if "anyOf" in schema or "oneOf" in schema:
        parts = [_type(s) for s in schema.get("anyOf", schema.get("oneOf", [])) if s.get("type") != "null"]
        text = " or ".join(dict.fromkeys(parts))
        return text + (", or null" if any(s.get("type") == "null" for s in schema.get("anyOf", [])) else "")
    kind = schema.get("type")
    if kind == "array":
        return f"list of {_type(schema.get('items', {}))}"
    if kind == "object":
        values = schema.get("additionalProperties")
        if isinstance(values, dict) and values and values != {"additionalProperties": True, "type": "object"}:
            return f"mapping of name to {_type(values)}"
        return "mapping"
    if kind == "integer":
        bounds = []
        if "minimum" in schema:
            bounds.append(f">= {schema['minimum']}")
        if "exclusiveMinimum" in schema:
            bounds.append(f"> {schema['exclusiveMinimum']}")
        return "integer" + (f" ({', '.join(bounds)})" if bounds else "")
    return str(kind or "any")


def _anchor(ref: str) -> str:
    return f"manifest-{_ref_name(ref).lower()}"


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _default(name: str, prop: dict[str, Any], required: set[str]) -> str:
    if name in required:
        return "required"
    if "default" not in prop:
        return "empty" if prop.get("type") in ("array", "object") else ""
    default = prop["default"]
    return "none" if default is None else f"`{json.dumps(default)}`"


def _table(schema: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", []))
    rows = ["| field | type | default | meaning |", "|---|---|---|---|"]
    for name, prop in schema.get("properties", {}).items():
        meaning = _cell(prop.get("description", ""))
        rows.append(f"| `{name}` | {_cell(_type(prop))} | {_default(name, prop, required)} | {meaning} |")
    return rows


def _doc(schema: dict[str, Any]) -> str:
    return " ".join(schema.get("description", "").replace("``", "`").split("\n\n")[0].split())


def manifest_reference(level: int = 3) -> str:
    """Markdown tables for every object of the manifest's JSON schema, headings at ``level``."""
    from scalable.manifest import json_schema

    schema = json_schema()
    defs = schema.get("$defs", {})
    hashes = "#" * level
    lines = ["(manifest-file)=", f"{hashes} The file", "", _doc(schema), "", *_table(schema), ""]
    order = ["Project"]
    mapping = schema["properties"]["targets"]["additionalProperties"].get("discriminator", {}).get("mapping", {})
    order += [_ref_name(ref) for ref in mapping.values()]
    order += [name for name in defs if name not in order and name != "EnvReference"]
    for name in order:
        sub = defs[name]
        lines += [f"({_anchor(name)})=", f"{hashes} {name}", "", _doc(sub), "", *_table(sub), ""]
    env = defs.get("EnvReference")
    if env:
        lines += [
            "A type `${VAR}` means the field also takes a whole-value reference matching "
            f"`{env['pattern']}`: {env.get('description', '')}",
            "",
        ]
    return "\n".join(lines)
