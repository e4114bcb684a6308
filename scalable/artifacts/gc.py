"""Garbage collection: remove what no retained version or put in flight needs.

Mark: every head and version record of the store (and the tree manifests of unpacked
directories they name) gives the set of live objects; every pending-put marker younger
than the grace period adds the objects that put relies on. Sweep: objects, temporary
files and unfinished multipart uploads that are not live and older than the grace period
are removed; markers older than it (left by killed puts) too.

Order matters for concurrent puts: objects are listed first, then records, then markers,
and the markers are read again before each batch of deletions, so an object a put began
to rely on (its marker is written before it checks for the object) is kept. See
``docs/design.md`` for what this guarantees.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from scalable.artifacts.digests import parse_tree_manifest
from scalable.artifacts.layout import PENDING, REFS, SHA256_OBJECTS, TMP, VERSIONS, object_path, version_numbers
from scalable.errors import IntegrityError

if TYPE_CHECKING:
    from scalable.artifacts.store import BaseArtifactStore

#: The default grace period: nothing younger than this is removed.
DEFAULT_GRACE_SECONDS = 3600.0
#: Deletions between two re-reads of the pending-put markers.
BATCH = 256


@dataclass
class GcReport:
    """What a gc removed (or, with ``dry_run``, would remove), and the bytes reclaimed."""

    dry_run: bool
    objects: list[str] = field(default_factory=list)
    object_bytes: int = 0
    tmp_files: list[str] = field(default_factory=list)
    tmp_bytes: int = 0
    uploads: list[str] = field(default_factory=list)
    markers: list[str] = field(default_factory=list)
    live_objects: int = 0
    scanned_objects: int = 0
    seconds: float = 0.0

    @property
    def bytes_reclaimed(self) -> int:
        """Bytes of the objects and temporary files removed (parts of aborted uploads are not counted)."""
        return self.object_bytes + self.tmp_bytes

    def summary(self) -> str:
        """One line: what was (or would be) removed."""
        verb = "would remove" if self.dry_run else "removed"
        return (
            f"{verb} {len(self.objects)} objects ({self.object_bytes} bytes), {len(self.tmp_files)} temporary files "
            f"({self.tmp_bytes} bytes), {len(self.uploads)} unfinished uploads, {len(self.markers)} stale markers; "
            f"kept {self.live_objects} live objects of {self.scanned_objects}"
        )


def collect_garbage(
    store: BaseArtifactStore, *, grace: float = DEFAULT_GRACE_SECONDS, dry_run: bool = False
) -> GcReport:
    """Run one gc over ``store``; see the module docstring."""
    started = time.monotonic()
    if isinstance(grace, timedelta):
        grace = grace.total_seconds()
    now = datetime.now(timezone.utc)
    cutoff = now - timedelta(seconds=max(0.0, float(grace)))
    report = GcReport(dry_run=dry_run)

    listed = store._list_stats(SHA256_OBJECTS)  # listed first: anything newer is not a candidate
    report.scanned_objects = len(listed)
    live = _live_objects(store)
    seen_markers: set[str] = set()
    live |= _marked(store, cutoff, seen_markers, report, dry_run)
    prefix = SHA256_OBJECTS + "/"
    candidates: list[tuple[str, int]] = []
    n_live = 0
    for name, st in listed.items():
        rel = prefix + name
        if rel in live:
            n_live += 1
        elif st.mtime < cutoff:
            candidates.append((rel, st.size))
    del listed
    candidates.sort()
    report.live_objects = n_live
    remove_many = getattr(store, "_remove_objects", None)
    for start in range(0, len(candidates), BATCH):
        batch = candidates[start : start + BATCH]
        if not dry_run:
            live |= _marked(store, cutoff, seen_markers, report, dry_run)
            batch = [(rel, size) for rel, size in batch if rel not in live]
            if remove_many is not None:
                remove_many([rel for rel, _ in batch])
            else:
                store._map(lambda item: store._remove(item[0]), batch)
        report.objects.extend(rel for rel, _ in batch)
        report.object_bytes += sum(size for _, size in batch)

    for name, st in sorted(store._list_stats(TMP).items()):
        if st.mtime < cutoff:
            rel = f"{TMP}/{name}"
            if not dry_run:
                store._remove_quietly(rel)
            report.tmp_files.append(rel)
            report.tmp_bytes += st.size
    for upload in store._list_incomplete_uploads(".scalable"):
        started_at = upload.started if upload.started.tzinfo else upload.started.replace(tzinfo=timezone.utc)
        if started_at < cutoff:
            if not dry_run:
                store._abort_upload(upload)
            report.uploads.append(f"{upload.rel} ({upload.upload_id})")
    report.seconds = time.monotonic() - started
    return report


def _live_objects(store: BaseArtifactStore) -> set[str]:
    """Every object a head or retained version record names, with the members of unpacked trees."""
    from scalable.artifacts.store import Layout, RefRecord, Tombstone

    rels = [f"{REFS}/{name}" for name in store._list_files(REFS)]
    by_key: dict[str, list[str]] = {}
    for name in store._list_files(VERSIONS):
        key, _, number = name.rpartition("/")
        by_key.setdefault(key, []).append(number)
    for key, numbers in by_key.items():
        rels.extend(f"{VERSIONS}/{key}/{n}" for n in version_numbers(numbers))
    live: set[str] = set()
    trees: set[str] = set()
    for chunk in _chunks(rels, 1000):
        found = store._read_many(chunk)
        for rel, data in found.items():
            key = rel[len(REFS) + 1 :] if rel.startswith(REFS + "/") else rel[len(VERSIONS) + 1 :].rpartition("/")[0]
            record = RefRecord.from_bytes(data, key, store.uri)  # a damaged record stops gc: it names unknowns
            if isinstance(record, Tombstone):
                continue
            live.update(record.names())
            if record.layout == Layout.TREE:
                trees.add(record.ref.digest)
    tree_rels = [object_path(d) for d in sorted(trees)]
    for chunk in _chunks(tree_rels, 1000):
        found = store._read_many(chunk)
        for rel in chunk:
            data = found.get(rel)
            if data is None:
                raise IntegrityError(
                    f"gc stopped: the tree manifest {rel} of a committed directory in {store.uri} is missing, so "
                    "its members are unknown; nothing was removed. Run verify on the store's directories"
                )
            for entry in parse_tree_manifest(data):
                if entry.type == "file" and entry.digest is not None:
                    live.add(object_path(entry.digest))
    return live


def _marked(store: BaseArtifactStore, cutoff: datetime, seen: set[str], report: GcReport, dry_run: bool) -> set[str]:
    """Objects named by fresh pending-put markers not read before; stale markers are removed."""
    out: set[str] = set()
    stats = store._list_stats(PENDING)
    fresh = [f"{PENDING}/{n}" for n, st in stats.items() if st.mtime >= cutoff and f"{PENDING}/{n}" not in seen]
    for rel, data in store._read_many(fresh).items():
        seen.add(rel)
        try:
            out.update(str(o) for o in json.loads(data).get("objects", []))
        except (ValueError, AttributeError):
            continue
    for name, st in stats.items():
        rel = f"{PENDING}/{name}"
        if st.mtime < cutoff and rel not in seen:
            seen.add(rel)
            if not dry_run:
                store._remove_quietly(rel)
            report.markers.append(rel)
    return out


def _chunks(items: list[str], n: int) -> Iterable[list[str]]:
    for start in range(0, len(items), n):
        yield items[start : start + n]


__all__ = ["DEFAULT_GRACE_SECONDS", "GcReport", "collect_garbage"]
