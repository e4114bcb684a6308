"""The run report's lineage graph and the report gaps issue 17 lists, checked as headless Chromium renders them."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from scalable import build_artifact_store
from scalable.report import write_run_report
from scalable.report.html import MIN_BAR_W
from scalable.session import ScalableSession, Target, current_session
from scalable.telemetry import (
    ArtifactRecorded,
    ArtifactUsed,
    RunFinished,
    RunStarted,
    TaskFinished,
    TaskStarted,
    TaskSubmitted,
    encode_event,
)

from .test_report import Dom, dump_dom

THREADS = Target("local", "local", {"n_workers": 1, "threads_per_worker": 2, "processes": False})


def open_in_chromium(run_dir: Path, tmp_path: Path, name: str) -> tuple[Path, Dom, str]:
    """The report written into the run directory, its DOM as Chromium built it, and Chromium's console log."""
    out = write_run_report(run_dir, run_dir / "report.html")
    dom = Dom(dump_dom(out, tmp_path))
    log = (tmp_path / f"chromium-{out.stem}.log").read_text(errors="replace")
    return out, dom, log


def console_messages(log: str) -> list[str]:
    """Console lines (script errors, Content-Security-Policy violations) in a Chromium log."""
    return [line for line in log.splitlines() if ":CONSOLE" in line]


def regrid(i: int) -> str:
    session = current_session()
    forcing = session.use_artifact(session.store, "inputs/forcing.txt")
    out = Path(f"member-{uuid.uuid4().hex[:6]}.txt")
    out.write_text(f"member {i} of " + forcing.read_text())
    key = f"results/member-{i}.txt"
    return session.record_artifact(out, key=key, name=f"member-{i}.txt", metadata={"member": i}).key


def combine(keys: list[str]) -> str:
    session = current_session()
    total = sum(len(session.store.get_bytes(k)) for k in keys)  # reads of outputs of this very run
    out = Path(f"total-{uuid.uuid4().hex[:6]}.txt")
    out.write_text(str(total))
    return session.record_artifact(out, key="results/a-total.txt", name="a-total.txt").key


def needs_missing(_: int) -> None:
    current_session().use_artifact(current_session().store, "inputs/never-uploaded.nc")


def test_the_report_draws_the_runs_inputs_tasks_and_outputs_and_the_new_user_gaps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = build_artifact_store(tmp_path / "artifacts")
    forcing = store.put_bytes(b"forcing\n", "inputs/forcing.txt")
    with ScalableSession(target=THREADS, store=store, runs_dir=tmp_path / "runs") as session:
        keys = session.gather(session.map(regrid, range(3)))
        session.gather(session.submit(combine, keys))
        with pytest.raises(FileNotFoundError):
            session.gather(session.submit(needs_missing, 0))
        run_dir = session.run_dir
    _, dom, log = open_in_chromium(run_dir, tmp_path, "lineage")
    assert console_messages(log) == []  # no script error, nothing the content-security policy refused

    nodes = {g.attrs["data-node"]: g for g in dom.select("g", "gnode")}
    kinds = {node: g.attrs["data-kind"] for node, g in nodes.items()}
    outputs = {ref.digest for ref in (store.info(k) for k in [*keys, "results/a-total.txt"])}
    assert kinds[f"a:{forcing.digest}"] == "input"
    assert {f"a:{d}" for d in outputs} == {n for n, k in kinds.items() if k == "output"}
    tasks = {n for n, k in kinds.items() if k == "task"}
    assert tasks == {"t:regrid-00001", "t:regrid-00002", "t:regrid-00003", "t:combine-00004", "t:needs_missing-00005"}
    (missing,) = [n for n, k in kinds.items() if k == "missing"]
    assert "inputs/never-uploaded.nc" in missing and "not found" in nodes[missing].text
    edges = {(p.attrs["data-src"], p.attrs["data-dst"]) for p in dom.select("path", "gedge")}
    member0 = store.info("results/member-0.txt").digest
    assert (f"a:{forcing.digest}", "t:regrid-00001") in edges and ("t:regrid-00001", f"a:{member0}") in edges
    assert (f"a:{member0}", "t:combine-00004") in edges  # an output read again, drawn back to its reader
    assert (missing, "t:needs_missing-00005") in edges
    assert all(src in nodes and dst in nodes for src, dst in edges)  # every edge joins two drawn boxes

    rows = dom.select("tr", "artifact")
    names = [next(c for c in dom.children(r) if c.tag == "td").text for r in rows]
    assert names == sorted(names) == ["a-total.txt", "member-0.txt", "member-1.txt", "member-2.txt"]
    member2 = [[c for c in dom.children(r) if c.tag == "td"] for r in rows][3]
    assert member2[5].text == "member: 2"  # metadata shown
    assert member2[6].text == f"{store.uri}#results/member-2.txt" and "storekey" in dom.children(member2[6])[0].classes
    assert [w.tag for w in dom.children(member2[1])] == ["wbr", "wbr", "wbr"]  # break after /, - and . only
    (details,) = dom.select("details", "traceback")
    assert "needs_missing" in details.text and "ArtifactNotFoundError" in details.text and "open" not in details.attrs
    links = {a.text: a.attrs["href"] for a in dom.select("a", "telemetry")}
    assert links["tasks.jsonl"] == "tasks.jsonl" and links["artifacts.jsonl"] == "artifacts.jsonl"


def synthetic_run(run_dir: Path, n_tasks: int) -> None:
    """``n_tasks`` cache-hit tasks of 2 ms each, all reading one forcing file, each writing a member."""
    run_dir.mkdir(parents=True)
    t0 = datetime(2026, 12, 1, tzinfo=timezone.utc)
    run_id = run_dir.name
    forcing = "sha256:" + "f" * 64
    tasks = [RunStarted(run_id=run_id, timestamp=t0)]
    artifacts = []
    for i in range(n_tasks):
        task = f"simulate-{i + 1:05d}"
        start = t0 + timedelta(seconds=2 + i * 0.01)  # the first task starts 2 s in: the cluster starting
        common = {"run_id": run_id, "task": task, "function": "model:simulate"}
        tasks += [
            TaskSubmitted(**common, timestamp=t0),
            TaskStarted(**common, timestamp=start),
            TaskFinished(**common, timestamp=start + timedelta(seconds=0.002), duration_s=0.002, cache="hit"),
        ]
        artifacts.append(
            ArtifactUsed(run_id=run_id, task=task, via="use_artifact", store="file:///s", key="in/forcing.nc",
                         digest=forcing, timestamp=start)
        )  # fmt: skip
        artifacts.append(
            ArtifactRecorded(run_id=run_id, task=task, name=f"m-{i}.nc", uri=f"file:///s/out/m-{i}.nc",
                             key=f"out/m-{i}.nc", digest="sha256:" + f"{i:064x}", size_bytes=1, timestamp=start)
        )  # fmt: skip
    end = t0 + timedelta(seconds=3 + n_tasks * 0.01)
    tasks.append(RunFinished(run_id=run_id, status="finished", timestamp=end))
    (run_dir / "tasks.jsonl").write_bytes(b"".join(encode_event(e) for e in tasks))
    (run_dir / "artifacts.jsonl").write_bytes(b"".join(encode_event(e) for e in artifacts))


def test_two_hundred_tasks_are_grouped_and_a_run_of_cache_hits_shows_its_bars(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "20261201T000000Z-group0"
    synthetic_run(run_dir, 200)
    out, dom, log = open_in_chromium(run_dir, tmp_path, "grouped")
    assert console_messages(log) == [] and out.stat().st_size < 400_000
    nodes = {g.attrs["data-node"]: g for g in dom.select("g", "gnode")}
    assert set(nodes) == {"a:sha256:" + "f" * 64, "g:model:simulate", "f2:out/"}
    assert nodes["g:model:simulate"].attrs["data-count"] == "200" and "(200 tasks)" in nodes["g:model:simulate"].text
    assert "out/ (200 artifacts)" in nodes["f2:out/"].text
    edges = {(p.attrs["data-src"], p.attrs["data-dst"]): p for p in dom.select("path", "gedge")}
    assert set(edges) == {("a:sha256:" + "f" * 64, "g:model:simulate"), ("g:model:simulate", "f2:out/")}
    assert all("200 link(s)" in e.text for e in edges.values())

    bars = dom.select("rect", "bar")
    assert len(bars) == 200 and min(float(b.attrs["width"]) for b in bars) >= MIN_BAR_W  # 2 ms hits still show
    startup = dom.by_id("startup")
    assert "cluster start-up, 2.00 s" in startup.text
    band = next(c for c in dom.children(startup) if c.tag == "rect")
    assert float(band.attrs["x"]) + float(band.attrs["width"]) <= min(float(b.attrs["x"]) for b in bars) + 0.01
