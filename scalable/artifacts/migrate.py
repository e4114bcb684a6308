"""Convert a store written in the layout before content-addressed objects (``scalable.ref/1``) in place.

The old layout kept each put's bytes under ``.scalable/objects/<key>/<version>`` and one
ref record per key. For every key whose head record is still in the old format, the
migration copies its bytes to their digest names (verifying each against the digests the
old record holds, before it completes), creates version 1 of the key, and only then
rewrites the head record: the commit point of that key. When every key is converted,
the old object folders are removed and ``.scalable/store.json`` is written.

Every step is idempotent, so a migration that was killed is resumed by running it again;
until the head of a key is rewritten, that key still reads as before (refused with a
message naming ``scalable migrate``), never half-converted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from scalable.artifacts.digests import digest_bytes, parse_tree_manifest
from scalable.artifacts.layout import OBJECTS, SHA256_OBJECTS, STORE_FORMAT, STORE_JSON, object_path, pack_path
from scalable.artifacts.ref import ArtifactRef
from scalable.artifacts.transfer import copy_hashing
from scalable.errors import IntegrityError

if TYPE_CHECKING:
    from scalable.artifacts.store import BaseArtifactStore


@dataclass
class MigrateReport:
    """What a migration did: the keys it converted, those already converted, and the old objects removed."""

    converted: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    removed_old_objects: int = 0

    def summary(self) -> str:
        return (
            f"converted {len(self.converted)} artifacts ({len(self.already)} were already converted), "
            f"removed {self.removed_old_objects} objects of the old layout"
        )


def migrate_store(store: BaseArtifactStore, *, progress: Callable[[str], Any] | None = None) -> MigrateReport:
    """Convert ``store`` in place to layout ``scalable.store/2``; safe to run again after a kill."""
    from scalable.artifacts.store import OLD_RECORD_FORMAT, Layout, RefRecord

    report = MigrateReport()
    store._layout_checked = True  # the old refs are why _prepare_write would refuse: this converts them
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
        store._create_exclusive(record.to_bytes(), f".scalable/versions/{key}/1")
        store._write_bytes(record.to_bytes(), f".scalable/refs/{key}")  # the commit point of this key
        report.converted.append(key)
        if progress is not None:
            progress(key)
    for name in store._list_files(OBJECTS):
        rel = f"{OBJECTS}/{name}"
        if not rel.startswith(SHA256_OBJECTS + "/"):
            store._remove_quietly(rel)
            report.removed_old_objects += 1
    doc = {
        "format": STORE_FORMAT,
        "created_at": datetime.now(timezone.utc).isoformat(),
        "migrated_from": "scalable.ref/1",
    }
    store._write_bytes(json.dumps(doc, sort_keys=True).encode(), STORE_JSON)
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
