"""``scalable mirror ls | prune``: the local mirror that ``store.fetch`` fills.

The mirror is found as ``store.fetch`` finds it (``SCALABLE_MIRROR_DIR`` > the manifest's
``project.local_mirror`` > the user cache folder), and so is its bound
(``SCALABLE_MIRROR_MAX_BYTES`` > ``project.mirror_max_bytes``). ``prune`` never removes an
entry that a running process holds; everything it removes can be fetched again.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

import typer

from scalable.cli.cache_cmds import _duration, _size
from scalable.cli.help import PlainCommand
from scalable.cli.options import Json, OlderThan, Quiet, command_group, human_size, plural
from scalable.cli.output import Output

mirror_app = command_group("mirror", "Show or trim the local mirror of fetched artifacts (store.fetch).")


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


@mirror_app.command("ls", cls=PlainCommand)
def mirror_ls(json_mode: Json = False) -> None:
    """List the mirrored artifacts, least recently used first, with their size and whether a process holds them."""
    from scalable.artifacts.mirror import default_mirror

    out = Output(json_mode=json_mode)
    mirror = default_mirror()
    entries = mirror.entries()
    total = sum(e.size_bytes for e in entries)
    rows = [{**e.to_dict(), "in_use": mirror.in_use(e.digest)} for e in entries]
    if json_mode:
        out.json({"root": str(mirror.root), "max_bytes": mirror.max_bytes, "total_bytes": total, "entries": rows})
        return
    bound = "no bound" if mirror.max_bytes is None else f"bound {human_size(mirror.max_bytes)}"
    out.print(
        f"mirror {mirror.root}: {plural(len(rows), 'entry', 'entries')}, {human_size(total)} ({bound})", markup=False
    )
    for row in rows:
        held = "in use" if row["in_use"] else "-"
        out.print(
            f"{row['digest'][7:19]}  {row['kind']:<4}  {human_size(row['size_bytes']):>9}  "
            f"{_when(row['last_used'])}  {held:<6}  {row['key']}",
            markup=False,
        )


@mirror_app.command("prune", cls=PlainCommand)
def mirror_prune(
    older_than: OlderThan = None,
    max_size: Annotated[
        str | None,
        typer.Option(
            "--max-size",
            metavar="SIZE",
            help="Remove the least recently used down to this (default: the mirror's bound).",
        ),
    ] = None,
    everything: Annotated[bool, typer.Option("--all", help="Remove every entry that no process holds.")] = False,
    json_mode: Json = False,
    quiet: Quiet = False,
) -> None:
    """Remove mirrored artifacts that no running process holds: old ones, or the least recently used beyond a size."""
    from scalable.artifacts.mirror import default_mirror

    out = Output(quiet=quiet, json_mode=json_mode)
    age, size = _duration(older_than), _size(max_size)
    mirror = default_mirror()
    if age is None and size is None and not everything and mirror.max_bytes is None:
        raise typer.BadParameter(
            "give --older-than, --max-size or --all (the mirror has no bound: set mirror_max_bytes for a default)",
            param_hint="--older-than / --max-size / --all",
        )
    removed = mirror.prune(max_bytes=size, older_than=age, everything=everything)
    freed = sum(e.size_bytes for e in removed)
    left = mirror.entries()
    if json_mode:
        out.json(
            {
                "root": str(mirror.root),
                "removed": len(removed),
                "freed_bytes": freed,
                "entries": len(left),
                "total_bytes": sum(e.size_bytes for e in left),
            }
        )
        return
    out.print(
        f"removed {plural(len(removed), 'entry', 'entries')} ({human_size(freed)}) from {mirror.root}; "
        f"{len(left)} left ({human_size(sum(e.size_bytes for e in left))})",
        markup=False,
    )


GROUPS = {"mirror": mirror_app}

__all__ = ["GROUPS", "mirror_app", "mirror_ls", "mirror_prune"]
