"""``scalable cache info | clear | prune``: the local tier of the function cache.

The cache directory and the remote tier are resolved as a session resolves them
(``SCALABLE_CACHE_DIR`` > the manifest's ``project.local_cache`` > ``./.scalable/cache``;
the same for ``SCALABLE_CACHE_REMOTE`` and ``project.cache_remote``). ``clear`` and
``prune`` touch only the local tier: the remote one is shared with other machines.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer

from scalable.cli.help import PlainCommand
from scalable.cli.options import (
    EXIT_FAILURE,
    Json,
    OlderThan,
    Quiet,
    command_group,
    confirm_or_exit,
    human_size,
    plural,
)
from scalable.cli.output import Output

cache_app = command_group("cache", "Inspect, clear or prune the local tier of the function cache.")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)?\s*$", re.IGNORECASE)
_SECONDS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``12h``, ``30d`` or ``2w``; ``ValueError`` otherwise."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration: write a number and a unit, as in 90s, 15m, 12h, 30d or 2w")
    number, unit = match.groups()
    return float(number) * _SECONDS[(unit or "s").lower()]


def _duration(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--older-than'") from None


def _size(value: str | None) -> int | None:
    if value is None:
        return None
    from scalable.cache.config import parse_size

    try:
        return parse_size(value, "--max-size")
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--max-size'") from None


def _origin(source: str) -> str:
    if source in ("default", "argument"):
        return source
    if source == "manifest":
        return "manifest"
    return f"${source}"


def _where() -> dict[str, Any]:
    """The cache's directory, size limit and remote, and where each setting came from."""
    from scalable.artifacts.uris import redact_uri
    from scalable.cache.config import resolve_settings as cache_settings
    from scalable.manifest import resolve_settings

    settings = resolve_settings()
    try:
        limits = cache_settings()
    except ValueError as exc:  # a malformed SCALABLE_CACHE_* variable; the message names it
        Output().error(str(exc))
        raise typer.Exit(EXIT_FAILURE) from None
    return {
        "local_dir": str(settings.local_cache),
        "local_dir_source": _origin(settings.sources["local_cache"]),
        "size_limit": limits.size_limit,
        "size_limit_source": _origin(limits.origin("size_limit").lstrip("$")),
        "remote": redact_uri(settings.cache_remote) if settings.cache_remote else None,
        "remote_source": _origin(settings.sources["cache_remote"]),
        "manifest": None if settings.manifest_path is None else str(settings.manifest_path),
    }


@cache_app.command("info", cls=PlainCommand)
def cache_info(json_mode: Json = False) -> None:
    """Show the local cache directory, its size and entry count, the remote tier, and where each came from."""
    from scalable.cache.maintenance import local_cache_stats

    out = Output(json_mode=json_mode)
    where = _where()
    stats = local_cache_stats(where["local_dir"])
    doc = {
        **where,
        "exists": stats.exists,
        "entries": stats.entries,
        "data_bytes": stats.data_bytes,
        "disk_bytes": stats.disk_bytes,
    }
    if json_mode:
        out.json(doc)
        return
    missing = "" if stats.exists else " (no cache there yet)"
    out.print(f"local dir   {where['local_dir']}{missing}  [{where['local_dir_source']}]", markup=False)
    out.print(f"entries     {stats.entries}", markup=False)
    out.print(
        f"size        {human_size(stats.data_bytes)} in entries, {human_size(stats.disk_bytes)} on disk, "
        f"limit {human_size(where['size_limit'])}  [{where['size_limit_source']}]",
        markup=False,
    )
    remote = where["remote"] or "none"
    out.print(f"remote      {remote}  [{where['remote_source']}]", markup=False)
    out.print(f"manifest    {where['manifest'] or 'none'}", markup=False)


@cache_app.command("clear", cls=PlainCommand)
def cache_clear(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json_mode: Json = False,
    quiet: Quiet = False,
) -> None:
    """Remove every entry of the local cache (the remote tier is not touched). Asks first, unless --yes."""
    from scalable.cache.maintenance import clear_local_cache, local_cache_stats

    out = Output(quiet=quiet, json_mode=json_mode)
    where = _where()
    stats = local_cache_stats(where["local_dir"])
    removed = 0
    if stats.entries:
        entries = plural(stats.entries, "entry", "entries")
        question = f"remove all {entries} ({human_size(stats.data_bytes)}) of {where['local_dir']}?"
        confirm_or_exit(out, question, yes)
        removed = clear_local_cache(where["local_dir"])
    if json_mode:
        out.json({"local_dir": where["local_dir"], "removed": removed, "remote_untouched": where["remote"]})
        return
    out.print(f"removed {plural(removed, 'entry', 'entries')} from {where['local_dir']}", markup=False)
    if where["remote"]:
        out.print(f"the remote tier {where['remote']} is shared and was not touched", markup=False)


@cache_app.command("prune", cls=PlainCommand)
def cache_prune(
    older_than: OlderThan = None,
    max_size: Annotated[
        str | None,
        typer.Option(
            "--max-size", metavar="SIZE", help="Then remove the least recently used down to this (500MB, 2GiB)."
        ),
    ] = None,
    json_mode: Json = False,
    quiet: Quiet = False,
) -> None:
    """Remove old entries from the local cache, or the least recently used beyond a size."""
    from scalable.cache.maintenance import prune_local_cache

    out = Output(quiet=quiet, json_mode=json_mode)
    age, size = _duration(older_than), _size(max_size)
    if age is None and size is None:
        raise typer.BadParameter("give --older-than, --max-size, or both", param_hint="--older-than / --max-size")
    where = _where()
    result = prune_local_cache(where["local_dir"], older_than=age, max_size=size)
    if json_mode:
        out.json(
            {
                "local_dir": where["local_dir"],
                "removed": result.removed,
                "freed_bytes": result.freed_bytes,
                "entries": result.after.entries,
                "data_bytes": result.after.data_bytes,
            }
        )
        return
    out.print(
        f"removed {plural(result.removed, 'entry', 'entries')} ({human_size(result.freed_bytes)}) "
        f"from {where['local_dir']}; "
        f"{result.after.entries} left ({human_size(result.after.data_bytes)})",
        markup=False,
    )


#: The command groups this module adds to ``scalable`` (see :mod:`scalable.cli.commands`).
GROUPS = {"cache": cache_app}

__all__ = ["GROUPS", "cache_app", "cache_clear", "cache_info", "cache_prune", "parse_duration"]
