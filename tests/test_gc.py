"""Garbage collection beyond the contract suite: bulk sweeps, unfinished uploads, verify and quarantine."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from scalable import build_artifact_store
from scalable.artifacts.digests import digest_bytes
from scalable.artifacts.layout import SHA256_OBJECTS, object_path
from scalable.artifacts.local import LocalArtifactStore
from scalable.artifacts.obstore_store import ObstoreArtifactStore


def _age(path: Path, seconds: float = 7200) -> None:
    old = path.stat().st_mtime - seconds
    os.utime(path, (old, old))


def test_a_bulk_sweep_removes_every_orphan_and_prunes_its_folders(tmp_path: Path) -> None:
    store = build_artifact_store(tmp_path / "store")
    assert isinstance(store, LocalArtifactStore)
    src = tmp_path / "tree"
    src.mkdir()
    for i in range(150):
        (src / f"f{i:03d}").write_bytes(f"live {i}".encode())
    store.put(src, "tree")
    orphans = []
    for i in range(300):  # more than one deletion batch, fanned out over many folders
        data = f"orphan {i}".encode()
        rel = object_path(digest_bytes(data))
        store._write_bytes(data, rel)
        orphans.append(rel)
    for path in (store.root / SHA256_OBJECTS).rglob("*"):
        if path.is_file():
            _age(path)

    report = store.gc(grace=3600)

    assert sorted(report.objects) == sorted(orphans)
    assert report.object_bytes == sum(len(f"orphan {i}".encode()) for i in range(300))
    assert not any((store.root / rel).exists() for rel in orphans)
    left = {p.parent for p in (store.root / SHA256_OBJECTS).rglob("*") if p.is_file()}
    folders = {p for p in (store.root / SHA256_OBJECTS).rglob("*") if p.is_dir()}
    assert folders == left  # no emptied fan-out folder is left behind
    store.get(store.info("tree").key, tmp_path / "back")
    assert sorted(p.name for p in (tmp_path / "back").iterdir()) == sorted(p.name for p in src.iterdir())
    assert store.gc(grace=0).objects == []


def test_gc_does_not_follow_a_symlinked_folder_out_of_the_store(tmp_path: Path) -> None:
    store = build_artifact_store(tmp_path / "store")
    assert isinstance(store, LocalArtifactStore)
    store.put_bytes(b"kept", "a")
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / ("0" * 62)
    victim.write_bytes(b"not the store's")
    _age(victim)
    (store.root / SHA256_OBJECTS / "zz").symlink_to(outside, target_is_directory=True)

    report = store.gc(grace=0)

    assert report.objects == []
    assert victim.read_bytes() == b"not the store's"
    assert store.get_bytes("a") == b"kept"


def test_gc_on_native_s3_aborts_only_old_uploads_under_its_own_prefix(s3_server: Any) -> None:
    bucket = s3_server.shared_bucket()
    prefix = f"gc-{uuid.uuid4().hex[:8]}"
    store = build_artifact_store(s3_server.url(bucket, prefix), **s3_server.storage_options)
    assert isinstance(store, ObstoreArtifactStore)
    store.put_bytes(b"kept", "a")
    fs = s3_server.filesystem()
    mine = f"{prefix}/.scalable/objects/sha256/ab/" + "ab" * 32
    sibling = f"{prefix}-other/.scalable/objects/sha256/ab/" + "ab" * 32  # another store's, same leading text
    for key in (mine, sibling):
        up = fs.call_s3("create_multipart_upload", Bucket=bucket, Key=key)
        fs.call_s3("upload_part", Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=1, Body=b"x" * 1024)

    def uploads(under: str) -> list[str]:
        found = fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=under + "/")
        return [u["Key"] for u in found.get("Uploads") or []]

    assert store.gc(grace=3600).uploads == []  # younger than the grace period: kept
    assert uploads(prefix) == [mine]
    dry = store.gc(grace=0, dry_run=True)
    assert len(dry.uploads) == 1 and dry.uploads[0].startswith(mine[len(prefix) + 1 :])
    assert uploads(prefix) == [mine]

    done = store.gc(grace=0)

    assert len(done.uploads) == 1 and "1 unfinished uploads" in done.summary()
    assert uploads(prefix) == []
    assert uploads(f"{prefix}-other") == [sibling]  # not under this store's prefix: untouched
    assert store.get_bytes("a") == b"kept"
