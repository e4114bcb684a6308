"""Garbage collection: remove what no retained version or put in flight needs.

Mark: every head and version record of the store (and the tree manifests of unpacked
directories they name) gives the set of live objects; every pending-put marker younger
than the grace period adds the objects that put relies on. Sweep: objects, temporary
files and unfinished multipart uploads that are not live and older than the grace period
are removed; markers older than it (left by killed puts) too.

With ``verify=True`` the objects left after the sweep are re-hashed (a pack member by
member, against its manifest); one whose bytes do not match its name is reported and moved
to ``.scalable/quarantine/`` (the same path below it), never deleted, so reads of a ref
naming it fail with ``IntegrityError`` and a re-put of its content uploads a good copy. The
manifests of unpacked trees naming a damaged member are moved too: a tree whose manifest is
absent is re-checked member by member by its next put. gc reads a manifest from the
quarantine when it is not among the objects.

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
from typing import TYPE_CHECKING, BinaryIO

from scalable.artifacts.digests import TreeEntry, digest_bytes, format_digest, parse_tree_manifest
from scalable.artifacts.layout import (
    OBJECTS,
    PACK_SUFFIX,
    PENDING,
    REFS,
    SHA256_OBJECTS,
    TMP,
    VERSIONS,
    object_path,
    parse_version_name,
    ref_path,
    version_path,
)
from scalable.errors import IntegrityError

if TYPE_CHECKING:
    from scalable.artifacts.store import BaseArtifactStore

#: The default grace period: nothing younger than this is removed.
DEFAULT_GRACE_SECONDS = 3600.0
#: Deletions between two re-reads of the pending-put markers.
BATCH = 256
#: Where ``gc(verify=True)`` moves objects whose bytes do not match their names.
QUARANTINE = ".scalable/quarantine"


def quarantine_path(rel: str) -> str:
    """Where the object ``rel`` (``.scalable/objects/...``) goes in the quarantine."""
    return QUARANTINE + rel[len(OBJECTS) :]


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
    #: Version records of deleted keys that a delete killed after its commit point left behind.
    records: list[str] = field(default_factory=list)
    live_objects: int = 0
    scanned_objects: int = 0
    seconds: float = 0.0
    #: With ``verify``: how many objects were re-hashed, and each damaged one with what it is and who names it.
    verified: bool = False
    verified_objects: int = 0
    damaged: dict[str, str] = field(default_factory=dict)
    #: Objects moved to the quarantine (the damaged ones, and manifests naming a damaged member).
    quarantined: list[str] = field(default_factory=list)

    @property
    def bytes_reclaimed(self) -> int:
        """Bytes of the objects and temporary files removed (parts of aborted uploads are not counted)."""
        return self.object_bytes + self.tmp_bytes

    def summary(self) -> str:
        """One line: what was (or would be) removed."""
        verb = "would remove" if self.dry_run else "removed"
        text = (
            f"{verb} {len(self.objects)} objects ({self.object_bytes} bytes), {len(self.tmp_files)} temporary files "
            f"({self.tmp_bytes} bytes), {len(self.uploads)} unfinished uploads, {len(self.markers)} stale markers, "
            f"{len(self.records)} records of deleted keys; "
            f"kept {self.live_objects} live objects of {self.scanned_objects}"
        )
        if self.verified:
            moved = "would move" if self.dry_run else "moved"
            text += f"; re-hashed {self.verified_objects} objects: {len(self.damaged)} damaged"
            if self.damaged:
                text += f" ({moved} {len(self.quarantined)} objects to {QUARANTINE}/)"
        return text


def collect_garbage(
    store: BaseArtifactStore, *, grace: float = DEFAULT_GRACE_SECONDS, dry_run: bool = False, verify: bool = False
) -> GcReport:
    """Run one gc over ``store`` (with ``verify``, re-hash what is left); see the module docstring."""
    started = time.monotonic()
    if isinstance(grace, timedelta):
        grace = grace.total_seconds()
    now = datetime.now(timezone.utc)
    cutoff = now - timedelta(seconds=max(0.0, float(grace)))
    report = GcReport(dry_run=dry_run)
    store._require_current_layout()  # records of another layout would not be seen: they must be migrated

    listed = store._list_stats(SHA256_OBJECTS)  # listed first: anything newer is not a candidate
    report.scanned_objects = len(listed)
    marked = _mark(store, report, dry_run, verify, cutoff)
    live = marked.live
    seen_markers: set[str] = set()
    live |= _marked(store, cutoff, seen_markers, report, dry_run)
    prefix = SHA256_OBJECTS + "/"
    candidates: list[tuple[str, int]] = []
    n_live = 0
    kept: list[str] = []
    for name, st in listed.items():
        rel = prefix + name
        if rel in live:
            n_live += 1
            kept.append(rel)
        elif st.mtime < cutoff and not marked.blocked:
            candidates.append((rel, st.size))
        else:
            kept.append(rel)
    del listed
    candidates.sort()
    report.live_objects = n_live
    for start in range(0, len(candidates), BATCH):
        batch = candidates[start : start + BATCH]
        if not dry_run:
            live |= _marked(store, cutoff, seen_markers, report, dry_run)
            batch = [(rel, size) for rel, size in batch if rel not in live]
            store._remove_objects([rel for rel, _ in batch])
        report.objects.extend(rel for rel, _ in batch)
        report.object_bytes += sum(size for _, size in batch)
    if verify:
        removed = set(report.objects)
        kept.extend(rel for rel, _ in candidates if rel not in removed)  # spared by a marker read late
        _verify_objects(store, sorted(kept), marked, report, dry_run)

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


@dataclass
class _Marked:
    """What the mark phase found: live objects, each live unpacked tree's members, and who names what."""

    live: set[str]
    trees: dict[str, list[str]]  # manifest rel -> member object rels
    owners: dict[str, set[str]]  # object rel -> "key@version" naming it (only with verify)
    blocked: bool = False  # a damaged live manifest: its members are unknown, so nothing may be swept


def _mark(store: BaseArtifactStore, report: GcReport, dry_run: bool, verify: bool, cutoff: datetime) -> _Marked:
    """Every object a head or retained version record names, with the members of unpacked trees.

    The records a delete leaves behind when it is killed after its commit point (the head's
    removal) but before it removed them are dead: they come before a tombstone older than the
    grace period, and the key has no head or one newer than that tombstone, so no reader can
    see them again. They name nothing here and are removed (``report.records``).
    """
    from scalable.artifacts.store import Layout, RefRecord, Tombstone

    numbers: dict[str, dict[int, datetime]] = {}  # key -> its record numbers -> their mtimes
    for name, st in store._list_stats(VERSIONS).items():
        parsed = parse_version_name(name)
        if parsed is not None:
            numbers.setdefault(parsed[0], {})[parsed[1]] = st.mtime
    for name in store._list_files(REFS):
        numbers.setdefault(name, {})
    marked = _Marked(set(), {}, {})
    trees: dict[str, str] = {}  # tree digest -> a key naming it (for messages)
    for keys in _key_chunks(numbers, 1000):
        found = store._read_many([rel for key in keys for rel in _record_rels(key, numbers[key])])
        for key in keys:
            records: list[RefRecord] = []
            data = found.get(ref_path(key))
            head = RefRecord.from_bytes(data, key, store.uri) if data is not None else None  # damaged: gc stops
            if isinstance(head, RefRecord):
                records.append(head)
            ended = 0  # the newest tombstone older than the grace period
            for n, mtime in sorted(numbers[key].items()):
                data = found.get(version_path(key, n))
                if data is None:  # removed since it was listed
                    continue
                record = RefRecord.from_bytes(data, key, store.uri)  # a damaged record stops gc: it names unknowns
                if isinstance(record, Tombstone):
                    if mtime < cutoff:
                        ended = n
                    continue
                records.append(record)
            if ended and (not isinstance(head, RefRecord) or head.version > ended):
                dead = sorted(r.version for r in records if r.version < ended)
                report.records.extend(version_path(key, n) for n in dead)
                records = [r for r in records if r.version > ended]
            for record in records:
                names = record.names()
                marked.live.update(names)
                if verify:
                    for name in names:
                        marked.owners.setdefault(name, set()).add(f"{key}@{record.version}")
                if record.layout == Layout.TREE:
                    trees.setdefault(record.ref.digest, key)
    if not dry_run:
        for rel in report.records:
            store._remove_quietly(rel)
    tree_rels = {object_path(d): d for d in sorted(trees)}
    for chunk in _chunks(list(tree_rels), 1000):
        found = store._read_many(chunk)
        for rel in chunk:
            digest, key = tree_rels[rel], trees[tree_rels[rel]]
            data = found.get(rel)
            if data is None:  # moved to the quarantine for a damaged member: its copy there still lists them
                data = _read_quarantined(store, rel)
            elif digest_bytes(data) != digest:
                if not verify:
                    raise IntegrityError(
                        f"gc stopped: the tree manifest {rel} of directory {key!r} in {store.uri} does not match its "
                        "digest, so its members are unknown; nothing was removed. Run `scalable gc --verify` to move "
                        "it to the quarantine, then re-put the directory from its source (or delete the key)"
                    )
                report.damaged[rel] = f"tree manifest of {_named(marked, rel, key)}: bytes do not match its digest"
                _quarantine(store, rel, report, dry_run)
                marked.blocked = True
                continue
            if data is None or digest_bytes(data) != digest:
                raise IntegrityError(
                    f"gc stopped: the tree manifest {rel} of directory {key!r} in {store.uri} is missing (or damaged "
                    "in the quarantine), so its members are unknown; nothing was removed. Re-put the directory from "
                    "its source, or delete the key"
                )
            members = [object_path(e.digest) for e in parse_tree_manifest(data) if e.type == "file" and e.digest]
            marked.trees[rel] = members
            marked.live.update(members)
            if verify:
                owners = marked.owners.get(rel, set())
                for member in members:
                    marked.owners.setdefault(member, set()).update(owners)
    return marked


def _read_quarantined(store: BaseArtifactStore, rel: str) -> bytes | None:
    try:
        return store._read_bytes(quarantine_path(rel))
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def _named(marked: _Marked, rel: str, fallback: str = "") -> str:
    owners = sorted(marked.owners.get(rel, ()))
    if not owners:
        return fallback or "no committed version"
    more = f" and {len(owners) - 3} more" if len(owners) > 3 else ""
    return ", ".join(owners[:3]) + more


def _quarantine(store: BaseArtifactStore, rel: str, report: GcReport, dry_run: bool) -> None:
    """Move ``rel`` out of the objects into the quarantine (never deleted: someone may want to look at it)."""
    report.quarantined.append(rel)
    if dry_run:
        return
    try:
        store._copy_within(rel, quarantine_path(rel))
    except FileNotFoundError:
        return
    store._remove(rel)


def _verify_objects(
    store: BaseArtifactStore, rels: list[str], marked: _Marked, report: GcReport, dry_run: bool
) -> None:
    """Re-hash each object in ``rels`` (live manifests were checked when marked); quarantine the damaged."""
    report.verified = True
    todo = [rel for rel in rels if rel not in marked.trees and rel not in report.damaged]
    report.verified_objects = len(rels) - len(todo)

    def check(rel: str) -> str | None:
        try:
            return _check_object(store, rel, marked)
        except FileNotFoundError:  # removed meanwhile (another gc): nothing to check
            return None

    for chunk in _chunks(todo, 256):
        for rel, problem in zip(chunk, store._map(check, chunk), strict=True):
            report.verified_objects += 1
            if problem is None:
                continue
            report.damaged[rel] = f"{problem}; named by {_named(marked, rel)}"
            _quarantine(store, rel, report, dry_run)
            for manifest, members in marked.trees.items():
                if rel in members and manifest not in report.quarantined and store._head(manifest) is not None:
                    _quarantine(store, manifest, report, dry_run)  # its next put re-checks every member


def _check_object(store: BaseArtifactStore, rel: str, marked: _Marked) -> str | None:
    """What is wrong with the object ``rel``, or ``None`` if its bytes match its name."""
    name = rel.rpartition("/")[2]
    if not name.endswith(PACK_SUFFIX):
        with store._open_read(rel) as f:
            digest, _ = _hash_stream(f, None)
        return None if digest == format_digest(name) else f"bytes hash to {digest}"
    manifest_rel = rel[: -len(PACK_SUFFIX)]
    try:
        data: bytes | None = store._read_bytes(manifest_rel)
    except FileNotFoundError:
        data = _read_quarantined(store, manifest_rel)
    if data is None or digest_bytes(data) != format_digest(name[: -len(PACK_SUFFIX)]):
        return None  # no intact manifest to check the pack against: its manifest is reported on its own
    files: list[TreeEntry] = [e for e in parse_tree_manifest(data) if e.type == "file"]
    with store._open_read(rel) as f:
        for e in files:
            digest, n = _hash_stream(f, e.size)
            if n != e.size or digest != e.digest:
                return f"pack member {e.path!r} does not match its digest"
        if f.read(1):
            return "pack has bytes past its last member"
    return None


def _hash_stream(f: BinaryIO, limit: int | None) -> tuple[str, int]:
    """SHA-256 of the next ``limit`` bytes of ``f`` (all of it with ``None``), and how many there were."""
    import hashlib

    h = hashlib.sha256()
    n = 0
    while limit is None or n < limit:
        chunk = f.read(_CHUNK if limit is None else min(_CHUNK, limit - n))
        if not chunk:
            break
        h.update(chunk)
        n += len(chunk)
    return format_digest(h.hexdigest()), n


_CHUNK = 4 * 1024 * 1024


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


def _record_rels(key: str, numbers: dict[int, datetime]) -> list[str]:
    return [ref_path(key)] + [version_path(key, n) for n in sorted(numbers)]


def _key_chunks(numbers: dict[str, dict[int, datetime]], n: int) -> Iterable[list[str]]:
    """The keys in sorted batches of about ``n`` records each (a key's records stay in one batch)."""
    batch: list[str] = []
    size = 0
    for key in sorted(numbers):
        batch.append(key)
        size += 1 + len(numbers[key])
        if size >= n:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _chunks(items: list[str], n: int) -> Iterable[list[str]]:
    for start in range(0, len(items), n):
        yield items[start : start + n]


__all__ = ["DEFAULT_GRACE_SECONDS", "QUARANTINE", "GcReport", "collect_garbage", "quarantine_path"]
