"""What every command shares: exit codes, the common options and arguments, and small printing helpers.

Command modules import this module, never :mod:`scalable.cli.app`, so the application and
the commands do not import each other. It imports only typer at module level: the help
of every command can be shown without loading a store, pydantic or fsspec.

Metavars follow one convention: upper-case words (``STORE#KEY``, ``PATH``, ``N``,
``KEY=VALUE``), no type names; flags have none.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from scalable.cli.output import Output

#: Exit codes, the same for every command.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def check_uri(value: str | None) -> str | None:
    """Typer callback: a URI that cannot be parsed is a bad argument (usage error, exit 2)."""
    if value is not None:
        from scalable.cli.locate import parse_artifact_uri
        from scalable.errors import UnsupportedURIError

        try:
            parse_artifact_uri(value)
        except UnsupportedURIError as exc:
            raise typer.BadParameter(str(exc)) from None
    return value


def check_artifact_uri(value: str) -> str:
    """Typer callback for commands on one artifact: the URI must parse and name a valid key (else exit 2)."""
    check_uri(value)
    from scalable.artifacts.keys import validate_key
    from scalable.cli.locate import split_store_key
    from scalable.errors import InvalidKeyError, UnsupportedURIError

    try:
        store, key = split_store_key(value)
    except UnsupportedURIError as exc:
        raise typer.BadParameter(str(exc)) from None
    if "#" not in value and _may_be_ref_uri(value):
        return value  # what ref.uri prints: resolved to its store and key when the command runs
    if not key:
        raise typer.BadParameter(f"{value!r} names a store but no artifact: add #KEY, as in '{store}#runs/a.csv'")
    try:
        validate_key(key)
    except InvalidKeyError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


def _may_be_ref_uri(value: str) -> bool:
    """A ref's uri (``<store uri>/<key>``): an object-store URI, or a local path inside a store."""
    from scalable.artifacts.resolve import local_path
    from scalable.artifacts.uris import split_protocol

    protocol, _ = split_protocol(value)
    if protocol not in (None, "file", "local"):
        return True
    path = local_path(value)
    return any((parent / ".scalable").is_dir() for parent in path.parents)


ArtifactArg = Annotated[
    str,
    typer.Argument(
        metavar="STORE#KEY",
        callback=check_artifact_uri,
        help="The artifact: STORE#KEY, #KEY for the default store, or a ref's uri.",
        show_default=False,
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the result (or nothing).")]
OlderThan = Annotated[
    str | None,
    typer.Option("--older-than", metavar="AGE", help="Remove entries not used for this long (30d, 12h, 15m)."),
]
Json = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]


def command_group(name: str, help: str) -> typer.Typer:
    """A command group (``scalable cache ...``): shows its help when run alone, plain click help, ``-h``."""
    from scalable.cli.help import PlainGroup

    return typer.Typer(
        name=name,
        help=help,
        cls=PlainGroup,
        no_args_is_help=True,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 artifact``, ``2 artifacts`` (``many`` for irregular plurals: ``plural(2, 'entry', 'entries')``)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def human_size(n: int) -> str:
    """A byte count for people: ``1.2 MB`` (powers of 1000, as rich prints transfer sizes)."""
    from rich.filesize import decimal

    return decimal(n)


def short_digest(digest: str) -> str:
    """``sha256:`` and the first 12 hex digits: enough to tell artifacts apart in a listing."""
    return digest[: len("sha256:") + 12]


def confirm_or_exit(out: Output, question: str, yes: bool) -> None:
    """Ask ``question`` on a terminal; without one, refuse unless ``--yes`` (exit 2) instead of waiting."""
    if yes:
        return
    if not sys.stdin.isatty():
        out.error(f"{question[:-1]}: stdin is not a terminal, so nothing is asked and nothing is done; pass --yes")
        raise typer.Exit(EXIT_USAGE)
    if not typer.confirm(question, default=False, err=True):
        out.error("nothing done")
        raise typer.Exit(EXIT_FAILURE)


__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "ArtifactArg",
    "Json",
    "OlderThan",
    "Quiet",
    "check_artifact_uri",
    "check_uri",
    "command_group",
    "confirm_or_exit",
    "human_size",
    "plural",
    "short_digest",
]
