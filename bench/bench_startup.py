"""Start-up time of the command and the package: a baseline commit and this tree, side by side.

Each row starts a fresh interpreter ``--rounds`` times and reports the median wall time:

  python -c pass       the interpreter alone (the floor every row pays)
  import scalable      ``python -c "import scalable"``
  scalable --help      ``python -m scalable --help``
  scalable ls STORE    ``python -m scalable ls <a local store with two artifacts>``

"before" runs the same commands with ``PYTHONPATH`` at a copy of ``--baseline`` (extracted
with ``git archive``), "after" at this tree; the rounds alternate between the two so both
see the same machine load. Both write and read their bytecode in one scratch
``PYTHONPYCACHEPREFIX`` (``PYTHONDONTWRITEBYTECODE`` is dropped: a user's installed
package has its bytecode), and the first round is a warm-up that is not counted, so no
row pays for compiling. Columns: both medians, after/before, the target and after/target
(at most 1.00 meets it).

    python bench/bench_startup.py [--rounds 15] [--baseline 5b15af6]

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
#: The commit before the lazy command group (issue 13 item 10, second part).
DEFAULT_BASELINE = "5b15af6"


def _env(tree: Path, pycache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCALABLE_") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(
        {
            "PYTHONPATH": str(tree),
            "PYTHONPYCACHEPREFIX": str(pycache),
            "SCALABLE_DIGEST_CACHE": "off",
            "COLUMNS": "100",
        }
    )
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
    parser.add_argument("--rounds", type=int, default=15, help="counted rounds (after one warm-up round)")
    parser.add_argument(
        "--baseline", default=DEFAULT_BASELINE, help=f"the commit to compare with (default: {DEFAULT_BASELINE})"
    )
    opts = parser.parse_args()

    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        work = Path(tmp)
        pycache = work / "pycache"
        trees = {"before": _extract(opts.baseline, work / "before"), "after": ROOT}
        (work / "a.txt").write_text("alpha\n")
        for key in ("a.txt", "runs/b.txt"):
            subprocess.run(
                [py, "-m", "scalable", "put", "a.txt", f"./st#{key}", "-q"],
                env=_env(ROOT, pycache),
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
        for round_number in range(opts.rounds + 1):
            for name, args in rows.items():
                for label, tree in trees.items():
                    elapsed = _timed(args, _env(tree, pycache), work)
                    if round_number:  # round 0 writes the bytecode and warms the page cache
                        times.setdefault((name, label), []).append(elapsed)

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(
        f"# start-up, median of {opts.rounds} runs each (after a warm-up round), "
        f"before = {opts.baseline}, after = this tree"
    )
    print(
        f"# {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(f"{'command':<20} {'before s':>9} {'after s':>9} {'after/before':>13} {'target s':>9} {'after/target':>13}")
    for name in rows:
        b = statistics.median(times[(name, "before")])
        a = statistics.median(times[(name, "after")])
        target = TARGETS.get(name)
        target_text = f"{target:.2f}" if target else "-"
        ratio = f"{a / target:.2f} {'met' if a <= target else 'missed'}" if target else "-"
        print(f"{name:<20} {b:>9.3f} {a:>9.3f} {a / b:>13.2f} {target_text:>9} {ratio:>13}")


if __name__ == "__main__":
    main()
