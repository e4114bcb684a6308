"""``scalable cp`` and ``scalable sync``: copy artifacts between stores by digest.

Thin layers over :func:`scalable.copy_artifact` and :func:`scalable.sync`: only the objects
the destination lacks move, verified on the way, and refs keep their digest, metadata and
creation time. A failure to copy one key (a source object that fails verification, a
refused overwrite) is reported on stderr, one line per key, and the command exits 1 after
the others were copied.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from scalable.cli.options import EXIT_FAILURE, Json, Quiet, check_uri, human_size, plural
from scalable.cli.output import Output

AllVersions = Annotated[
    bool, typer.Option("--all-versions", help="Copy every retained version, in order (default: the latest only).")
]
NoOverwrite = Annotated[
    bool,
    typer.Option(
        "--no-overwrite",
        help="Refuse a destination key that holds a different artifact (default: keep both, as versions).",
    ),
]


class _Bar:
    """Moves an :meth:`Output.progress` bar: the two calls a sync makes on a callback, without fsspec's class.

    (fsspec costs about 0.1 s to import, a sixth of a sync with nothing to copy.)
    """

    def __init__(self, advance: Any) -> None:
        self._advance = advance

    def set_size(self, size: int | None) -> None:
        self._advance.set_total(size)

    def relative_update(self, inc: int = 1) -> None:
        self._advance(inc)


def _summary_line(doc: dict[str, Any]) -> str:
    head = "would copy" if doc["dry_run"] else "copied"
    line = (
        f"{head} {plural(doc['keys'], 'key')} ({plural(doc['refs'], 'version')}), "
        f"{plural(doc['objects'], 'object')} ({human_size(doc['bytes'])})"
    )
    if doc["server_side"]:
        line += f", {doc['server_side']} of them server-side"
    line += f"; {doc['skipped']} skipped (up to date)"
    if doc["deleted"]:
        line += f", {doc['deleted']} {'to delete' if doc['dry_run'] else 'deleted'}"
    line += f", {len(doc['failed'])} failed in {doc['seconds']:.2f} s"
    return line


def cp(
    src: Annotated[
        str,
        typer.Argument(metavar="SRC#KEY", callback=check_uri, help="The artifact to copy.", show_default=False),
    ],
    dst: Annotated[
        str,
        typer.Argument(
            metavar="DST[#KEY]",
            callback=check_uri,
            help="The store to copy it to, and its key there (default: the same key).",
            show_default=False,
        ),
    ],
    all_versions: AllVersions = False,
    no_overwrite: NoOverwrite = False,
    json_mode: Json = False,
    quiet: Quiet = False,
) -> None:
    """Copy the artifact SRC#KEY to the store DST, moving only the objects DST lacks (by digest).

    The copy keeps the artifact's digest, metadata and creation time; with --all-versions
    every retained version is copied, oldest first.
    """
    from scalable.artifacts.replicate import copy_artifact
    from scalable.cli.locate import open_store
    from scalable.cli.store_cmds import _key_must_exist, _ref_doc

    out = Output(quiet=quiet, json_mode=json_mode)
    src_store, key = open_store(src, need_key=True)
    dst_store, dst_key = open_store(dst, need_key=False, create=True)
    with _key_must_exist(src_store, key, src), out.progress(f"cp {key}", None) as advance:
        ref = copy_artifact(
            src_store,
            key,
            dst_store,
            dst_key or None,
            versions="all" if all_versions else "latest",
            overwrite=not no_overwrite,
            callback=_Bar(advance),
        )
    if json_mode:
        out.json(_ref_doc(ref, dst_store))
    elif quiet:
        out.result(ref.uri)
    else:
        out.print(f"copied {key} to {ref.uri} (version {ref.version}, {ref.digest[:19]})", markup=False)


def sync(
    src: Annotated[
        str,
        typer.Argument(
            metavar="SRC[#PREFIX]", callback=check_uri, help="The store (and key prefix) to copy.", show_default=False
        ),
    ],
    dst: Annotated[
        str,
        typer.Argument(
            metavar="DST[#PREFIX]",
            callback=check_uri,
            help="The store to copy to, and the prefix that replaces SRC's (default: the same prefix).",
            show_default=False,
        ),
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would move; change nothing.")] = False,
    delete: Annotated[
        bool, typer.Option("--delete", help="Delete keys under DST's prefix that SRC does not have.")
    ] = False,
    all_versions: AllVersions = False,
    no_overwrite: NoOverwrite = False,
    json_mode: Json = False,
    quiet: Quiet = False,
) -> None:
    """Make the artifacts of DST match those of SRC, moving only the objects DST lacks (by digest).

    Refs keep their digest, metadata and creation time. A sync that was killed, run
    again, moves only what is left; one with nothing changed lists each side and reads
    nothing else. Exits 1 if any key could not be copied (each is named on stderr).
    """
    from scalable.artifacts.replicate import sync as sync_stores
    from scalable.cli.locate import open_store

    out = Output(quiet=quiet, json_mode=json_mode)
    src_store, prefix = open_store(src, need_key=False)
    dst_store, dst_prefix = open_store(dst, need_key=False, create=True)
    with out.progress("sync", None) as advance:
        summary = sync_stores(
            src_store,
            dst_store,
            prefix,
            dst_prefix=dst_prefix if "#" in dst else prefix,
            delete=delete,
            dry_run=dry_run,
            versions="all" if all_versions else "latest",
            overwrite=not no_overwrite,
            callback=_Bar(advance),
            raise_on_failure=False,
        )
    doc = summary.to_dict()
    if json_mode:
        out.json(doc)
    else:
        out.print(_summary_line(doc), markup=False)
    for failure in summary.failed:
        out.error(f"{failure.key}: {failure.message}")
    if summary.failed:
        raise typer.Exit(EXIT_FAILURE)


COMMANDS = {"cp": cp, "sync": sync}

__all__ = ["COMMANDS", "cp", "sync"]
