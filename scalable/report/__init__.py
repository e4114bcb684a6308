"""Run reports: one self-contained HTML file that shows what a run did.

From Python::

    from scalable.report import write_run_report

    path = write_run_report(".scalable/runs/20261123T231500Z-3f2a1b", "report.html")

or, from the shell, with a run id, a unique prefix of one, or a run directory's path::

    scalable report 20261123T2315            # writes .scalable/runs/<run_id>/report.html
    scalable report 20261123T2315 -o run.html --quiet
    scalable report 20261123T2315 --json     # {"path": ..., "run_id": ..., "tasks": ..., ...}

A report has

- the run's metadata (status, start and end, target, store, host, user, git commit,
  Python, the installed distributions' digest, the code digest);
- summary cards: wall time, tasks finished and failed, cache hit rate, artifacts and bytes;
- the cache hit rate of the tasks' ``@cacheable`` calls, as a number and a bar, with the
  ``cache.jsonl`` events counted by kind and tier;
- a task timeline: one bar per task from its start to its end on a shared time axis,
  coloured by outcome (cache hit, computed, failed, never finished) and labelled with the
  task id (bars are at least 4 px wide, so a run of cache hits still shows them; the time
  before the first task, the cluster starting, is a labelled band); hovering a bar shows its
  function, worker, duration, cache counts and error;
- the tasks that failed or never finished, with their errors and (collapsed) tracebacks;
- the artifacts table, sorted by name: name, key, kind, size (exact bytes on hover), the
  full digest, the metadata, and ``STORE#KEY`` (one click selects it for copying); keys and
  names wrap only after ``/``, ``_``, ``-`` and ``.``;
- the lineage graph: the run's inputs -> its tasks -> its outputs, inline SVG; past 40
  tasks, tasks are grouped by function and a column of more than 40 artifacts by folder;
- links to the run's telemetry files (relative when the report is in the run directory).

It is built from the run directory's telemetry (``run.json``, ``summary.json``,
``tasks.jsonl``, ``artifacts.jsonl``, ``cache.jsonl``; see :mod:`scalable.session`), so it
works for a run that crashed before writing its summary, and lists any unreadable lines it
skipped. A run made on another machine is read from the default store, where a closed
session copies its telemetry (see :func:`scalable.session.locate.locate_run`).

The file needs nothing but itself: inline CSS and inline SVG, no JavaScript, no fonts or
images from elsewhere, and a Content-Security-Policy that forbids scripts and network
requests. Every string from telemetry is HTML-escaped. A run of 2,000 tasks gives a file of
about 830 kB (one SVG row per task); headless Chromium loads it 1 to 3 s slower than a
12-task report on a busy two-core machine.

Where ``scalable report`` writes: ``-o FILE`` if given; else ``report.html`` in the run
directory when the run was found on this machine; else (a run downloaded from the store)
``./report-<run_id>.html`` in the current directory.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from scalable.errors import ReportError
from scalable.report.data import ArtifactRow, CacheStats, RunReport, TaskRow, load_run_report
from scalable.report.html import render_html


def build_run_report(run_dir: str | os.PathLike[str]) -> str:
    """The HTML report of the run whose telemetry is in ``run_dir``, as a string.

    Raises :class:`~scalable.errors.RunNotFoundError` if ``run_dir`` is not a run directory.
    """
    return render_html(load_run_report(Path(run_dir)))


def write_report(report: RunReport, out_path: str | os.PathLike[str]) -> Path:
    """Render ``report`` and write it to ``out_path`` (whole or not at all); return its absolute path.

    Raises :class:`~scalable.errors.ReportError` if the file cannot be written there.
    """
    out = Path(out_path).expanduser().absolute()
    html = render_html(report, out)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(html, encoding="utf-8")
        os.replace(tmp, out)
    except OSError as exc:
        raise ReportError(
            f"cannot write the report of run {report.run_id} to {out}: {exc.strerror or exc}; "
            "write it elsewhere (scalable report RUN -o FILE)"
        ) from None
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
    return out


def write_run_report(run_dir: str | os.PathLike[str], out_path: str | os.PathLike[str]) -> Path:
    """Write the HTML report of the run in ``run_dir`` to ``out_path``; return the file's absolute path.

    Raises :class:`~scalable.errors.RunNotFoundError` if ``run_dir`` is not a run directory,
    :class:`~scalable.errors.ReportError` if the file cannot be written there.
    """
    return write_report(load_run_report(Path(run_dir)), out_path)


__all__ = [
    "ArtifactRow",
    "CacheStats",
    "RunReport",
    "TaskRow",
    "build_run_report",
    "load_run_report",
    "render_html",
    "write_report",
    "write_run_report",
]
