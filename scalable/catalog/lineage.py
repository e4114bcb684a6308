"""Walking the lineage graph: what an artifact, a digest or a run came from, and what was made from it.

The graph (see :mod:`scalable.catalog.lineage_rows`) is bipartite: artifacts (by digest)
and tasks. ``depth`` counts tasks: the upstream of an output at depth 1 is the task that
made it and that task's inputs; at depth 2, the tasks that made those inputs and theirs.
The walk is one recursive SQL query over the indexed ``lineage`` table, so it reads only
the edges it returns. A cycle (possible only in hand-edited or merged telemetry) ends at
the depth limit and is shown as a node seen again, never looped over.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from scalable.catalog.lineage_rows import DRIVER, MISSING_PREFIX, TASK_PREFIX
from scalable.catalog.query import normalize_digest, resolve_run
from scalable.errors import LineageNotFoundError, RunNotFoundError

_HEX = re.compile(r"^(sha256:)?[0-9a-fA-F]{64}$")
_COLUMNS = "e.src, e.dst, e.run_id, e.task, e.store, e.key, e.via, e.error"

# Upstream: from a node to the sources of the edges that end at it; downstream, the reverse.
_WALK = """
WITH RECURSIVE walk(node, step) AS (
    SELECT value, 0 FROM json_each(?1)
    UNION
    SELECT e.{next}, w.step + 1 FROM walk w JOIN lineage e ON e.{here} = w.node WHERE w.step < ?2
),
reached(node, step) AS (SELECT node, min(step) FROM walk GROUP BY node)
SELECT {columns}, r.step FROM reached r JOIN lineage e ON e.{here} = r.node WHERE r.step < ?2
"""
_UPSTREAM = _WALK.format(next="src", here="dst", columns=_COLUMNS)
_DOWNSTREAM = _WALK.format(next="dst", here="src", columns=_COLUMNS)


@dataclass(frozen=True)
class LineageNode:
    """An artifact (``kind`` ``artifact``, by digest), a task (``task``), or an input never found (``missing``)."""

    id: str
    kind: str
    label: str
    run_id: str | None = None
    task: str | None = None
    store: str | None = None
    key: str | None = None
    digest: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class LineageEdge:
    """``src`` -> ``dst`` in ``run_id`` (``via``: how the input was read, or ``recorded`` for an output)."""

    src: str
    dst: str
    run_id: str
    task: str | None
    via: str
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass
class Lineage:
    """The part of the graph a walk reached: its roots, nodes and edges (each edge once)."""

    roots: list[str]
    direction: str
    depth: int
    nodes: dict[str, LineageNode] = field(default_factory=dict)
    edges: list[LineageEdge] = field(default_factory=list)

    def next_of(self, node: str) -> list[str]:
        """The nodes one step further from the roots than ``node`` (inputs when upstream, outputs when downstream)."""
        if self.direction == "upstream":
            found = [e.src for e in self.edges if e.dst == node]
        else:
            found = [e.dst for e in self.edges if e.src == node]
        return sorted(dict.fromkeys(found), key=lambda n: self.nodes[n].label if n in self.nodes else n)

    def artifacts(self) -> list[LineageNode]:
        """The artifact and missing nodes reached, roots included, by label."""
        return sorted((n for n in self.nodes.values() if n.kind != "task"), key=lambda n: (n.label, n.id))

    def tasks(self) -> list[LineageNode]:
        """The task nodes reached, by run and task."""
        return sorted((n for n in self.nodes.values() if n.kind == "task"), key=lambda n: n.id)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``roots``, ``direction``, ``depth``, ``nodes``, ``edges``."""
        return {
            "roots": self.roots,
            "direction": self.direction,
            "depth": self.depth,
            "nodes": [n.to_dict() for n in sorted(self.nodes.values(), key=lambda n: n.id)],
            "edges": [e.to_dict() for e in self.edges],
        }

    def to_dot(self) -> str:
        """The graph in Graphviz DOT (edges point from input to output, whatever the direction walked)."""
        names = {node: f"n{i}" for i, node in enumerate(sorted(self.nodes))}
        lines = ["digraph lineage {", "  rankdir=LR;", '  node [fontname="Helvetica"];']
        for node_id, name in names.items():
            node = self.nodes[node_id]
            shape = {"task": "box", "missing": "octagon"}.get(node.kind, "ellipse")
            extra = ", penwidth=2" if node_id in self.roots else ""
            lines.append(f"  {name} [label={_dot_quote(node.label)}, shape={shape}{extra}];")
        for edge in self.edges:
            lines.append(f"  {names[edge.src]} -> {names[edge.dst]} [label={_dot_quote(edge.via)}];")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def to_mermaid(self) -> str:
        """The graph as a Mermaid flowchart (left to right, input to output)."""
        names = {node: f"n{i}" for i, node in enumerate(sorted(self.nodes))}
        lines = ["flowchart LR"]
        for node_id, name in names.items():
            node = self.nodes[node_id]
            label = _mermaid_quote(node.label)
            if node.kind == "task":
                lines.append(f"  {name}[{label}]")
            elif node.kind == "missing":
                lines.append(f"  {name}{{{{{label}}}}}")
            else:
                lines.append(f"  {name}([{label}])")
        for edge in self.edges:
            lines.append(f"  {names[edge.src]} -->|{_mermaid_quote(edge.via)}| {names[edge.dst]}")
        return "\n".join(lines) + "\n"


def _dot_quote(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid DOT quoted string


def _mermaid_quote(text: str) -> str:
    return '"' + text.replace('"', "#quot;") + '"'


def short_digest(digest: str) -> str:
    """``sha256:`` and the first 12 hex digits."""
    algo, _, hexdigest = digest.partition(":")
    return f"{algo}:{hexdigest[:12]}"


def _artifact_label(key: str | None, digest: str) -> str:
    return f"{key} ({short_digest(digest)})" if key else short_digest(digest)


def start_nodes(conn: sqlite3.Connection, x: str, where: str) -> tuple[list[str], bool]:
    """The node ids ``x`` names, and whether they are a run's tasks."""
    text = x.strip()
    if _HEX.match(text):
        return [normalize_digest(text)], False
    if "#" in text:
        store, _, key = text.partition("#")
        digests = _digests_at(conn, store, key)
        if not digests:
            try:
                from scalable.artifacts.factory import build_artifact_store

                digests = _digests_at(conn, build_artifact_store(store).uri, key)
            except Exception:  # not a store URI this machine can open: nothing recorded under it
                digests = []
        if not digests:
            raise LineageNotFoundError(
                f"the catalog {where} has no artifact {text!r} in its lineage: check STORE#KEY with "
                "`scalable find --key KEY`, or `scalable reindex STORE` to add the store's runs"
            )
        return digests, False
    try:
        run_id = resolve_run(conn, text, where, recorded=True)
    except RunNotFoundError:
        if conn.execute("SELECT 1 FROM lineage WHERE run_id = ? LIMIT 1", (text,)).fetchone() is None:
            if (
                text
                and conn.execute(
                    "SELECT 1 FROM runs WHERE run_id >= ? AND run_id < ? LIMIT 1", (text, text + "\U0010ffff")
                ).fetchone()
            ):
                raise  # a prefix of several runs: the error lists them
            raise LineageNotFoundError(
                f"{text!r} is not a digest, a STORE#KEY or a run in the catalog {where}: give sha256:<hex>, "
                "STORE#KEY (./store#runs/a.csv) or a run id (`scalable runs list`)"
            ) from None
        run_id = text
    rows = conn.execute(
        "SELECT dst FROM lineage WHERE run_id = ? AND via != 'recorded' "
        "UNION SELECT src FROM lineage WHERE run_id = ? AND via = 'recorded'",
        (run_id, run_id),
    )
    return sorted(row[0] for row in rows), True


def _digests_at(conn: sqlite3.Connection, store: str, key: str) -> list[str]:
    rows = conn.execute(
        "SELECT digest FROM artifacts WHERE store = ? AND key = ? "
        "UNION SELECT dst FROM lineage WHERE store = ? AND key = ? AND via = 'recorded' "
        "UNION SELECT src FROM lineage WHERE store = ? AND key = ? AND via != 'recorded' AND src LIKE 'sha256:%'",
        (store, key, store, key, store, key),
    )
    return sorted(row[0] for row in rows)


def walk(conn: sqlite3.Connection, x: str, *, upstream: bool, depth: int, where: str) -> Lineage:
    """The lineage of ``x`` (see :meth:`scalable.catalog.Catalog.upstream`) up to ``depth`` tasks away."""
    if depth < 0:
        raise LineageNotFoundError(f"depth={depth}: give 0 or more tasks to walk")
    roots, from_tasks = start_nodes(conn, x, where)
    # Artifact -> task -> artifact: two steps per task; a run's tasks are already one step in.
    steps = 2 * depth - (1 if from_tasks else 0)
    result = Lineage(roots=roots, direction="upstream" if upstream else "downstream", depth=depth)
    rows = conn.execute(_UPSTREAM if upstream else _DOWNSTREAM, (json.dumps(roots), max(steps, 0))).fetchall()
    seen_edges: set[tuple[str, str, str, str]] = set()
    for src, dst, run_id, task, store, key, via, error, _step in rows:
        for node in (src, dst):
            if node not in result.nodes or result.nodes[node].key is None:
                described = _node(node, run_id, task, store, key, error)
                if node not in result.nodes or described.key is not None:
                    result.nodes[node] = described
        ident = (src, dst, run_id, via)
        if ident not in seen_edges:
            seen_edges.add(ident)
            result.edges.append(LineageEdge(src, dst, run_id, task, via, error))
    for root in roots:
        if root not in result.nodes:
            result.nodes[root] = _node(root, None, None, None, None, None)
    result.edges.sort(key=lambda e: (e.src, e.dst, e.run_id, e.via))
    return result


def _node(
    node: str, run_id: str | None, task: str | None, store: str | None, key: str | None, error: str | None
) -> LineageNode:
    if node.startswith(TASK_PREFIX):
        run, _, name = node[len(TASK_PREFIX) :].partition("/")
        return LineageNode(node, "task", f"{name} [{run}]", run_id=run, task=None if name == DRIVER else name)
    if node.startswith(MISSING_PREFIX):
        return LineageNode(
            node, "missing", f"{node[len(MISSING_PREFIX) :]} (not found)", store=store, key=key, error=error
        )
    return LineageNode(node, "artifact", _artifact_label(key, node), store=store, key=key, digest=node)


__all__ = ["Lineage", "LineageEdge", "LineageNode", "short_digest", "start_nodes", "walk"]
