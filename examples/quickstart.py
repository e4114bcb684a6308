"""scalable in one screen: put, list, get, verify, save and load, on the default local store.

Run it with ``make demo`` (or ``python examples/quickstart.py``). It writes a small
results folder to a scratch directory, stores it in ``./artifacts``, and prints every
artifact's ref. Run it twice: the second put of unchanged files transfers no bytes.
"""

from __future__ import annotations

import csv
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from scalable import ArtifactRef, build_artifact_store


def make_results(folder: Path) -> tuple[Path, Path]:
    """A CSV file and a folder of per-member outputs, as a model run might leave them."""
    table = folder / "output.csv"
    with table.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["member", "temperature", "precipitation"])
        for member in range(5):
            writer.writerow([member, 14.2 + member * 0.1, 2.5 - member * 0.2])
    members = folder / "members"
    for member in range(3):
        (members / f"m{member:02d}").mkdir(parents=True)
        (members / f"m{member:02d}" / "state.txt").write_text(f"member {member} state\n")
    (members / "logs").mkdir()  # an empty folder is part of the tree, and of its digest
    return table, members


def show(refs: list[ArtifactRef], console: Console) -> None:
    table = Table(title="Artifacts in ./artifacts", show_lines=False)
    table.add_column("key", no_wrap=True)
    table.add_column("kind")
    table.add_column("size", justify="right")
    table.add_column("digest")
    table.add_column("uri", overflow="fold")
    for ref in refs:
        table.add_row(ref.key, ref.kind.value, f"{ref.size_bytes:,} B", ref.digest[:19] + "…", ref.uri)
    console.print(table)


def main() -> None:
    console = Console(width=None if sys.stdout.isatty() else 140)  # logs and pipes get a full-width table
    store = build_artifact_store("./artifacts")
    with tempfile.TemporaryDirectory() as scratch:
        csv_path, members = make_results(Path(scratch))

        # Put a file and a directory: each comes back as an ArtifactRef with its digest.
        ref = store.put(csv_path, "runs/run-001/output.csv", metadata={"model": "demo"})
        tree = store.put(members, "runs/run-001/members")
        console.print(f"put [bold]{ref.key}[/]: {ref.digest} ({ref.size_bytes} bytes)")
        console.print(f"put [bold]{tree.key}[/]: tree digest {tree.digest}")

        # Save and load a record: the format follows the extension.
        store.save("runs/run-001/summary.json", {"members": 5, "mean_temperature": 14.4})
        console.print("load summary.json ->", store.load("runs/run-001/summary.json"))

        # List, get back (verified against the digests), and verify in place.
        keys = store.list_artifacts("runs/run-001/")
        console.print("list ->", keys)
        restored = Path(scratch) / "restored"
        store.get("runs/run-001/output.csv", restored / "output.csv")
        store.get("runs/run-001/members", restored / "members")
        assert (restored / "output.csv").read_bytes() == csv_path.read_bytes()
        for key in keys:
            store.verify(key)
        console.print(f"got {len(keys)} artifacts back into {restored.name}/ and verified every byte")

        # One member of a directory, streamed and verified as it is read.
        with store.open("runs/run-001/members", member="m01/state.txt") as f:
            console.print("open member m01/state.txt ->", f.read().decode().strip())

        show(list(store.iter_refs("runs/run-001/")), console)


if __name__ == "__main__":
    main()
