"""Local puts of one large file by mode, side by side with one hash pass (the floor).

    python bench/bench_put_modes.py [--size-mib 1024] [--repeat 5] [--dir /path]

Each round runs every contender once, interleaved, page cache warm (the source is read
before timing), each step started right after writing and freeing a scratch file of the
same size (as bench_local.py: this VM is slow to hand out memory idle for ~2 s, so every
contender starts in the same state). Medians and best rounds; ratios to the hash pass.

Contenders: ``mode="move"`` and ``"hardlink"`` on the store's disk (the file is linked back
and the store emptied between rounds), ``"copy"`` (O_DIRECT writes, the default for large
files) and ``"copy"`` through the page cache (``direct_io_min_bytes=None``, the previous
path), and ``"reflink"`` with its own hash pass on a loop-mounted XFS image when this runs
as root with ``mkfs.xfs`` (else that row says why it is missing).

Targets (issue 16): move and reflink <= 1.05x one hash pass; copy median <= 1.10x.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_local import hash_pass, make_file, prime

from scalable import LocalArtifactStore, build_artifact_store
from scalable.artifacts.digests import DigestCache


@contextmanager
def xfs_mount(size: int) -> Iterator[tuple[Path | None, str]]:
    """A loop-mounted XFS (reflink=1) big enough for a file of ``size`` and one clone; or ``(None, why not)``."""
    if os.geteuid() != 0 or shutil.which("mkfs.xfs") is None:
        yield None, "needs root and mkfs.xfs (xfsprogs) to loop-mount an XFS image"
        return
    base = Path(tempfile.mkdtemp(prefix="bench-xfs-"))
    image, mnt = base / "xfs.img", base / "mnt"
    mnt.mkdir()
    with open(image, "wb") as f:
        f.truncate(max(3 * size + (512 << 20), 1 << 30))
    mounted = False
    try:
        made = subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(image)], capture_output=True, text=True)
        if made.returncode == 0:
            run = subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], capture_output=True, text=True)
            mounted = run.returncode == 0
            why = run.stderr.strip()
        else:
            why = made.stderr.strip()
        yield (mnt, "") if mounted else (None, f"cannot make the XFS image: {why[:120]}")
    finally:
        if mounted:
            subprocess.run(["umount", str(mnt)], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def fresh(store: LocalArtifactStore) -> LocalArtifactStore:
    store.digests = DigestCache()  # a first put hashes: no remembered digest
    return store


def empty(store: LocalArtifactStore, key: str) -> None:
    store.delete(key)
    store.gc(grace=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None, help="a folder on the filesystem to measure")
    args = parser.parse_args()
    size = args.size_mib * 1024 * 1024
    work = Path(tempfile.mkdtemp(prefix="bench-put-modes-", dir=args.dir))
    try:
        with xfs_mount(size) as (xfs, no_xfs):
            src = work / "big.bin"
            make_file(src, size)
            os.sync()  # every contender reads a clean, cached file (a link's fsync then has nothing to flush)
            hash_pass(src)  # warm the page cache
            store = build_artifact_store(work / "store")
            assert isinstance(store, LocalArtifactStore)
            buffered = build_artifact_store(work / "store-buffered")
            assert isinstance(buffered, LocalArtifactStore)
            buffered.direct_io_min_bytes = None
            xsrc = xstore = None
            if xfs is not None:
                xsrc = xfs / "big.bin"
                shutil.copyfile(src, xsrc)
                os.sync()
                hash_pass(xsrc)
                xstore = build_artifact_store(xfs / "store")
                assert isinstance(xstore, LocalArtifactStore)

            def linked_back(mode: str) -> Callable[[], object]:
                def run() -> object:
                    return fresh(store).put(src, f"{mode}.bin", mode=mode)  # type: ignore[arg-type]

                return run

            def after_link(mode: str) -> None:
                obj = store.root / store._read_record(f"{mode}.bin").object  # type: ignore[union-attr]
                if not src.exists():  # moved: give the file back its name for the next round
                    os.link(obj, src)
                os.chmod(src, 0o644)
                empty(store, f"{mode}.bin")

            contenders: dict[str, tuple[Callable[[], object], Callable[[], None]]] = {
                "hash": (lambda: hash_pass(src), lambda: None),
                "copy": (lambda: fresh(store).put(src, "copy.bin", mode="copy"), lambda: empty(store, "copy.bin")),
                "copy-buffered": (
                    lambda: fresh(buffered).put(src, "copy.bin", mode="copy"),
                    lambda: empty(buffered, "copy.bin"),
                ),
                "move": (linked_back("move"), lambda: after_link("move")),
                "hardlink": (linked_back("hardlink"), lambda: after_link("hardlink")),
            }
            if xstore is not None and xsrc is not None:
                contenders["xfs hash"] = (lambda: hash_pass(xsrc), lambda: None)
                contenders["reflink"] = (
                    lambda: fresh(xstore).put(xsrc, "r.bin", mode="reflink"),
                    lambda: empty(xstore, "r.bin"),
                )
            times: dict[str, list[float]] = {k: [] for k in contenders}
            for _ in range(args.repeat):
                for name, (run, cleanup) in contenders.items():
                    prime(work, size)
                    start = time.perf_counter()
                    run()
                    times[name].append(time.perf_counter() - start)
                    cleanup()
            load = os.getloadavg()
            med = {k: statistics.median(v) for k, v in times.items()}
            best = {k: min(v) for k, v in times.items()}
            print(
                f"# bench_put_modes: {size / 2**20:.0f} MiB file, {args.repeat} interleaved rounds, page cache warm, "
                f"each step primed; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs"
            )
            print(f"{'contender':<34}{'median s':>10}{'best s':>9}{'vs hash':>9}{'best vs':>9}   target")
            rows = [
                ("hash pass (hashlib), ext4", "hash", "hash", "1.00x (floor)"),
                ("put mode=copy (O_DIRECT writes)", "copy", "hash", "<= 1.10x"),
                ("put mode=copy, page cache (before)", "copy-buffered", "hash", ""),
                ("put mode=move", "move", "hash", "<= 1.05x"),
                ("put mode=hardlink", "hardlink", "hash", ""),
                ("hash pass (hashlib), XFS image", "xfs hash", "xfs hash", "1.00x (floor)"),
                ("put mode=reflink, XFS image", "reflink", "xfs hash", "<= 1.05x"),
            ]
            for label, k, floor, target in rows:
                if k not in med:
                    print(f"{label:<34}{'-':>10}{'-':>9}{'-':>9}{'-':>9}   not run: {no_xfs}")
                    continue
                print(
                    f"{label:<34}{med[k]:>10.3f}{best[k]:>9.3f}{med[k] / med[floor]:>8.2f}x"
                    f"{best[k] / best[floor]:>8.2f}x   {target}"
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
