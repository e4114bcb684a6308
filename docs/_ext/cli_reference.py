"""The CLI reference, as markdown, walked from the typer app's click command tree.

Each command gets a heading (``scalable store put``), its usage line, its help text and a
table of its arguments and options. Nothing is written by hand, so the reference lists
exactly the commands and options the installed ``scalable`` has.
"""

from __future__ import annotations

import enum
import inspect
import typing
from pathlib import Path
from typing import Any

# typer >= 0.20 ships its own copy of click, so commands are handled by duck typing
# (``param_type_name``, ``list_commands``) rather than by ``isinstance`` on click classes.
Command = Any
Context = Any
Parameter = Any


def _root_command() -> Command:
    import typer

    from scalable.cli.app import _register_commands, app

    _register_commands()
    return typer.main.get_command(app)


def _metavar(param: Parameter) -> str:
    """The value a parameter takes: choices of an enum, else a word for its type."""
    descriptor = getattr(param, "type_descriptor", None)
    annotation = getattr(descriptor, "annotation", None)
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (list, tuple) and args:
        annotation = args[0]
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "|".join(str(member.value) for member in annotation)
    names = {Path: "PATH", int: "INTEGER", float: "NUMBER", str: "TEXT", bool: "BOOLEAN"}
    return names.get(annotation, "VALUE") if isinstance(annotation, type) else "VALUE"


def _argument_name(param: Parameter) -> str:
    name = str(param.name).upper()
    if getattr(param, "nargs", 1) == -1:
        name += "..."
    return name if param.required else f"[{name}]"


def _usage(cmd: Command, ctx: Context, path: list[str]) -> str:
    params = cmd.get_params(ctx)
    pieces = [*path]
    if any(p.param_type_name == "option" for p in params):
        pieces.append("[OPTIONS]")
    pieces += [_argument_name(p) for p in params if p.param_type_name == "argument"]
    if hasattr(cmd, "list_commands"):
        pieces.append("COMMAND [ARGS]...")
    return " ".join(pieces)


def _param_row(param: Parameter) -> str:
    help_text = getattr(param, "help", None) or ""
    if param.param_type_name == "argument":
        name = f"`{_argument_name(param)}`"
        kind = "argument" + ("" if param.required else ", optional")
    else:
        name = ", ".join(f"`{opt}`" for opt in [*param.opts, *param.secondary_opts])
        kind = "flag" if param.is_flag else f"option `{_metavar(param)}`"
        if getattr(param, "multiple", False):
            kind += ", repeatable"
        if param.required:
            kind += ", required"
        if param.envvar:
            help_text += f" (env `{param.envvar}`)"
        default = param.default
        shown = getattr(param, "show_default", True) is not False
        if not param.is_flag and shown and default not in (None, (), "") and not callable(default):
            value = default.value if isinstance(default, enum.Enum) else default
            help_text += f" Default: `{value}`."
    return f"| {name} | {kind.replace('|', chr(92) + '|')} | {_cell(help_text)} |"


def _help_markdown(text: str) -> str:
    """A command's docstring as markdown: its paragraphs, each joined into one line."""
    paragraphs = [_escape(" ".join(p.split())) for p in inspect.cleandoc(text).split("\n\n")]
    return "\n\n".join(paragraphs)


def _escape(text: str) -> str:
    """``<hex>`` and the like are text, not inline HTML."""
    return text.replace("<", "\\<").replace(">", "\\>")


def _cell(text: str) -> str:
    return _escape(" ".join(text.split())).replace("|", "\\|")


def _command_section(cmd: Command, path: list[str], parent: Context | None, level: int) -> list[str]:
    ctx = cmd.make_context(path[-1], [], parent=parent, resilient_parsing=True)
    title = " ".join(path)
    lines = [f"{'#' * level} `{title}`", ""]
    lines += ["```text", _usage(cmd, ctx, path), "```", ""]
    if cmd.help:
        lines += [_help_markdown(cmd.help), ""]
    params = [p for p in cmd.get_params(ctx) if not getattr(p, "hidden", False)]
    if params:
        lines += ["| name | kind | meaning |", "|---|---|---|"]
        lines += [_param_row(p) for p in params]
        lines.append("")
    if hasattr(cmd, "list_commands"):
        for name in cmd.list_commands(ctx):  # in the order the CLI lists them
            sub = cmd.get_command(ctx, name)
            if sub is None or getattr(sub, "hidden", False):
                continue
            lines += _command_section(sub, [*path, name], ctx, min(level + 1, 6))
    return lines


def cli_reference(level: int = 3) -> str:
    """Markdown for every command of ``scalable``, headings starting at ``level``."""
    root = _root_command()
    return "\n".join(_command_section(root, ["scalable"], None, level)) + "\n"
