"""The typer application, its global options, and the rule that turns errors into exit codes.

A user error (any :class:`~scalable.errors.ScalableError`) prints one line on stderr, what
went wrong and what to do, and exits 1; ``--debug`` (or ``SCALABLE_DEBUG=1``) shows the
traceback as well. Bad usage exits 2, as click does.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated

import typer

from scalable.cli.commands import LazyCommandGroup
from scalable.cli.options import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from scalable.cli.output import Output

app = typer.Typer(
    name="scalable",
    # Lists the commands without importing them; imports only the one that runs (see scalable.cli.commands).
    cls=LazyCommandGroup,
    help="Artifacts, caches and runs: put, get, list and verify artifacts in any store; inspect runs and caches.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: it reads like other CLIs (no <bool>, no type names) and needs no rich at startup.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_state = {"debug": False, "registered": False}

#: Loggers of the drivers under the stores. Their retry warnings and tracebacks are noise for a
#: command-line user (the store turns the failure into one error line), so they are silenced
#: unless --debug.
THIRD_PARTY_LOGGERS = (
    "aiohttp",
    "adlfs",
    "asyncio",
    "azure",
    "botocore",
    "boto3",
    "fsspec",
    "gcsfs",
    "google",
    "s3fs",
    "urllib3",
)


def quiet_third_party_loggers(debug: bool) -> None:
    """Silence the drivers' loggers (or, with ``debug``, let their warnings through)."""
    level = logging.WARNING if debug else logging.CRITICAL + 1
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(level)


def debug_enabled() -> bool:
    """Whether tracebacks are shown (``--debug`` or ``SCALABLE_DEBUG=1``)."""
    return _state["debug"] or os.environ.get("SCALABLE_DEBUG", "") not in ("", "0")


def _version(value: bool) -> None:
    if value:
        from scalable._version import __version__

        typer.echo(f"scalable {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Artifacts, caches and runs for scientific and data workflows."""
    _state["debug"] = debug
    quiet_third_party_loggers(debug_enabled())


def _register_commands() -> None:
    """Put every command on ``app`` now (once), for code that walks the tree (the docs build).

    The command line does not need this: its group loads the command it runs.
    """
    if not _state["registered"]:
        from scalable.cli.commands import register

        register(app)
        _state["registered"] = True


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code (``scalable`` calls ``sys.exit`` on it)."""
    from scalable.errors import ScalableError

    out = Output()
    try:
        # Not standalone: click returns the code of a ``typer.Exit`` instead of raising it.
        code = app(args=argv, prog_name="scalable", standalone_mode=False)
    except typer.Exit as exc:  # raised by commands for a chosen code
        return int(exc.exit_code or 0)
    except ScalableError as exc:
        if debug_enabled():
            out.traceback()
        out.error(str(exc))
        return EXIT_FAILURE
    except KeyboardInterrupt:
        out.error("interrupted")
        return 130
    except Exception as exc:
        if isinstance(exc, _abort_types()):
            out.error("aborted")
            return EXIT_FAILURE
        if isinstance(exc, _click_exception_types()):
            # typer's ``no_args_is_help`` has already printed the help; anything else shows its usage line.
            if type(exc).__name__ != "NoArgsIsHelpError":
                exc.show()  # type: ignore[attr-defined]
            return int(getattr(exc, "exit_code", EXIT_USAGE))
        if debug_enabled():
            out.traceback()
        out.error(f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback, and report it)")
        return EXIT_FAILURE
    return code if isinstance(code, int) and not isinstance(code, bool) else EXIT_OK


def _click_exception_types() -> tuple[type[BaseException], ...]:
    # Recent typer (0.29 here) vendors click: its exceptions derive from typer.TyperException; older typer uses click's.
    types: list[type[BaseException]] = [t for t in (getattr(typer, "TyperException", None),) if t is not None]
    try:
        import click

        types.append(click.ClickException)
    except ImportError:  # pragma: no cover - typer without click
        pass
    return tuple(types)


def _abort_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [typer.Abort]
    try:
        import click

        types.append(click.exceptions.Abort)
    except ImportError:  # pragma: no cover
        pass
    return tuple(types)


def run() -> None:
    """The console-script entry point."""
    sys.exit(main())


__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "THIRD_PARTY_LOGGERS",
    "app",
    "debug_enabled",
    "main",
    "quiet_third_party_loggers",
    "run",
]
