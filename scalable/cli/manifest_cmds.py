"""``scalable validate [MANIFEST]`` and ``scalable schema``: check a ``scalable.yaml``, print its JSON schema."""

from __future__ import annotations

from typing import Annotated

import typer

from scalable.cli.options import EXIT_FAILURE, Json
from scalable.cli.output import Output


def validate(
    manifest: Annotated[
        str | None,
        typer.Argument(
            metavar="[MANIFEST]",
            help="The manifest (default: $SCALABLE_MANIFEST, else the nearest scalable.yaml here or above).",
            show_default=False,
        ),
    ] = None,
    json_mode: Json = False,
) -> None:
    """Load and validate a manifest, with the environment it would run in; print ok or every problem.

    A problem is printed as file:line: field: message; the exit code is then 1.
    """
    from scalable.errors import ManifestError, ManifestNotFoundError, ManifestProblem
    from scalable.manifest import resolve_settings

    out = Output(json_mode=json_mode)
    try:
        if manifest is None and _no_default_manifest():
            raise ManifestNotFoundError(
                None,
                [
                    ManifestProblem(
                        None,
                        None,
                        "nothing to validate: no scalable.yaml here or in a parent folder, and SCALABLE_MANIFEST "
                        "is not set, so the built-in defaults are in use (store ./artifacts, runs, catalog and "
                        "cache under ./.scalable); give a path (scalable validate path/to/scalable.yaml)",
                    )
                ],
            )
        settings = resolve_settings(manifest)
    except ManifestError as exc:
        if not json_mode:
            raise
        problems = [{"line": p.line, "field": p.field, "message": p.message} for p in exc.problems]
        out.json({"ok": False, "path": exc.source, "problems": problems})
        raise typer.Exit(EXIT_FAILURE) from None
    path = str(settings.manifest_path)
    if json_mode:
        out.json({"ok": True, "path": path, "targets": sorted({*settings.manifest.targets, "local"})})
    else:
        out.result(f"ok: {path}")


def _no_default_manifest() -> bool:
    from scalable.project import project_manifest

    return project_manifest() is None


def schema() -> None:
    """Print the JSON schema of scalable.yaml (for editors and CI checks)."""
    from scalable.manifest import json_schema

    Output().json(json_schema())


#: The commands this module adds to ``scalable`` (see :mod:`scalable.cli.commands`).
COMMANDS = {"validate": validate, "schema": schema}

__all__ = ["COMMANDS", "schema", "validate"]
