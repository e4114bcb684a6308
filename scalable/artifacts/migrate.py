"""Convert a store written in an older layout to ``scalable.store/3``, in place.

Layout 1 (``scalable.ref/1``, no ``store.json``) kept each put's bytes under
``.scalable/objects/<key>/<version>`` and one ref record per key. For every key whose head
record is still in the old format, the migration copies its bytes to their digest names
(verifying each against the digests the old record holds, before it completes), creates
version 1 of the key, and only then rewrites the head record: the commit point of that
key. When every key is converted, the old object folders are removed and
``.scalable/store.json`` is written. Until the head of a key is rewritten, that key still
reads as before (refused with a message naming ``scalable migrate``), never half-converted.

Layout 2 (``scalable.store/2``) differs from 3 only in where version records live:
``versions/<key>/<N>`` instead of ``versions/<key>/.scalable/<N>``. The migration first
refuses a store with a key that has a ``.scalable`` segment (reserved in layout 3), then
marks ``store.json`` as migrating, copies each record to its new name, writes
``store.json`` as layout 3 (the commit point: readers follow it, and from then on the
old names are ignored), and removes the old names. Readers read the store correctly at
every step; writers are refused until the commit point.

Every step is idempotent, so a migration that was killed is resumed by running it again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from scalable.artifacts.digests import digest_bytes, parse_tree_manifest
from scalable.artifacts.keys import RESERVED_SEGMENT
from scalable.artifacts.layout import (
    OBJECTS,
    REFS,
    SHA256_OBJECTS,
    STORE_FORMAT,
    STORE_FORMAT_V2,
    STORE_JSON,
    VERSIONS,
    object_path,
    pack_path,
    parse_version_name,
    version_path,
)
from scalable.artifacts.ref import ArtifactRef
from scalable.artifacts.transfer import copy_hashing
from scalable.errors import IntegrityError, StoreLayoutError

if TYPE_CHECKING:
    from scalable.artifacts.store import BaseArtifactStore


@dataclass
class MigrateReport:
    """What a migration did: the keys it converted, those already converted, and what it moved and removed.

    ``layout_from`` is the layout the store was in (``scalable.ref/1``, ``scalable.store/2``,
    or ``scalable.store/3`` when there was nothing to convert).
    """

    converted: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    removed_old_objects: int = 0
    layout_from: str = STORE_FORMAT
    records_moved: int = 0
    removed_old_records: int = 0

    def summary(self) -> str:
        """One line: what was converted, from which layout, and what of the old layout was removed."""
        if self.layout_from == STORE_FORMAT and not self.converted:
            return (
                f"nothing to convert: the store is in layout {STORE_FORMAT} ({len(self.already)} artifacts); "
                f"removed {self.removed_old_records} records left by an interrupted migration"
            )
        return (
            f"converted {len(self.converted)} artifacts from {self.layout_from} to {STORE_FORMAT} "
            f"({len(self.already)} were already converted), moved {self.records_moved} version records, "
            f"removed {self.removed_old_objects} objects and {self.removed_old_records} records of the old layout"
        )


def migrate_store(store: BaseArtifactStore, *, progress: Callable[[str], Any] | None = None) -> MigrateReport:
    """Convert ``store`` in place to layout ``scalable.store/3``; safe to run again after a kill."""
    data = store._read_store_json()
    if data is None:
        return _migrate_from_v1(store, progress)
    layout = store._check_store_json(data)  # an unknown layout is refused here
    doc = json.loads(data)
    if layout == 2:
        return _migrate_from_v2(store, doc, progress)
    report = MigrateReport(already=store.list_artifacts())
    if doc.get("migrated_from") == STORE_FORMAT_V2:  # killed after its commit point: finish removing old names
        report.removed_old_records = _remove_v2_records(store)
    return report


def _refuse_reserved(store: BaseArtifactStore, folders: list[str]) -> None:
    """Refuse a store with a key that uses the segment layout 3 reserves, before anything is converted."""
    for folder in folders:
        for name in store._list_files(folder):
            if RESERVED_SEGMENT in name.split("/"):
                raise StoreLayoutError(
                    f"cannot convert the store at {store.uri}: {folder}/{name} belongs to a key with a "
                    f"{RESERVED_SEGMENT!r} segment, which the new layout reserves. Nothing was converted: with the "
                    "scalable release that wrote the store, copy that artifact to a key without the segment and "
                    "delete it, then run `scalable migrate` again"
                )


def _migrate_from_v2(
    store: BaseArtifactStore, doc: dict[str, Any], progress: Callable[[str], Any] | None
) -> MigrateReport:
    report = MigrateReport(layout_from=STORE_FORMAT_V2)
    if doc.get("migrating_to") != STORE_FORMAT:
        _refuse_reserved(store, [REFS, VERSIONS])
        store._write_bytes(_doc_bytes({**doc, "migrating_to": STORE_FORMAT}), STORE_JSON)
    # With the scan passed (or done by the killed run), a layout-3 name is never a layout-2 record.
    old: list[tuple[str, str, int]] = []
    for name in store._list_files(VERSIONS):
        parsed = parse_version_name(name, 2) if parse_version_name(name) is None else None
        if parsed is not None:
            old.append((name, *parsed))

    def move(item: tuple[str, str, int]) -> None:
        name, key, number = item
        new = version_path(key, number)
        if store._head(new) is None:
            try:
                record = store._read_bytes(f"{VERSIONS}/{name}")
            except FileNotFoundError:
                return
            store._create_exclusive(record, new)

    store._map(move, old)
    report.records_moved = len(old)
    report.converted = sorted({key for _, key, _ in old})
    if progress is not None:
        for key in report.converted:
            progress(key)
    done = {k: v for k, v in doc.items() if k != "migrating_to"}
    done.update(format=STORE_FORMAT, migrated_from=STORE_FORMAT_V2, migrated_at=datetime.now(timezone.utc).isoformat())
    store._write_bytes(_doc_bytes(done), STORE_JSON)  # the commit point: readers follow store.json
    store._records_layout_seen = 3
    report.removed_old_records = _remove_v2_records(store)
    moved = set(report.converted)
    report.already = [k for k in store.list_artifacts() if k not in moved]
    return report


def _remove_v2_records(store: BaseArtifactStore) -> int:
    """Remove the records left at layout-2 names in a store that is of layout 3 (all were copied first)."""
    stale = [f"{VERSIONS}/{name}" for name in store._list_files(VERSIONS) if parse_version_name(name) is None]
    store._map(store._remove_quietly, stale)
    return len(stale)


def _doc_bytes(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _migrate_from_v1(store: BaseArtifactStore, progress: Callable[[str], Any] | None) -> MigrateReport:
    from scalable.artifacts.store import OLD_RECORD_FORMAT, Layout, RefRecord

    report = MigrateReport(layout_from="scalable.ref/1")
    store._layout_checked = True  # the old refs are why _prepare_write would refuse: this converts them
    _refuse_reserved(store, [REFS])
    for key in store.list_artifacts():
        data = store._read_bytes(f".scalable/refs/{key}")
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise IntegrityError(f"the ref record of {key!r} in {store.uri} is damaged ({exc}); delete it") from None
        if doc.get("format") != OLD_RECORD_FORMAT:
            report.already.append(key)
            continue
        old_obj = str(doc.get("object", ""))
        layout = str(doc.get("layout", ""))
        head = f"{OBJECTS}/{key}/"
        if not old_obj.startswith(head) or "/" in old_obj[len(head) :] or old_obj[len(head) :] in ("", ".", ".."):
            raise IntegrityError(f"the old ref record of {key!r} in {store.uri} names {old_obj!r}, outside its key")
        old = ArtifactRef.model_validate(doc["ref"])
        ref = old.model_copy(update={"uri": store.uri_for(key), "version": 1})
        if layout == Layout.FILE:
            _copy_verified(store, old_obj, object_path(ref.digest), ref.digest, key)
        else:
            manifest = store._read_bytes(f"{old_obj}.tree")
            if digest_bytes(manifest) != ref.digest:
                raise IntegrityError(f"the tree manifest of {key!r} in {store.uri} does not match its digest")
            entries = [e for e in parse_tree_manifest(manifest) if e.type == "file"]
            if layout == Layout.PACKED:
                _copy_pack_verified(store, old_obj, pack_path(ref.digest), entries, key)
            else:
                for e in entries:
                    assert e.digest is not None
                    _copy_verified(store, f"{old_obj}/{e.path}", object_path(e.digest), e.digest, key)
            if store._head(object_path(ref.digest)) is None:
                store._write_bytes(manifest, object_path(ref.digest))
        record = RefRecord(ref, layout)
        store._create_exclusive(record.to_bytes(), version_path(key, 1))
        store._write_bytes(record.to_bytes(), f".scalable/refs/{key}")  # the commit point of this key
        report.converted.append(key)
        if progress is not None:
            progress(key)
    for name in store._list_files(OBJECTS):
        rel = f"{OBJECTS}/{name}"
        if not rel.startswith(SHA256_OBJECTS + "/"):
            store._remove_quietly(rel)
            report.removed_old_objects += 1
    if not report.converted and not report.already:
        report.layout_from = STORE_FORMAT  # an empty store: nothing to convert
    doc = {
        "format": STORE_FORMAT,
        "created_at": datetime.now(timezone.utc).isoformat(),
        "migrated_from": "scalable.ref/1",
    }
    store._write_bytes(json.dumps(doc, sort_keys=True).encode(), STORE_JSON)
    store._records_layout_seen = 3
    return report


def _copy_verified(store: BaseArtifactStore, src: str, dst: str, digest: str | None, key: str) -> None:
    """Copy ``src`` to the digest name ``dst`` unless it is there; bytes that do not match never complete."""
    if store._head(dst) is not None:
        return
    with store._open_read(src) as f, store._open_write(dst) as out:
        got, _ = copy_hashing(f, out.write)
        if digest is not None and got != digest:
            raise IntegrityError(
                f"the stored bytes of {key!r} in {store.uri} do not match their digest {digest}; nothing of this "
                "key was converted: re-put it from its source, or delete it, then run the migration again"
            )


def _copy_pack_verified(store: BaseArtifactStore, src: str, dst: str, entries: list[Any], key: str) -> None:
    """Copy a pack member by member, each checked against the manifest, with nothing after the last one."""
    from scalable.artifacts.store import _Limited

    if store._head(dst) is not None:
        return
    with store._open_read(src) as f, store._open_write(dst) as out:
        for e in entries:
            got, n = copy_hashing(_Limited(f, e.size), out.write)
            if got != e.digest or n != e.size:
                raise IntegrityError(
                    f"member {e.path!r} of the pack of {key!r} in {store.uri} does not match its digest; nothing "
                    "of this key was converted: re-put it from its source, or delete it, then migrate again"
                )
        if f.read(1):
            raise IntegrityError(f"the pack of {key!r} in {store.uri} has bytes past its last member")


__all__ = ["MigrateReport", "migrate_store"]
