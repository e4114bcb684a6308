"""Catalog commands: ``runs list``, ``runs show RUN``, ``find`` and ``reindex STORE``.

They read the catalog (``.scalable/catalog.sqlite``, or ``SCALABLE_CATALOG``). A damaged
catalog file is moved aside and rebuilt from the local runs directory, with one warning
line; ``reindex`` rebuilds it from stores as well. An unknown run id is a failure (exit 1)
in one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from scalable.cli.help import PlainCommand
from scalable.cli.options import command_group, plural
from scalable.cli.output import Output

if TYPE_CHECKING:
    from scalable.catalog import ArtifactRow, Catalog, RunRow

runs_app = command_group("runs", "The runs in the catalog: list them, show one.")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for programs.")]
RunOpt = Annotated[str | None, typer.Option("--run", metavar="RUN", help="A run id, or a prefix of exactly one.")]


def default_runs_dir() -> Path:
    """The runs directory of the settings (``SCALABLE_RUNS_DIR``, the manifest, or ``.scalable/runs``)."""
    from scalable.errors import ScalableError
    from scalable.manifest.settings import DEFAULT_RUNS_DIR

    try:
        from scalable.manifest import resolve_settings

        return Path(resolve_settings().runs_dir)
    except ScalableError:
        return Path(DEFAULT_RUNS_DIR)


class EmptyCatalog:
    """What a command that only reads sees when there is no catalog file: no runs, no artifacts.

    Opening a :class:`~scalable.catalog.Catalog` creates its file; ``runs list``, ``runs
    show`` and ``find`` must create nothing where they run, so they read this instead.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.recovered = None

    def __enter__(self) -> EmptyCatalog:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def runs(self, limit: int | None = None) -> list[tuple[RunRow, int]]:
        return []

    def run(self, run: str) -> RunRow:
        from scalable.errors import RunNotFoundError

        raise RunNotFoundError(
            f"no run {run!r}: there is no catalog at {self.path} yet; a session adds its run when it starts, "
            "and `scalable reindex STORE` adds the runs recorded in a store"
        )

    def find(self, **filters: Any) -> list[ArtifactRow]:
        return []

    def upstream(self, target: str, depth: int = 5) -> Any:
        return self._no_lineage(target)

    def downstream(self, target: str, depth: int = 5) -> Any:
        return self._no_lineage(target)

    def _no_lineage(self, target: str) -> Any:
        from scalable.errors import LineageNotFoundError

        raise LineageNotFoundError(
            f"nothing is known of {target!r}: there is no catalog at {self.path} yet; a session adds what it "
            "reads and makes, and `scalable reindex STORE` adds the runs recorded in a store"
        )

    def runs_for_digest(self, digest: str) -> list[str]:
        return []


def open_catalog(out: Output, runs_dir: Path | None = None, *, read_only: bool = False) -> Catalog:
    """The catalog, repaired if it was damaged (say so in one warning line).

    ``read_only``: the command only reads, so a missing catalog file is not created (an
    :class:`EmptyCatalog` answers instead).
    """
    from scalable.catalog import Catalog
    from scalable.catalog.catalog import catalog_disabled, default_catalog_path

    if read_only and not catalog_disabled() and not default_catalog_path().is_file():
        return EmptyCatalog(default_catalog_path())  # type: ignore[return-value]
    catalog = Catalog(runs_dir=runs_dir if runs_dir is not None else default_runs_dir())
    if catalog.recovered:
        out.warn(catalog.recovered)
    return catalog


def _short_time(text: str | None) -> str:
    return "-" if not text else text[:16].replace("T", " ")


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _size(n: int) -> str:
    step = 1024.0
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < step or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= step
    return f"{n} B"  # pragma: no cover


def _print_table(out: Output, table: Any) -> None:
    # A terminal gets its own width; a pipe or a log gets whole lines rather than 80 columns of ellipses.
    if out.out.is_terminal or out.quiet or out.json_mode:
        out.print(table)
        return
    import sys

    from rich.console import Console

    Console(file=sys.stdout, width=200, highlight=False, soft_wrap=True).print(table)


def store_key(row: ArtifactRow, latest: int | None = None) -> str:
    """``STORE#KEY`` for a catalog row: pasteable into ``scalable get`` (the key percent-encoded as in ``ref.uri``).

    ``STORE#KEY@N`` when the row is version ``N`` and ``latest`` (the key's latest version) is another.
    """
    from scalable.artifacts.uris import encode_key

    text = f"{row.store}#{encode_key(row.key)}"
    if row.version is not None and latest is not None and row.version != latest:
        text += f"@{row.version}"
    return text


def _artifact_table(
    rows: list[ArtifactRow], *, with_run: bool, latest: dict[tuple[str, str], int | None] | None = None
) -> Any:
    from rich.table import Table

    latest = latest or {}
    table = Table(box=None, header_style="bold")
    columns = (["run"] if with_run else []) + [
        "name",
        "kind",
        "task",
        "size",
        "digest",
        "recorded",
        "version",
        "STORE#KEY",
    ]
    for column in columns:
        table.add_column(column, no_wrap=column in ("run", "digest", "recorded", "STORE#KEY"))
    for row in rows:
        cells = [row.run_id or "-"] if with_run else []
        cells += [
            row.name or "-",
            row.kind or "-",
            row.task or "-",
            _size(row.size_bytes),
            row.digest[:15],
            _short_time(row.created_at),
            "-" if row.version is None else str(row.version),
            store_key(row, latest.get((row.store, row.key))),
        ]
        table.add_row(*cells)
    return table


@runs_app.command("list", cls=PlainCommand)
def runs_list(
    json_mode: JsonOpt = False,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", metavar="N", min=1, help="At most N runs (newest first).")
    ] = None,
) -> None:
    """List runs, newest first: status, start, target, tasks, artifacts and cache hit rate."""
    out = Output(json_mode=json_mode)
    with open_catalog(out, read_only=True) as catalog:
        runs = catalog.runs(limit=limit)
    if json_mode:
        out.json([_run_summary(run, count) for run, count in runs])
        return
    if not runs:
        out.print(
            "no runs in the catalog: a session adds its run when it starts; "
            "`scalable reindex STORE` adds the runs recorded in a store"
        )
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for column in ("run id", "status", "started (UTC)", "target", "tasks", "artifacts", "cache hit rate"):
        table.add_column(column, no_wrap=column in ("run id", "started (UTC)"))
    for run, count in runs:
        table.add_row(
            run.run_id,
            run.status or "-",
            _short_time(run.started_at),
            run.target or "-",
            "-" if run.tasks is None else str(run.tasks),
            str(count),
            _rate(run.cache_hit_rate),
        )
    _print_table(out, table)


def _run_summary(run: RunRow, count: int) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "status": run.status,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "target": run.target,
        "tasks": run.tasks,
        "artifacts": count,
        "cache_hit_rate": run.cache_hit_rate,
    }


@runs_app.command("show", cls=PlainCommand)
def runs_show(
    run: Annotated[
        str, typer.Argument(metavar="RUN", help="A run id, or a prefix of exactly one.", show_default=False)
    ],
    json_mode: JsonOpt = False,
) -> None:
    """Show one run: its run.json, its summary, and the artifacts it recorded."""
    out = Output(json_mode=json_mode)
    with open_catalog(out, read_only=True) as catalog:
        row = catalog.run(run)
        artifacts = catalog.find(run=row.run_id, all_versions=True)  # everything the run made, current or not
        latest = catalog.latest_versions((a.store, a.key) for a in artifacts)
    if json_mode:
        out.json({"run": row.run, "summary": row.summary, "artifacts": [a.to_dict() for a in artifacts]})
        return
    out.print(f"[bold]run {row.run_id}[/bold]  {row.status or '-'}", markup=True)
    doc = row.run
    for label, value in (
        ("started", _short_time(row.started_at)),
        ("ended", _short_time(row.ended_at)),
        ("target", row.target or "-"),
        ("store", row.store or "-"),
        ("host", f"{doc.get('host') or '-'} (user {doc.get('user') or '-'}, pid {doc.get('pid') or '-'})"),
        ("git commit", row.git_commit or "-"),
    ):
        out.print(f"  {label:<12}{value}", markup=False)
    summary = row.summary
    if summary is None:
        out.print("  summary     none yet (the run has not closed)", markup=False)
    else:
        tasks = summary.get("tasks") or {}
        durations = summary.get("durations_s") or {}
        total = durations.get("total")
        out.print(
            f"  tasks       {tasks.get('submitted', 0)} submitted, {tasks.get('finished', 0)} finished, "
            f"{tasks.get('failed', 0)} failed" + (f", {total:.2f} s in tasks" if total else ""),
            markup=False,
        )
        cache = summary.get("cache") or {}
        out.print(
            f"  cache       {cache.get('hits', 0)} hits, {cache.get('misses', 0)} misses "
            f"(hit rate {_rate(cache.get('hit_rate'))})",
            markup=False,
        )
        out.print(
            f"  artifacts   {summary.get('artifacts', 0)} recorded, {_size(int(summary.get('bytes') or 0))}",
            markup=False,
        )
    if artifacts:
        _print_table(out, _artifact_table(artifacts, with_run=False, latest=latest))


def find(
    run: RunOpt = None,
    task: Annotated[str | None, typer.Option("--task", metavar="TASK", help="The task that recorded it.")] = None,
    kind: Annotated[
        str | None, typer.Option("--kind", metavar="ROLE", help="The role it was recorded as (result, input...).")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", metavar="GLOB", help="A glob on its name, e.g. 'members/*.csv'.")
    ] = None,
    digest: Annotated[
        str | None, typer.Option("--digest", metavar="DIGEST", help="sha256:HEX (or the hex alone).")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", metavar="TIME", help="Recorded at or after (ISO 8601, UTC).")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", metavar="TIME", help="Recorded before (ISO 8601).")] = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n", metavar="N", min=1, help="At most N artifacts.")] = None,
    all_versions: Annotated[
        bool,
        typer.Option(
            "--all-versions", help="Every version the catalog knows of each key, not only the latest (as KEY@N)."
        ),
    ] = False,
    json_mode: JsonOpt = False,
) -> None:
    """Find artifacts in the catalog by run, task, kind, name, digest and time (every filter given must match).

    Each key shows its latest version; --all-versions shows the earlier ones too, as STORE#KEY@N.
    """
    out = Output(json_mode=json_mode)
    with open_catalog(out, read_only=True) as catalog:
        rows = catalog.find(
            run=run,
            task=task,
            kind=kind,
            name=name,
            digest=digest,
            since=since,
            until=until,
            limit=limit,
            all_versions=all_versions,
        )
        latest = catalog.latest_versions((r.store, r.key) for r in rows) if all_versions else {}
        runs = catalog.runs_for_digest(digest) if digest is not None else None
    if json_mode:
        out.json([row.to_dict() for row in rows])
        return
    if not rows:
        out.print("no artifact in the catalog matches")
        return
    _print_table(out, _artifact_table(rows, with_run=True, latest=latest))
    if runs is not None:
        out.print(f"produced by {plural(len(runs), 'run')}: {', '.join(runs) or '-'}", markup=False)


def reindex(
    stores: Annotated[
        list[str],
        typer.Argument(
            metavar="STORE...", help="The stores to index (e.g. ./artifacts or s3://b/p).", show_default=False
        ),
    ],
    runs_dir: Annotated[
        Path | None,
        typer.Option(
            "--runs-dir", metavar="DIR", help="Local runs directory to read too (default: the settings' runs_dir)."
        ),
    ] = None,
    json_mode: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
) -> None:
    """Rebuild the catalog from stores' committed artifacts and runs' telemetry (theirs and the local runs dir's)."""
    from scalable.cli.locate import open_store
    from scalable.errors import UnsupportedURIError

    out = Output(quiet=quiet, json_mode=json_mode)
    opened = []
    for text in stores:
        store, prefix = open_store(text, need_key=False)
        if prefix:
            raise UnsupportedURIError(
                f"{text!r} names a prefix: reindex takes whole stores, as in '{text.partition('#')[0]}'"
            )
        opened.append(store)
    local_runs = runs_dir if runs_dir is not None else default_runs_dir()
    with open_catalog(out, local_runs) as catalog:
        report = catalog.rebuild(opened, [local_runs])
        path = catalog.path
    if json_mode:
        out.json({"catalog": str(path), **report.to_dict()})
        return
    if not quiet:
        out.result(
            f"reindexed {path}: {plural(report.runs, 'run')}, {plural(report.artifacts, 'artifact')} "
            f"({report.recorded} recorded by runs, {report.unrecorded} not) from {plural(report.refs, 'ref')} in "
            f"{', '.join(report.stores)} and the runs in {local_runs}, in {report.seconds:.2f} s"
        )
    if report.skipped_lines:
        out.warn(f"skipped {plural(report.skipped_lines, 'unreadable telemetry line')} (torn or invalid)")


#: The commands and groups this module adds to ``scalable`` (see :mod:`scalable.cli.commands`).
COMMANDS = {"find": find, "reindex": reindex}
GROUPS = {"runs": runs_app}

__all__ = ["COMMANDS", "GROUPS", "default_runs_dir", "find", "open_catalog", "reindex", "runs_list", "runs_show"]
