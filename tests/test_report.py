"""Run reports: built from a real run's telemetry, opened in headless Chromium, checked as rendered.

The DOM assertions are on what Chromium parsed, so a string that broke out of its element
(a task named ``<script>``), a missing bar or a lost row shows up as a difference in the
elements a user would see.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest

from scalable import build_artifact_store, cacheable
from scalable.errors import RunNotFoundError
from scalable.report import build_run_report, load_run_report, write_run_report
from scalable.report.html import BAR_X0, WIDTH, human_bytes
from scalable.session import ScalableSession, current_session
from scalable.session.locate import locate_run
from scalable.telemetry import (
    ArtifactRecorded,
    RunFinished,
    RunStarted,
    TaskFailed,
    TaskFinished,
    TaskStarted,
    TaskSubmitted,
    encode_event,
    read_events,
)

REQUIRED_ENV = "SCALABLE_TEST_SERVERS_REQUIRED"
EVIL_TASK = "<script>alert('task')</script>"
EVIL_ERROR = "bad input <img src=x onerror=alert(1)> & more"
EVIL_NAME = "<script>alert('name')</script>.txt"

MANIFEST = """\
version: 1
project:
  name: report-tests
  default_storage: ./artifacts
targets:
  inproc:
    provider: dask
    address: ${TEST_SCHEDULER}
"""

_CLEARED = (
    "SCALABLE_MANIFEST",
    "SCALABLE_TARGET",
    "SCALABLE_DEFAULT_STORAGE",
    "SCALABLE_RUNS_DIR",
    "SCALABLE_CACHE_DIR",
    "SCALABLE_CACHE_REMOTE",
)


# ---------------------------------------------------------------------------- chromium


def chromium_binary() -> str:
    """Debian's chromium; a skip when it is missing, a failure when test servers are required (CI)."""
    found = shutil.which("chromium") or ("/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)
    if found is None:
        reason = "chromium is not installed (apt-get install chromium, or run scripts/install-test-servers.sh as root)"
        if os.environ.get(REQUIRED_ENV, "") not in ("", "0"):
            pytest.fail(f"{reason}; {REQUIRED_ENV} is set, so this is a failure")
        pytest.skip(reason)
    return found


def dump_dom(html_path: Path, workdir: Path, timeout: float = 90.0) -> str:
    """The DOM headless Chromium builds from ``html_path``, serialized; Chromium is killed by pid on timeout."""
    profile = workdir / f"chromium-profile-{html_path.stem}"
    log = workdir / f"chromium-{html_path.stem}.log"
    command = [
        chromium_binary(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",  # console messages (a CSP violation, a script error) land in the log
        "--v=0",
        "--dump-dom",
        html_path.resolve().as_uri(),
    ]
    with open(log, "wb") as stderr:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own process group: chromium and its helpers
            proc.communicate()
            pytest.fail(f"chromium did not finish within {timeout} s; log: {log}")
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # helpers that outlive the browser process
            except ProcessLookupError:
                pass
    tail = log.read_text(errors="replace")[-2000:]
    assert proc.returncode == 0, f"chromium exited {proc.returncode}: {tail}"
    dom = out.decode("utf-8")
    assert "<body" in dom, f"chromium printed no DOM: {tail}"
    return dom


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    parent: int | None
    text: str = ""
    classes: set[str] = field(default_factory=set)


class Dom(HTMLParser):
    """Every element of a serialized DOM, with its attributes, parent and text content."""

    VOID = {"meta", "link", "br", "img", "hr", "input", "source", "wbr", "col", "area", "base", "embed"}

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self._stack: list[int] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        parent = self._stack[-1] if self._stack else None
        self.elements.append(Element(tag, values, parent, classes=set(values.get("class", "").split())))
        if tag not in self.VOID:
            self._stack.append(len(self.elements) - 1)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID:
            self._stack.pop()

    def handle_endtag(self, tag: str) -> None:
        while self._stack:
            if self.elements[self._stack.pop()].tag == tag:
                break

    def handle_data(self, data: str) -> None:
        for index in self._stack:
            self.elements[index].text += data

    def select(self, tag: str, cls: str | None = None) -> list[Element]:
        return [e for e in self.elements if e.tag == tag and (cls is None or cls in e.classes)]

    def by_id(self, element_id: str) -> Element:
        found = [e for e in self.elements if e.attrs.get("id") == element_id]
        assert len(found) == 1, f"expected one #{element_id}, found {len(found)}"
        return found[0]

    def children(self, element: Element) -> list[Element]:
        index = self.elements.index(element)
        return [e for e in self.elements if e.parent == index]


def render(run_dir: Path, tmp_path: Path, name: str = "report") -> tuple[Path, Dom]:
    out = write_run_report(run_dir, tmp_path / f"{name}.html")
    return out, Dom(dump_dom(out, tmp_path))


def test_missing_chromium_skips_or_fails_as_the_servers_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(os, "access", lambda path, mode: False)

    def outcome() -> BaseException:
        try:
            chromium_binary()
        except BaseException as exc:  # skip and fail are BaseExceptions: catch them to look at them
            return exc
        raise AssertionError("chromium_binary() returned without chromium")

    monkeypatch.delenv(REQUIRED_ENV, raising=False)
    skipped = outcome()
    assert type(skipped) is pytest.skip.Exception and "chromium is not installed" in str(skipped)
    monkeypatch.setenv(REQUIRED_ENV, "1")
    failed = outcome()
    assert type(failed) is pytest.fail.Exception and f"{REQUIRED_ENV} is set, so this is a failure" in str(failed)


# ---------------------------------------------------------------------------- a real run


@cacheable
def slow_square(x: int) -> int:
    """Cached, so four tasks calling it with the same argument compute once."""
    return x * x


def cached_task(x: int) -> int:
    return slow_square(x)


def failing_task(_: int) -> None:
    raise ValueError(EVIL_ERROR)


class EvilNamedTask:
    """A callable whose name (and so its task id) is HTML; it records an artifact with an HTML name."""

    __name__ = EVIL_TASK
    __qualname__ = "EvilNamedTask"

    def __call__(self, _: int) -> str:
        path = Path(f"evil-{os.getpid()}.txt")
        path.write_text("<b>not bold</b>\n")
        ref = current_session().record_artifact(path, name=EVIL_NAME, kind="log")
        path.unlink()
        return ref.key


@dataclass(frozen=True)
class RealRun:
    project: Path
    run_dir: Path
    run_id: str
    store_uri: str


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """An in-process LocalCluster (threads, no worker processes): a real Dask run at little cost.

    (A ``provider: local`` target with ``processes: false`` cannot start: the target forces
    ``host=127.0.0.1``, which the in-process transport refuses; so the run connects to this one.)
    """
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address="127.0.0.1:0")
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


@pytest.fixture
def project_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheduler: str) -> Path:
    monkeypatch.chdir(tmp_path)
    for var in _CLEARED:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TEST_SCHEDULER", scheduler)
    (tmp_path / "scalable.yaml").write_text(MANIFEST)
    return tmp_path


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory, scheduler: str) -> Iterator[RealRun]:
    """One run on an in-process LocalCluster: 1 cache miss, 3 hits, a failure, HTML in names, 2 artifacts."""
    project = tmp_path_factory.mktemp("report-project")
    (project / "scalable.yaml").write_text(MANIFEST)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(project)
        for var in _CLEARED:
            mp.delenv(var, raising=False)
        mp.setenv("TEST_SCHEDULER", scheduler)
        with ScalableSession.from_yaml(target="inproc") as session:
            assert session.gather(session.submit(cached_task, 7)) == 49  # the miss, before the hits
            assert session.gather(session.map(cached_task, [7, 7, 7])) == [49, 49, 49]
            with pytest.raises(ValueError, match="bad input"):
                session.gather(session.submit(failing_task, 0))
            session.gather(session.submit(EvilNamedTask(), 0))
            (project / "table.csv").write_text("a,b\n" + "1,2\n" * 500)
            session.record_artifact(project / "table.csv", kind="result")
            run_dir, run_id = session.run_dir, session.run_id
    yield RealRun(project, run_dir, run_id, str(project / "artifacts"))


def test_model_agrees_with_the_runs_summary(real_run: RealRun) -> None:
    report = load_run_report(real_run.run_dir)
    summary = json.loads((real_run.run_dir / "summary.json").read_text())
    assert report.run_id == real_run.run_id and report.status == "finished"
    assert len(report.tasks) == summary["tasks"]["submitted"] == 6
    assert report.counts["failed"] == summary["tasks"]["failed"] == 1
    assert report.counts["finished"] == summary["tasks"]["finished"] == 5
    assert (report.cache.hits, report.cache.misses) == (summary["cache"]["hits"], summary["cache"]["misses"]) == (3, 1)
    assert report.cache.hit_rate == summary["cache"]["hit_rate"] == 0.75
    assert [t.outcome for t in report.tasks] == ["computed", "hit", "hit", "hit", "failed", "computed"]
    failed = report.tasks[4]
    assert failed.error_type == "ValueError" and failed.error == EVIL_ERROR
    assert all(0 <= t.start_s <= t.end_s <= report.span_s for t in report.tasks)
    assert all(t.worker for t in report.tasks)
    assert len(report.artifacts) == summary["artifacts"] == 2
    assert sum(a.size_bytes for a in report.artifacts) == summary["bytes"]
    assert report.notes == []


def test_report_escapes_every_string_from_telemetry(real_run: RealRun) -> None:
    html = build_run_report(real_run.run_dir)
    lowered = html.lower()
    assert "<script" not in lowered and "<img" not in lowered  # nothing from telemetry became markup
    assert "&lt;script&gt;alert(" in html and "&lt;img src=x onerror=alert(1)&gt; &amp; more" in html
    # Self-contained: no external resource, and a policy that forbids scripts and requests.
    assert "default-src 'none'" in html
    tags = re.findall(r"<[a-z][^>]*>", lowered)  # every real tag: text has no raw "<"
    # The one kind of link: to the run's own telemetry files, which a click opens (nothing is loaded).
    links = [t for t in tags if t.startswith('<a class="telemetry" href="')]
    run_dir_uri = real_run.run_dir.resolve().as_uri().lower()
    assert links and all(
        re.fullmatch(rf'<a class="telemetry" href="{re.escape(run_dir_uri)}/[a-z.]+">', t) for t in links
    )
    others = [t for t in tags if t not in links]
    assert tags and not [t for t in others if re.search(r"\s(src|href|srcset|action|data)=", t)]
    assert "url(" not in lowered and "@import" not in lowered


def test_chromium_renders_timeline_hit_rate_and_artifacts(real_run: RealRun, tmp_path: Path) -> None:
    _, dom = render(real_run.run_dir, tmp_path)
    submitted = [e.task for e in read_events(real_run.run_dir / "tasks.jsonl").events if e.event == "task.submitted"]
    groups = dom.select("g", "task")
    assert [g.attrs["data-task"] for g in groups] == submitted  # one bar per task, in order
    for group in groups:
        bars = [e for e in dom.children(group) if e.tag == "rect" and "bar" in e.classes]
        labels = [e for e in dom.children(group) if e.tag == "text"]
        assert len(bars) == 1 and BAR_X0 <= float(bars[0].attrs["x"]) <= WIDTH and float(bars[0].attrs["width"]) > 0
        assert f"o-{group.attrs['data-outcome']}" in bars[0].classes
        task, label = group.attrs["data-task"], labels[0].text
        assert label == task or (label.endswith("…") and task.startswith(label[:-1]))  # labelled with the task id
        titles = [e for e in dom.children(group) if e.tag == "title"]
        assert titles[0].text.splitlines()[0] == task  # the whole id on hover
    outcomes = [g.attrs["data-outcome"] for g in groups]
    assert outcomes == ["computed", "hit", "hit", "hit", "failed", "computed"]
    evil = [g for g in groups if g.attrs["data-task"].startswith(EVIL_TASK)]
    assert len(evil) == 1 and dom.children(evil[0])[1].text.startswith(EVIL_TASK)  # shown as text, not run

    assert dom.by_id("hit-rate").text == "75.0%"
    meter = [e for e in dom.children(dom.by_id("hit-rate-bar")) if "fill" in e.classes]
    assert float(meter[0].attrs["width"]) == pytest.approx(75.0)
    assert "3 hit(s) and 1 miss(es)" in dom.by_id("cache").text

    recorded = [e for e in read_events(real_run.run_dir / "artifacts.jsonl").events]
    rows = dom.select("tr", "artifact")
    assert len(rows) == len(recorded) == 2
    table = [[c for c in dom.children(row) if c.tag == "td"] for row in rows]
    shown = sorted((cells[0].text, cells[1].text, cells[4].text, cells[3].attrs["title"]) for cells in table)
    expected = sorted((e.name, e.key, e.digest, f"{e.size_bytes} bytes") for e in recorded)
    assert shown == expected  # full digests, exact bytes in the title
    sizes = sorted(cells[3].text for cells in table)
    assert sizes == sorted(human_bytes(e.size_bytes) for e in recorded)

    assert not dom.select("script") and not dom.select("img")  # the HTML in names stayed text
    failed_rows = dom.select("tr", None)
    assert any(EVIL_ERROR in row.text and "ValueError" in row.text for row in failed_rows)
    assert real_run.run_id in dom.by_id("run-id").text and dom.by_id("run-status").text == "finished"


# ---------------------------------------------------------------------------- edge sizes


def test_run_without_tasks_renders_empty_sections(project_env: Path, tmp_path: Path) -> None:
    with ScalableSession.from_yaml(target="inproc") as session:  # no task: the client never starts
        run_dir = session.run_dir
    _, dom = render(run_dir, tmp_path)
    assert not dom.select("g", "task")
    assert dom.by_id("no-tasks").text == "No tasks ran in this run."
    assert dom.by_id("no-artifacts").text == "This run recorded no artifacts."
    assert dom.by_id("hit-rate").text == "n/a" and dom.by_id("task-count").text == "0"


def write_synthetic_run(run_dir: Path, n_tasks: int, *, with_run_json: bool = True) -> None:
    """A run's telemetry with ``n_tasks`` tasks over 2 workers (every 50th fails), written as a session would."""
    run_dir.mkdir(parents=True)
    t0 = datetime(2026, 11, 24, 1, 0, tzinfo=timezone.utc)
    run_id = run_dir.name
    lines = [RunStarted(run_id=run_id, timestamp=t0, target="local")]
    for i in range(n_tasks):
        task = f"simulate-{i + 1:05d}"
        start = t0 + timedelta(seconds=0.5 + i * 0.05)
        common = {"run_id": run_id, "task": task, "function": "simulate", "worker": f"tcp://127.0.0.1:{4000 + i % 2}"}
        lines.append(TaskSubmitted(run_id=run_id, task=task, function="simulate", timestamp=t0))
        lines.append(TaskStarted(**common, timestamp=start))
        end = start + timedelta(seconds=0.08)
        if i % 50 == 49:
            lines.append(TaskFailed(**common, timestamp=end, duration_s=0.08, error_type="RuntimeError", error="nan"))
        else:
            hit = i % 4 != 0
            lines.append(
                TaskFinished(
                    **common,
                    timestamp=end,
                    duration_s=0.08,
                    cache="hit" if hit else "miss",
                    cache_hits=int(hit),
                    cache_misses=int(not hit),
                )
            )
    ended = t0 + timedelta(seconds=1 + n_tasks * 0.05)
    lines.append(
        RunFinished(run_id=run_id, timestamp=ended, status="finished", duration_s=(ended - t0).total_seconds())
    )
    (run_dir / "tasks.jsonl").write_bytes(b"".join(encode_event(e) for e in lines))
    artifacts = [
        ArtifactRecorded(
            run_id=run_id,
            name=f"out-{i}.nc",
            uri=f"file:///store/runs/{run_id}/out-{i}.nc",
            key=f"runs/{run_id}/out-{i}.nc",
            artifact_kind="file",
            digest="sha256:" + f"{i:064x}",
            size_bytes=10**i,
        )
        for i in range(3)
    ]
    (run_dir / "artifacts.jsonl").write_bytes(b"".join(encode_event(e) for e in artifacts))
    (run_dir / "cache.jsonl").write_bytes(b"")
    if with_run_json:
        doc = {"run_id": run_id, "status": "finished", "started_at": t0.isoformat(), "ended_at": ended.isoformat()}
        (run_dir / "run.json").write_text(json.dumps(doc))


def test_two_thousand_tasks_stay_small_and_render(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "20261124T010000Z-big000"
    write_synthetic_run(run_dir, 2000)
    out, dom = render(run_dir, tmp_path, "big")
    size = out.stat().st_size
    assert size < 1_500_000, f"{size} bytes for 2,000 tasks"
    groups = dom.select("g", "task")
    assert len(groups) == 2000 and groups[-1].attrs["data-task"] == "simulate-02000"
    assert sum(g.attrs["data-outcome"] == "failed" for g in groups) == 40
    assert len(dom.select("rect", "bar")) == 2000
    xs = [float(r.attrs["x"]) for r in dom.select("rect", "bar")]
    assert xs == sorted(xs) and xs[0] >= BAR_X0 and max(xs) <= WIDTH  # later tasks further right
    ticks = [[c.text for c in dom.children(t) if c.tag == "text"] for t in dom.select("g", "tick")]
    assert ticks[0] == ["0", "0"] and ticks[-1][0] == ticks[-1][1]  # the time axis, repeated at the foot
    finished = [i for i in range(2000) if i % 50 != 49]
    hits = sum(1 for i in finished if i % 4 != 0)
    assert dom.by_id("hit-rate").text == f"{hits / len(finished) * 100:.1f}%"


def test_damaged_telemetry_still_gives_a_report_that_says_so(tmp_path: Path) -> None:
    run_dir = tmp_path / "20261124T010000Z-torn00"
    write_synthetic_run(run_dir, 3, with_run_json=False)  # crashed: no run.json
    with open(run_dir / "tasks.jsonl", "ab") as stream:
        stream.write(b'{"event": "task.fini')  # a writer killed mid-line
    report = load_run_report(run_dir)
    assert report.run_id == run_dir.name and report.status == "finished"  # from run.finished
    assert report.notes == ["tasks.jsonl: skipped 1 unreadable line(s) (line 12)"]
    html = build_run_report(run_dir)
    assert "skipped 1 unreadable line(s)" in html


def test_a_task_that_never_finished_is_shown_as_such(tmp_path: Path) -> None:
    run_dir = tmp_path / "20261124T010000Z-cancel"
    write_synthetic_run(run_dir, 2)
    t = datetime(2026, 11, 24, 1, 0, 0, 500000, tzinfo=timezone.utc)
    with open(run_dir / "tasks.jsonl", "ab") as stream:
        stream.write(encode_event(TaskSubmitted(run_id=run_dir.name, task="cancelled-1", timestamp=t)))
    report = load_run_report(run_dir)
    assert report.tasks[-1].outcome == "unfinished" and report.counts["unfinished"] == 1
    assert report.tasks[-1].start_s == 0.5 and report.tasks[-1].end_s == report.duration_s == 1.1  # until the end
    assert "never finished (cancelled, or its worker died)" in build_run_report(run_dir)


# ---------------------------------------------------------------------------- finding runs


def make_run_dirs(runs: Path, *names: str) -> None:
    for name in names:
        (runs / name).mkdir(parents=True)
        (runs / name / "run.json").write_text(json.dumps({"run_id": name, "status": "finished"}))


def test_locate_by_path_id_and_unique_prefix(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    make_run_dirs(runs, "20261124T010000Z-aaaaaa", "20261124T020000Z-bbbbbb")
    want = (runs / "20261124T010000Z-aaaaaa").resolve()
    assert locate_run(str(runs / "20261124T010000Z-aaaaaa"), runs_dir=runs) == want
    assert locate_run("20261124T010000Z-aaaaaa", runs_dir=runs) == want
    assert locate_run("20261124T01", runs_dir=runs) == want


def test_ambiguous_prefix_lists_the_candidates(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    make_run_dirs(runs, "20261124T010000Z-aaaaaa", "20261124T010500Z-cccccc", "20261124T020000Z-bbbbbb")
    with pytest.raises(RunNotFoundError) as info:
        locate_run("20261124T01", runs_dir=runs)
    message = str(info.value)
    assert "ambiguous" in message and "20261124T010000Z-aaaaaa" in message and "20261124T010500Z-cccccc" in message
    assert "20261124T020000Z-bbbbbb" not in message and "\n" not in message


def test_unknown_run_says_where_it_looked(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    make_run_dirs(runs, "20261124T010000Z-aaaaaa")
    store = tmp_path / "store"
    with pytest.raises(RunNotFoundError) as info:
        locate_run("nosuchrun", runs_dir=runs, store=str(store))
    message = str(info.value)
    assert str(runs) in message and str(store) in message and "runs/nosuchrun*/telemetry/" in message
    assert "\n" not in message
    with pytest.raises(RunNotFoundError, match="is not a run directory"):
        load_run_report(tmp_path)


def test_run_only_in_the_store_is_downloaded_and_reported(
    real_run: RealRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    empty_runs = tmp_path / "no-runs-here"
    found = locate_run(real_run.run_id[:-2], runs_dir=empty_runs, store=real_run.store_uri)
    assert found == tmp_path / "xdg" / "scalable" / "runs" / real_run.run_id
    for name in ("run.json", "summary.json", "tasks.jsonl", "artifacts.jsonl", "cache.jsonl"):
        assert (found / name).read_bytes() == (real_run.run_dir / name).read_bytes()
    store = build_artifact_store(real_run.store_uri)
    assert store.exists(f"runs/{real_run.run_id}/telemetry/tasks.jsonl")
    assert load_run_report(found).cache.hit_rate == 0.75
