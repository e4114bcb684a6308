"""``scalable lineage STORE#KEY|DIGEST|RUN``: what an artifact came from, or (``--down``) what was made from it.

It reads the catalog's lineage graph (see ``docs/catalog.md``) and prints a tree: each
artifact under it the task that made it, each task under it its inputs (with ``--down``:
the tasks that read it, and their outputs). ``--json``, ``--dot`` (Graphviz) and
``--mermaid`` print the graph for other tools. A node reached twice (a shared input, or a
cycle in hand-merged telemetry) is printed once, then named as ``(seen above)``.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from scalable.cli.catalog_cmds import _print_table, open_catalog
from scalable.cli.output import Output

if TYPE_CHECKING:
    from scalable.catalog.lineage import Lineage


def _target(text: str) -> str:
    """``STORE#KEY`` with the store as the catalog names it (``#KEY`` is the default store's)."""
    if "#" not in text:
        return text
    from scalable.cli.locate import open_store

    store, key = open_store(text, need_key=True)
    return f"{store.uri}#{key}"


def _node_text(graph: Lineage, node_id: str) -> str:
    from rich.markup import escape

    node = graph.nodes.get(node_id)
    if node is None:
        return escape(node_id)
    if node.kind == "task":
        return f"[bold]{escape(node.task or '(driver)')}[/bold] [dim]run {escape(node.run_id or '?')}[/dim]"
    if node.kind == "missing":
        return f"[red]{escape(node.label)}[/red]" + (f" [dim]{escape(node.error)}[/dim]" if node.error else "")
    return f"[cyan]{escape(node.key or '')}[/cyan] [dim]{escape(node.digest or '')}[/dim]"


def render_tree(graph: Lineage) -> object:
    """The graph as a rich tree from its roots (each node expanded once)."""
    from rich.tree import Tree

    title = "upstream of" if graph.direction == "upstream" else "downstream of"
    tree = Tree(f"[bold]{title}[/bold] ({graph.depth} tasks deep)")
    expanded: set[str] = set()

    def grow(branch: Tree, node_id: str, path: tuple[str, ...]) -> None:
        if node_id in path:
            branch.add(f"{_node_text(graph, node_id)} [yellow](cycle)[/yellow]")
            return
        if node_id in expanded:
            branch.add(f"{_node_text(graph, node_id)} [dim](seen above)[/dim]")
            return
        expanded.add(node_id)
        child = branch.add(_node_text(graph, node_id))
        for nxt in graph.next_of(node_id):
            grow(child, nxt, (*path, node_id))

    for root in graph.roots:
        grow(tree, root, ())
    return tree


def lineage_command(
    target: Annotated[
        str,
        typer.Argument(
            metavar="STORE#KEY|DIGEST|RUN",
            help="STORE#KEY (#KEY: the default store), a digest, or a run id (prefix).",
            show_default=False,
        ),
    ],
    down: Annotated[bool, typer.Option("--down", help="What was made from it, instead of what it came from.")] = False,
    depth: Annotated[int, typer.Option("--depth", metavar="N", min=0, help="How many tasks away to walk.")] = 5,
    json_mode: Annotated[bool, typer.Option("--json", help="Print the graph as JSON.")] = False,
    dot: Annotated[bool, typer.Option("--dot", help="Print the graph in Graphviz DOT.")] = False,
    mermaid: Annotated[bool, typer.Option("--mermaid", help="Print the graph as a Mermaid flowchart.")] = False,
) -> None:
    """Trace an artifact, a digest or a run: the runs, tasks and inputs it came from (or, --down, what it fed)."""
    if sum((json_mode, dot, mermaid)) > 1:
        raise typer.BadParameter("give one of --json, --dot, --mermaid")
    out = Output(json_mode=json_mode)
    with open_catalog(out, read_only=True) as catalog:
        where = _target(target)
        graph = catalog.downstream(where, depth=depth) if down else catalog.upstream(where, depth=depth)
    if json_mode:
        out.json(graph.to_dict())
    elif dot:
        sys.stdout.write(graph.to_dot())
    elif mermaid:
        sys.stdout.write(graph.to_mermaid())
    else:
        _print_table(out, render_tree(graph))  # a pipe gets whole lines, as tables do


COMMANDS = {"lineage": lineage_command}

__all__ = ["COMMANDS", "lineage_command", "render_tree"]
