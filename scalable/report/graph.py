"""The run's lineage graph for the report: its inputs -> its tasks -> its outputs, laid out as inline SVG.

Three columns: what the run read and did not make (inputs; an input that could not be
fetched is drawn as missing), its tasks, and what it recorded (outputs; an output that a
later task read is drawn there too, with an edge back to that task). Past
:data:`GROUP_AT` tasks, tasks are grouped by function, and a column of more than
:data:`GROUP_AT` artifacts is grouped by folder, so a 2,000-task run is a handful of
boxes whose labels say how many each holds, and the edges say how many links they stand for.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

#: More tasks (or artifacts in one column) than this are grouped.
GROUP_AT = 40
#: Geometry in SVG user units.
COLUMN_X = (8, 356, 704)
NODE_W = 288
NODE_H = 20
PITCH = 26
TOP = 24
LABEL_CHARS = 44


@dataclass(frozen=True)
class GraphInput:
    """One ``artifact.used`` event of the run, as the graph needs it."""

    task: str | None
    digest: str | None
    key: str | None
    store: str | None
    via: str
    error: str | None = None


@dataclass(frozen=True)
class GraphOutput:
    """One ``artifact.recorded`` event of the run, as the graph needs it."""

    task: str | None
    digest: str
    key: str
    name: str


@dataclass
class GNode:
    """A box: an artifact (``input``, ``output``, ``missing``), a task, or a group of either."""

    id: str
    kind: str
    label: str
    title: str
    column: int
    count: int = 1
    x: float = 0.0
    y: float = 0.0

    @property
    def short(self) -> str:
        """The label, cut to fit its box (the whole label is in the tooltip)."""
        return self.label if len(self.label) <= LABEL_CHARS else self.label[: LABEL_CHARS - 1] + "…"


@dataclass
class GEdge:
    """A link from ``src`` to ``dst`` (``count`` links when the ends are groups), drawn as a curve."""

    src: str
    dst: str
    count: int
    path: str = ""
    back: bool = False


@dataclass
class RunGraph:
    """The laid-out graph: nodes, edges, and the SVG's size."""

    nodes: list[GNode] = field(default_factory=list)
    edges: list[GEdge] = field(default_factory=list)
    width: float = COLUMN_X[2] + NODE_W + 8
    height: float = 0.0
    grouped: bool = False


def _folder(key: str | None) -> str:
    if not key:
        return "(local files)"
    head, sep, _ = key.rpartition("/")
    return head + "/" if sep else "(top level)"


def _task_label(task: str | None) -> str:
    return task or "(driver)"


def _function_of(task: str | None, functions: dict[str, str | None]) -> str:
    if task is None:
        return "(driver)"
    return functions.get(task) or task.rsplit("-", 1)[0]


def build_graph(inputs: list[GraphInput], outputs: list[GraphOutput], functions: dict[str, str | None]) -> RunGraph:
    """Lay out the graph of a run: ``functions`` maps each task id to its function (for grouping)."""
    graph = RunGraph()
    made = {o.digest for o in outputs}
    task_ids = list(dict.fromkeys([*functions, *(i.task for i in inputs), *(o.task for o in outputs)]))
    group_tasks = len(task_ids) > GROUP_AT

    def task_node(task: str | None) -> str:
        return f"g:{_function_of(task, functions)}" if group_tasks else f"t:{_task_label(task)}"

    # Artifacts: the id of each one's box, before grouping.
    in_ids: dict[str, tuple[str, str, str]] = {}  # artifact id -> (kind, label, title)
    for i in inputs:
        if i.digest is not None and i.digest in made:
            continue  # made in this run: drawn with the outputs
        if i.digest is None:
            ident = f"m:{i.store or ''}#{i.key or ''}"
            in_ids[ident] = ("missing", f"{i.key} (not found)", f"{i.store}#{i.key}\n{i.error or ''}")
        else:
            ident = f"a:{i.digest}"
            where = f"{i.store}#{i.key}" if i.store else (i.key or "")
            in_ids.setdefault(ident, ("input", i.key or i.digest[:19], f"{where}\n{i.digest}"))
    out_ids: dict[str, tuple[str, str, str]] = {}
    for o in outputs:
        out_ids.setdefault(f"a:{o.digest}", ("output", o.key, f"{o.name}\n{o.key}\n{o.digest}"))

    def artifact_groups(ids: dict[str, tuple[str, str, str]], column: int) -> dict[str, str]:
        """artifact id -> box id, and the boxes added to the graph."""
        if len(ids) <= GROUP_AT:
            for ident, (kind, label, title) in ids.items():
                graph.nodes.append(GNode(ident, kind, label, title, column))
            return {ident: ident for ident in ids}
        graph.grouped = True
        members: dict[str, list[str]] = defaultdict(list)
        for ident, (_kind, label, _title) in ids.items():
            members[_folder(label if not label.endswith("(not found)") else None)].append(ident)
        box_of = {}
        for folder, idents in sorted(members.items()):
            box = f"f{column}:{folder}"
            kinds = {ids[i][0] for i in idents}
            kind = "missing" if kinds == {"missing"} else ("output" if column == 2 else "input")
            graph.nodes.append(
                GNode(
                    box,
                    kind,
                    f"{folder} ({len(idents)} artifacts)",
                    f"{len(idents)} artifacts in {folder}",
                    column,
                    len(idents),
                )
            )
            box_of.update({i: box for i in idents})
        return box_of

    in_box = artifact_groups(in_ids, 0)
    # Tasks.
    tasks: dict[str, list[str]] = defaultdict(list)
    for task in task_ids:
        tasks[task_node(task)].append(_task_label(task))
    for box, names in tasks.items():
        if group_tasks:
            function = box[2:]
            graph.nodes.append(
                GNode(
                    box, "task", f"{function} ({len(names)} tasks)", f"{len(names)} tasks of {function}", 1, len(names)
                )
            )
        else:
            name = names[0]
            graph.nodes.append(GNode(box, "task", name, f"{name}\n{functions.get(name) or ''}".strip(), 1))
    graph.grouped = graph.grouped or group_tasks
    out_box = artifact_groups(out_ids, 2)

    counts: dict[tuple[str, str, bool], int] = defaultdict(int)
    for i in inputs:
        ident = f"a:{i.digest}" if i.digest is not None else f"m:{i.store or ''}#{i.key or ''}"
        if ident in out_box:
            counts[(out_box[ident], task_node(i.task), True)] += 1
        elif ident in in_box:
            counts[(in_box[ident], task_node(i.task), False)] += 1
    for o in outputs:
        counts[(task_node(o.task), out_box[f"a:{o.digest}"], False)] += 1
    graph.edges = [GEdge(src, dst, n, back=back) for (src, dst, back), n in counts.items()]
    _layout(graph)
    return graph


def _layout(graph: RunGraph) -> None:
    rows = [0, 0, 0]
    by_id = {}
    for node in graph.nodes:
        node.x = COLUMN_X[node.column]
        node.y = TOP + rows[node.column] * PITCH
        rows[node.column] += 1
        by_id[node.id] = node
    graph.height = TOP + max(rows) * PITCH + 8
    for edge in graph.edges:
        a, b = by_id[edge.src], by_id[edge.dst]
        if edge.back:  # an output read by a later task: from the output's left side back to the task's right
            x1, y1 = a.x, a.y + NODE_H / 2
            x2, y2 = b.x + NODE_W, b.y + NODE_H / 2
            edge.path = f"M{x1:.0f},{y1:.0f} C{x1 - 40:.0f},{y1:.0f} {x2 + 40:.0f},{y2 + 12:.0f} {x2:.0f},{y2:.0f}"
        else:
            x1, y1 = a.x + NODE_W, a.y + NODE_H / 2
            x2, y2 = b.x, b.y + NODE_H / 2
            mid = (x1 + x2) / 2
            edge.path = f"M{x1:.0f},{y1:.0f} C{mid:.0f},{y1:.0f} {mid:.0f},{y2:.0f} {x2:.0f},{y2:.0f}"


__all__ = ["GROUP_AT", "GEdge", "GNode", "GraphInput", "GraphOutput", "RunGraph", "build_graph"]
