"""A :class:`~scalable.report.data.RunReport` rendered as one self-contained HTML file.

The page needs nothing but itself: CSS is inline, the timeline and the hit-rate bar are
inline SVG laid out here in Python, and there is no JavaScript at all. A
Content-Security-Policy in the page forbids scripts and every network request, so the
report opens the same offline, from a mail attachment or from a bucket. Every string
from telemetry (task names, keys, error messages are user data) goes through Jinja2's
autoescaping.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import jinja2
from markupsafe import Markup, escape
from rich.filesize import decimal

from scalable._version import __version__
from scalable.report.data import OUTCOMES, RunReport, TaskRow
from scalable.report.graph import NODE_H, NODE_W, GraphOutput, RunGraph, build_graph

#: Timeline geometry, in SVG user units (pixels at 100 % zoom).
WIDTH = 1000
LABEL_W = 230
BAR_X0 = 240
BAR_W = WIDTH - BAR_X0 - 32
AXIS_H = 26
ROW_H = 16
BAR_H = 11
#: A timeline with more rows than this repeats the time axis at its foot.
BOTTOM_AXIS_ROWS = 40
#: Task labels longer than this are cut (the full id is in the bar's tooltip).
LABEL_CHARS = 34
#: The narrowest bar, so that a task of a few milliseconds (a cache hit) is still seen.
MIN_BAR_W = 4.0
#: A start-up gap before the first task narrower than this is not labelled.
STARTUP_MIN_W = 40.0

OUTCOME_LABELS = {
    "hit": "finished, cache hit",
    "computed": "finished, computed",
    "failed": "failed",
    "unfinished": "never finished",
}


@dataclass(frozen=True)
class Bar:
    """One task's row in the timeline."""

    task: str
    label: str
    outcome: str
    y: float
    x: float
    width: float
    tooltip: str


@dataclass(frozen=True)
class Tick:
    """A vertical grid line on the time axis, with its label."""

    x: float
    label: str


def human_seconds(seconds: float | None) -> str:
    """``0.42 s``, ``12.3 s``, ``4 min 05 s``, ``2 h 03 min``; ``—`` for unknown."""
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def human_bytes(size: int) -> str:
    """A size for people (decimal units, as rich prints them): ``1.2 kB``."""
    return str(decimal(size))


def _tick_step(span: float) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving at most about eight ticks."""
    raw = span / 8 if span > 0 else 1.0
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _tooltip(row: TaskRow) -> str:
    lines = [row.task]
    if row.function:
        lines.append(f"function: {row.function}")
    if row.worker:
        lines.append(f"worker: {row.worker}")
    lines.append(f"start +{human_seconds(row.start_s)}, ran {human_seconds(row.duration_s)}")
    lines.append(f"outcome: {OUTCOME_LABELS[row.outcome]}")
    if row.cache_hits or row.cache_misses:
        lines.append(f"cache: {row.cache_hits} hit(s), {row.cache_misses} miss(es)")
    if row.error_type:
        lines.append(f"error: {row.error_type}: {row.error or ''}")
    return "\n".join(lines)


def timeline(report: RunReport) -> tuple[list[Bar], list[Tick], float]:
    """The bars, the axis ticks and the height of the timeline SVG."""
    span = report.span_s or 1.0
    scale = BAR_W / span
    bars = []
    for i, row in enumerate(report.tasks):
        label = row.task if len(row.task) <= LABEL_CHARS else row.task[: LABEL_CHARS - 1] + "…"
        bars.append(
            Bar(
                task=row.task,
                label=label,
                outcome=row.outcome,
                y=AXIS_H + i * ROW_H,
                x=round(BAR_X0 + row.start_s * scale, 2),
                width=round(max(MIN_BAR_W, (row.end_s - row.start_s) * scale), 2),
                tooltip=_tooltip(row),
            )
        )
    step = _tick_step(span)
    ticks = [
        Tick(x=round(BAR_X0 + n * step * scale, 2), label=_tick_label(n * step)) for n in range(int(span / step) + 1)
    ]
    height = rows_end(len(bars))
    return bars, ticks, height + (AXIS_H if len(bars) > BOTTOM_AXIS_ROWS else 0)


@dataclass(frozen=True)
class Startup:
    """The time before the first task started (the cluster starting), as a band on the timeline."""

    x: float
    width: float
    label: str


def startup_band(report: RunReport) -> Startup | None:
    """The start-up band, when the first task started noticeably after the run did."""
    if not report.tasks:
        return None
    first = min(t.start_s for t in report.tasks)
    width = first * BAR_W / (report.span_s or 1.0)
    if width < STARTUP_MIN_W:
        return None
    return Startup(x=BAR_X0, width=round(width, 2), label=f"cluster start-up, {human_seconds(first)}")


_BREAK_AFTER = re.compile(r"([/_.\-])")


def breakable(text: object) -> Markup:
    """``text`` escaped, with a line-break opportunity after each ``/``, ``_``, ``.`` and ``-`` (not mid-word)."""
    return Markup(_BREAK_AFTER.sub(r"\1<wbr>", str(escape(str(text)))))


def telemetry_links(report: RunReport, out_path: str | os.PathLike[str] | None) -> list[tuple[str, str]]:
    """``(name, href)`` of the run's telemetry files: relative beside a report in the run directory, else file URIs."""
    run_dir = Path(report.run_dir).absolute()
    here = out_path is not None and Path(out_path).absolute().parent == run_dir
    return [(name, name if here else (run_dir / name).as_uri()) for name in report.files]


def run_graph(report: RunReport) -> RunGraph:
    """The lineage graph of the run: its inputs, tasks and outputs."""
    functions = {t.task: t.function for t in report.tasks}
    outputs = [GraphOutput(task=a.task, digest=a.digest, key=a.key, name=a.name) for a in report.artifacts]
    return build_graph(report.inputs, outputs, functions)


def rows_end(n_rows: int) -> float:
    """Where the task rows of the timeline end (the foot axis goes below, when there is one)."""
    return AXIS_H + n_rows * ROW_H + 4


def _tick_label(seconds: float) -> str:
    """Axis labels: ``0``, ``0.05 s``, ``20 s``, ``1 min 40 s``."""
    if seconds == 0:
        return "0"
    if seconds < 60:
        return f"{round(seconds, 6):g} s"
    return human_seconds(seconds)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(
            lambda name: resources.files("scalable.report").joinpath(name).read_text(encoding="utf-8")
        ),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["bytes"] = human_bytes
    env.filters["seconds"] = human_seconds
    env.filters["breakable"] = breakable
    return env


def render_html(report: RunReport, out_path: str | os.PathLike[str] | None = None) -> str:
    """The report as one HTML document (a string), with no external resources.

    ``out_path`` (where the file will be written) makes the links to the run's telemetry
    files relative when the report sits in the run directory.
    """
    bars, ticks, height = timeline(report)
    rate = report.cache.hit_rate
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            report=report,
            bars=bars,
            ticks=ticks,
            height=height,
            width=WIDTH,
            geometry={
                "label_w": LABEL_W,
                "bar_x0": BAR_X0,
                "axis_h": AXIS_H,
                "bar_h": BAR_H,
                "rows_end": rows_end(len(bars)),
                "bottom_axis": len(bars) > BOTTOM_AXIS_ROWS,
            },
            outcomes=[(o, OUTCOME_LABELS[o], sum(1 for b in bars if b.outcome == o)) for o in OUTCOMES],
            hit_rate=rate,
            hit_rate_text="n/a" if rate is None else f"{rate * 100:.1f}%",
            failed=[t for t in report.tasks if t.outcome in ("failed", "unfinished")],
            startup=startup_band(report),
            graph=run_graph(report),
            node_w=NODE_W,
            node_h=NODE_H,
            links=telemetry_links(report, out_path),
            generated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            version=__version__,
        )
    )


__all__ = [
    "Bar",
    "Startup",
    "Tick",
    "breakable",
    "human_bytes",
    "human_seconds",
    "render_html",
    "run_graph",
    "startup_band",
    "telemetry_links",
    "timeline",
]
