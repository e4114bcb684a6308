"""Help that reads like a command line's: ``Usage: scalable put [OPTIONS] SRC STORE#KEY``.

typer writes type names into help (``{src}``, ``SRC <path>``, ``--name <str>``); every
command of ``scalable`` uses :class:`PlainCommand`, which prints each argument by its
metavar (``[X]`` when optional, ``X...`` when repeated) and each option as click does
(``--limit N``; a flag alone). Metavars are set on every parameter (see
:mod:`scalable.cli.options`).
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperArgument, TyperCommand, TyperGroup

from scalable.cli.coercion import use_plain_text


def _argument_name(param: TyperArgument) -> str:
    name = param.metavar or (param.name or "").upper()
    if param.nargs != 1 and not name.endswith("..."):
        name += "..."
    return name


class _PlainValues:
    """Text and flag parameters, ``--help`` included, coerced without pydantic (see :mod:`scalable.cli.coercion`)."""

    params: list[Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        use_plain_text(self.params)

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None:
            use_plain_text([option])
        return option


class PlainGroup(_PlainValues, TyperGroup):
    """A typer group (``scalable cache``...) whose own options need no pydantic either."""


class PlainCommand(_PlainValues, TyperCommand):
    """A typer command whose usage line and argument list show metavars, never Python types."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = _argument_name(param)
                pieces.append(name if param.required or name.startswith("[") else f"[{name}]")
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        args: list[tuple[str, str]] = []
        opts: list[tuple[str, str]] = []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                if not param.hidden:
                    name = _argument_name(param)
                    if name.startswith("[") and name.endswith("]"):  # only the brackets of an optional argument
                        name = name[1:-1]
                    args.append((name, param.help or ""))
                continue
            record = param.get_help_record(ctx)
            if record is not None:
                opts.append(record)
        if args:
            with formatter.section("Arguments"):
                formatter.write_dl(args)
        if opts:
            with formatter.section("Options"):
                formatter.write_dl(opts)


__all__ = ["PlainCommand", "PlainGroup"]
