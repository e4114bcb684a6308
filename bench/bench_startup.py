"""Start-up time of the command and the package, before and after issue 13, side by side.

Each row starts a fresh interpreter ``--rounds`` times and reports the median wall time:

  python -c pass       the interpreter alone (the floor every row pays)
  import scalable      ``python -c "import scalable"``
  scalable --help      ``python -m scalable --help``
  scalable ls STORE    ``python -m scalable ls <a local store with one artifact>``

"before" runs the same commands with ``PYTHONPATH`` at a copy of the commit this work
started from (``--baseline``, extracted with ``git archive``), "after" at this tree; the
rounds alternate between the two so both see the same machine load. Columns: both medians,
after/before, and after minus the bare interpreter.

    python bench/bench_startup.py [--rounds 15] [--baseline 39744a3]

Targets (issue 13): ``scalable --help`` and ``scalable ls`` on a local store <= 0.12 s,
``import scalable`` <= 0.08 s (on a machine where ``python -c pass`` takes 0.013 s).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"import scalable": 0.08, "scalable --help": 0.12, "scalable ls STORE": 0.12}


def _env(tree: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCALABLE_")}
    env.update({"PYTHONPATH": str(tree), "SCALABLE_DIGEST_CACHE": "off", "COLUMNS": "100"})
    return env


def _timed(args: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(args, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.decode()[-500:]}")
    return elapsed


def _extract(baseline: str, dest: Path) -> Path:
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", baseline, "scalable"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--baseline", default="39744a3", help="the commit to compare with (default: 39744a3)")
    opts = parser.parse_args()

    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        work = Path(tmp)
        before = _extract(opts.baseline, work / "before")
        (work / "a.txt").write_text("alpha\n")
        subprocess.run(
            [py, "-m", "scalable", "put", "a.txt", "./st#a.txt", "-q"],
            env=_env(ROOT),
            cwd=work,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        rows = {
            "python -c pass": [py, "-c", "pass"],
            "import scalable": [py, "-c", "import scalable"],
            "scalable --help": [py, "-m", "scalable", "--help"],
            "scalable ls STORE": [py, "-m", "scalable", "ls", "./st"],
        }
        times: dict[tuple[str, str], list[float]] = {}
        for args in rows.values():  # one warm-up each, so the page cache is equally warm
            for tree in (before, ROOT):
                _timed(args, _env(tree), work)
        for _ in range(opts.rounds):
            for name, args in rows.items():
                for label, tree in (("before", before), ("after", ROOT)):
                    times.setdefault((name, label), []).append(_timed(args, _env(tree), work))

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"# start-up, median of {opts.rounds} runs each, before = {opts.baseline}, after = this tree")
    print(
        f"# {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    floor = statistics.median(times[("python -c pass", "after")])
    print(f"{'command':<20} {'before s':>9} {'after s':>9} {'after/before':>13} {'after-python s':>15} {'target s':>9}")
    for name in rows:
        b = statistics.median(times[(name, "before")])
        a = statistics.median(times[(name, "after")])
        target = f"{TARGETS[name]:.2f}" if name in TARGETS else "-"
        print(f"{name:<20} {b:>9.3f} {a:>9.3f} {a / b:>13.2f} {a - floor:>15.3f} {target:>9}")


if __name__ == "__main__":
    main()
