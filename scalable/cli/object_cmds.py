"""Object-layer commands: ``versions STORE#KEY``, ``gc STORE [--dry-run]`` and ``migrate STORE``.

Thin layers over :meth:`~scalable.artifacts.store.BaseArtifactStore.versions`,
:meth:`~scalable.artifacts.store.BaseArtifactStore.gc` and
:meth:`~scalable.artifacts.store.BaseArtifactStore.migrate`.
"""

from __future__ import annotations

import re
from typing import Annotated

import typer

from scalable.cli.app import app
from scalable.cli.locate import open_store
from scalable.cli.output import Output
from scalable.cli.store_cmds import ArtifactArg, Json, check_uri, human_size, short_digest

StoreArg = Annotated[str, typer.Argument(callback=check_uri, help="The store: a path or URI (s3://bucket/prefix).")]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``90s``, ``30m``, ``1h`` or ``2d``; ``typer.BadParameter`` otherwise."""
    match = _DURATION.match(text)
    if match is None:
        raise typer.BadParameter(f"{text!r} is not a duration: write seconds (90) or 90s, 30m, 1h, 2d")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


@app.command()
def versions(uri: ArtifactArg, json_mode: Json = False) -> None:
    """List the versions of the artifact URI, oldest first: number, digest, size, creation time."""
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


@app.command()
def gc(
    uri: StoreArg,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be removed; remove nothing.")] = False,
    grace: Annotated[
        str, typer.Option(help="Keep anything younger than this (90, 90s, 30m, 1h, 2d): puts in flight are safe.")
    ] = "1h",
    json_mode: Json = False,
) -> None:
    """Remove the objects no retained version names, and what killed puts left, older than the grace period."""
    seconds = parse_duration(grace)
    out = Output(json_mode=json_mode)
    store, _ = open_store(uri, need_key=False)
    report = store.gc(grace=seconds, dry_run=dry_run)
    if json_mode:
        out.json(
            {
                "dry_run": report.dry_run,
                "objects": report.objects,
                "tmp_files": report.tmp_files,
                "uploads": report.uploads,
                "markers": report.markers,
                "bytes_reclaimed": report.bytes_reclaimed,
                "live_objects": report.live_objects,
            }
        )
        return
    verb = "would remove" if dry_run else "removed"
    for rel in report.objects + report.tmp_files:
        out.print(f"{verb} {rel}", markup=False)
    for upload in report.uploads:
        out.print(f"{verb} unfinished upload {upload}", markup=False)
    out.result(
        f"{report.summary()}; {human_size(report.bytes_reclaimed)} reclaimed" + (" (dry run)" if dry_run else "")
    )


@app.command()
def migrate(uri: StoreArg) -> None:
    """Convert a store written in the layout before content-addressed objects, in place (resumable)."""
    out = Output()
    store, _ = open_store(uri, need_key=False)
    report = store.migrate()
    out.result(report.summary())
