"""Object-layer commands: ``versions STORE#KEY``, ``gc STORE [--dry-run] [--verify]`` and ``migrate STORE``.

Thin layers over :meth:`~scalable.artifacts.store.BaseArtifactStore.versions`,
:meth:`~scalable.artifacts.store.BaseArtifactStore.gc` and
:meth:`~scalable.artifacts.store.BaseArtifactStore.migrate`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from scalable.cli.options import EXIT_FAILURE, ArtifactArg, Json, check_uri, human_size, short_digest
from scalable.cli.output import Output

StoreArg = Annotated[
    str,
    typer.Argument(
        metavar="STORE",
        callback=check_uri,
        help="The store: a path or URI (s3://bucket/prefix).",
        show_default=False,
    ),
]


def versions(uri: ArtifactArg, json_mode: Json = False) -> None:
    """List the versions of the artifact URI, oldest first: number, digest, size, creation time."""
    from scalable.cli.locate import open_store

    out = Output(json_mode=json_mode)
    store, key = open_store(uri, need_key=True)
    history = store.versions(key)
    latest = store.info(key).version if store.exists(key) else None
    if json_mode:
        out.json([{**ref.to_dict(), "latest": ref.version == latest} for ref in history])
        return
    for ref in history:
        mark = "  (latest)" if ref.version == latest else ""
        created = ref.created_at.strftime("%Y-%m-%d %H:%M:%S")
        out.result(
            f"{ref.key}@{ref.version}  {short_digest(ref.digest)}  {human_size(ref.size_bytes)}  {created}{mark}"
        )


def gc(
    uri: StoreArg,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be removed; remove nothing.")] = False,
    grace: Annotated[
        str,
        typer.Option(
            "--grace",
            metavar="AGE",
            help="Keep anything younger than this (90s, 30m, 1h, 2d): puts in flight are safe.",
        ),
    ] = "1h",
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Also re-hash every object left; move damaged ones to .scalable/quarantine/ and exit 1.",
        ),
    ] = False,
    json_mode: Json = False,
) -> None:
    """Remove the objects no retained version names, and what killed puts left, older than the grace period."""
    from scalable.cli.cache_cmds import parse_duration
    from scalable.cli.locate import open_store

    try:
        seconds = parse_duration(grace)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--grace'") from None
    out = Output(json_mode=json_mode)
    store, _ = open_store(uri, need_key=False)
    report = store.gc(grace=seconds, dry_run=dry_run, verify=verify)
    if json_mode:
        doc = {
            "dry_run": report.dry_run,
            "objects": report.objects,
            "tmp_files": report.tmp_files,
            "uploads": report.uploads,
            "markers": report.markers,
            "records": report.records,
            "bytes_reclaimed": report.bytes_reclaimed,
            "live_objects": report.live_objects,
        }
        if verify:
            doc.update(verified_objects=report.verified_objects, damaged=report.damaged, quarantined=report.quarantined)
        out.json(doc)
    else:
        verb = "would remove" if dry_run else "removed"
        for rel in report.objects + report.tmp_files:
            out.print(f"{verb} {rel}", markup=False)
        for upload in report.uploads:
            out.print(f"{verb} unfinished upload {upload}", markup=False)
        for rel, problem in report.damaged.items():
            out.error(f"damaged: {rel}: {problem}")
        out.result(
            f"{report.summary()}; {human_size(report.bytes_reclaimed)} reclaimed" + (" (dry run)" if dry_run else "")
        )
        if report.damaged:
            out.error(
                "damaged objects were moved to .scalable/quarantine/ (reads of the versions naming them fail with "
                "IntegrityError): re-put those artifacts from their sources, or delete them"
            )
    if report.damaged:
        raise typer.Exit(EXIT_FAILURE)


def migrate(uri: StoreArg) -> None:
    """Convert a store written in an older layout (1 or 2) to the current one, in place (resumable)."""
    from scalable.cli.locate import open_store

    out = Output()
    store, _ = open_store(uri, need_key=False)
    report = store.migrate()
    out.result(report.summary())


COMMANDS = {"versions": versions, "gc": gc, "migrate": migrate}

__all__ = ["COMMANDS", "gc", "migrate", "versions"]
