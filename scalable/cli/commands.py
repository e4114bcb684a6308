"""The one place that puts the commands on the application.

Each command module defines plain functions (and sub-applications for command groups)
and exports them in ``COMMANDS`` (name -> function) and ``GROUPS`` (name -> typer.Typer).
It imports :mod:`scalable.cli.options`, never :mod:`scalable.cli.app`, so nothing imports
in a loop. A new command module is registered by adding its name to ``COMMAND_MODULES``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer

#: The command modules, in the order their commands appear in ``scalable --help``.
COMMAND_MODULES = (
    "scalable.cli.store_cmds",
    "scalable.cli.object_cmds",
    "scalable.cli.catalog_cmds",
    "scalable.cli.lineage_cmds",
    "scalable.cli.manifest_cmds",
    "scalable.cli.report_cmds",
    "scalable.cli.cache_cmds",
    "scalable.cli.mirror_cmds",
)


def register(app: typer.Typer) -> None:
    """Add every command and command group of :data:`COMMAND_MODULES` to ``app``."""
    from scalable.cli.help import PlainCommand

    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        for command, function in getattr(module, "COMMANDS", {}).items():
            app.command(command, cls=PlainCommand)(function)
        for group, sub_app in getattr(module, "GROUPS", {}).items():
            app.add_typer(sub_app, name=group)


__all__ = ["COMMAND_MODULES", "register"]
