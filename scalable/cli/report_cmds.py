"""``scalable report RUN``: write a run's self-contained HTML report and print its path.

RUN is a run id, a unique prefix of one, or a run directory's path (see
:func:`scalable.session.locate.locate_run`). The report goes to ``-o FILE`` if given;
else to ``report.html`` in the run directory when the run is on this machine; else (a run
read from the default store) to ``./report-<run_id>.html``. An unknown or ambiguous RUN
is one line on stderr and exit code 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from scalable.cli.options import plural
from scalable.cli.output import Output


def default_output(run_dir: Path, run_id: str) -> Path:
    """``<run_dir>/report.html`` for a local run; ``./report-<run_id>.html`` for one downloaded from a store."""
    from scalable.session.locate import run_cache_dir

    cache = run_cache_dir().resolve()
    if run_dir.resolve().is_relative_to(cache):
        return Path.cwd() / f"report-{run_id}.html"
    return run_dir / "report.html"


def report(
    run: Annotated[
        str,
        typer.Argument(
            metavar="RUN", help="A run id, a unique prefix of one, or a run directory's path.", show_default=False
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Where to write the HTML (default: report.html in the run directory, "
            "or ./report-<run_id>.html for a run read from the store).",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the path written.")] = False,
    json_mode: Annotated[bool, typer.Option("--json", help="Print the path and the run's figures as JSON.")] = False,
) -> None:
    """Write one self-contained HTML report of a run (timeline, cache hit rate, artifacts) and print its path."""
    from rich.markup import escape

    from scalable.report import load_run_report, write_report
    from scalable.session.locate import locate_run

    out = Output(quiet=quiet, json_mode=json_mode)
    run_dir = _locate(run, locate_run)
    model = load_run_report(run_dir)
    path = write_report(model, output or default_output(run_dir, model.run_id))
    for note in model.notes:
        out.warn(escape(note))  # notes name files and parse errors: not rich markup
    if json_mode:
        out.json(
            {
                "path": str(path),
                "run_id": model.run_id,
                "run_dir": str(run_dir),
                "status": model.status,
                "tasks": {"total": len(model.tasks), **model.counts},
                "artifacts": len(model.artifacts),
                "bytes": model.total_bytes,
                "cache": {"hits": model.cache.hits, "misses": model.cache.misses, "hit_rate": model.cache.hit_rate},
                "notes": model.notes,
            }
        )
        return
    out.print(
        f"run {model.run_id} ({model.status}): {plural(len(model.tasks), 'task')}, {model.counts['failed']} failed, "
        f"{plural(len(model.artifacts), 'artifact')}",
        markup=False,
    )
    out.result(str(path))


def _locate(run: str, locate_run: Any) -> Path:
    """The run's directory: on this machine, else through the catalog, which knows the store a run wrote to."""
    from scalable.errors import RunNotFoundError, ScalableError

    try:
        return locate_run(run)
    except RunNotFoundError as missing:
        from scalable.catalog import Catalog
        from scalable.catalog.catalog import catalog_disabled, default_catalog_path

        if catalog_disabled() or not default_catalog_path().is_file():
            raise
        try:
            with Catalog() as catalog:
                row = catalog.run(run)
        except RunNotFoundError:
            raise missing from None
        except ScalableError:
            raise missing from None
        if not row.store:
            raise
        return locate_run(row.run_id, store=row.store)


#: The commands this module adds to ``scalable`` (see :mod:`scalable.cli.commands`).
COMMANDS = {"report": report}

__all__ = ["COMMANDS", "default_output", "report"]
