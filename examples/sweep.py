"""A parameter sweep as a scalable session: cached tasks on Dask, every result recorded.

Run it twice (``make demo`` does): the first run computes each member and stores the
results; the second finds every member in the cache and only records the artifacts.
Each run leaves ``.scalable/runs/<run_id>/`` with run.json, summary.json and the
artifacts.jsonl, tasks.jsonl and cache.jsonl trails.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from scalable import ScalableSession, cacheable, current_session


@cacheable(version="1")
def simulate(growth: float, steps: int = 400) -> dict[str, float]:
    """A toy logistic-growth model, slow on purpose so that cache hits show."""
    time.sleep(0.3)
    population = 0.01
    for _ in range(steps):
        population += growth * population * (1 - population)
    return {"growth": growth, "final": population, "oscillates": float(abs(math.sin(growth * steps)) > 0.5)}


def run_member(growth: float) -> dict[str, float]:
    """One task: the (cached) model run, then its result recorded as an artifact of the run."""
    result = simulate(growth)
    out = Path(tempfile.mkdtemp()) / f"growth-{growth:.2f}.json"
    out.write_text(json.dumps(result, indent=2))
    current_session().record_artifact(out, name=f"sweep/{out.name}", metadata={"growth": growth})
    return result


def main() -> None:
    console = Console(width=None if sys.stdout.isatty() else 120)
    rates = [round(0.5 + 0.25 * i, 2) for i in range(12)]
    began = time.perf_counter()
    with ScalableSession.from_yaml() as session:
        results = session.gather(session.map(run_member, rates))
        run_id, run_dir, store_uri = session.run_id, session.run_dir, session.store.uri
    elapsed = time.perf_counter() - began
    summary = json.loads((run_dir / "summary.json").read_text())
    table = Table(title=f"run {run_id}: {len(results)} members in {elapsed:.1f}s")
    for column in ("tasks", "failed", "artifacts", "cache hits", "cache misses", "hit rate"):
        table.add_column(column, justify="right")
    cache = summary["cache"]
    table.add_row(
        str(summary["tasks"]["finished"]),
        str(summary["tasks"]["failed"]),
        str(summary["artifacts"]),
        str(cache["hits"]),
        str(cache["misses"]),
        f"{cache['hit_rate']:.0%}" if cache["hit_rate"] is not None else "-",
    )
    console.print(table)
    console.print(f"trail: {run_dir}/artifacts.jsonl, tasks.jsonl, cache.jsonl; artifacts in {store_uri}")


if __name__ == "__main__":
    main()
