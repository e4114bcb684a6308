"""Garbage collection beyond the contract suite: bulk sweeps, unfinished uploads, verify and quarantine."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from fsspec.callbacks import Callback

from scalable import IntegrityError, build_artifact_store
from scalable.artifacts.digests import digest_bytes
from scalable.artifacts.gc import quarantine_path
from scalable.artifacts.layout import SHA256_OBJECTS, object_path, pack_path
from scalable.artifacts.local import LocalArtifactStore
from scalable.artifacts.obstore_store import ObstoreArtifactStore
from scalable.artifacts.store import BaseArtifactStore
from tests.conftest import make_store_factory


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


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


# ---------------------------------------------------------------- gc(verify=True) and the quarantine


@pytest.fixture(params=["local", "s3"])
def vstore(request: pytest.FixtureRequest, tmp_path: Path) -> BaseArtifactStore:
    return make_store_factory(request, str(request.param), tmp_path)()


def _objects(store: BaseArtifactStore) -> set[str]:
    return {f"{SHA256_OBJECTS}/{name}" for name in store._list_stats(SHA256_OBJECTS)}


def test_verify_moves_a_damaged_file_object_to_the_quarantine(vstore: BaseArtifactStore) -> None:
    store = vstore
    store.put_bytes(b"precious bytes", "a")
    store.put_bytes(b"precious bytes", "same-content")
    store.put_bytes(b"other", "b")
    rel = object_path(sha256(b"precious bytes"))
    store._write_bytes(b"bit rot!", rel)  # behind the store's back

    dry = store.gc(grace=3600, verify=True, dry_run=True)
    assert list(dry.damaged) == [rel] and rel in _objects(store)  # a dry run moves nothing
    report = store.gc(grace=3600, verify=True)

    assert list(report.damaged) == [rel]
    assert "a@1" in report.damaged[rel] and "same-content@1" in report.damaged[rel]
    assert report.quarantined == [rel] and report.objects == []
    assert report.verified_objects == 2
    assert "1 damaged" in report.summary()
    assert rel not in _objects(store)
    assert store._read_bytes(quarantine_path(rel)) == b"bit rot!"  # kept for a look, not deleted
    for key in ("a", "same-content"):
        with pytest.raises(IntegrityError, match="quarantine"):
            store.get_bytes(key)
    assert store.get_bytes("b") == b"other"
    assert store.gc(grace=0, verify=True).damaged == {}  # nothing else is damaged; nothing live removed
    assert store._read_bytes(quarantine_path(rel)) == b"bit rot!"

    store.put_bytes(b"precious bytes", "a")  # a re-put of the content uploads a good copy
    assert store.get_bytes("a") == b"precious bytes"
    assert store.get_bytes("same-content") == b"precious bytes"


def test_verify_quarantines_a_damaged_tree_member_and_a_re_put_heals_it(
    vstore: BaseArtifactStore, tree: Path, tmp_path: Path
) -> None:
    store = vstore
    store.put(tree, "d")
    [entry] = [e for e in store.tree("d") if e.path == "a.txt"]
    assert entry.digest is not None
    member = object_path(entry.digest)
    manifest = object_path(store.info("d").digest)
    store._write_bytes(b"tampered member", member)

    report = store.gc(grace=3600, verify=True)

    assert list(report.damaged) == [member] and "d@1" in report.damaged[member]
    assert sorted(report.quarantined) == sorted([member, manifest])  # the tree's next put re-checks members
    with pytest.raises(IntegrityError):
        store.get("d", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    before = _objects(store)
    assert store.gc(grace=0).objects == []  # the manifest's quarantined copy still names the other members
    assert _objects(store) == before

    store.put(tree, "d")
    store.get("d", tmp_path / "back")
    assert (tmp_path / "back" / "a.txt").read_bytes() == (tree / "a.txt").read_bytes()
    assert store.gc(grace=0, verify=True).damaged == {}


def test_verify_quarantines_a_pack_with_bytes_past_its_last_member(vstore: BaseArtifactStore, tree: Path) -> None:
    store = vstore
    ref = store.put(tree, "p", pack=True)
    pack = pack_path(ref.digest)
    store._write_bytes(store._read_bytes(pack) + b"extra", pack)

    report = store.gc(grace=3600, verify=True)

    assert list(report.damaged) == [pack] and "past its last member" in report.damaged[pack]
    with pytest.raises(IntegrityError):
        store.open("p", member="a.txt").read()
    store.put(tree, "p", pack=True)
    assert store.open("p", member="a.txt").read() == (tree / "a.txt").read_bytes()


def test_a_damaged_tree_manifest_stops_gc_and_verify_quarantines_it(vstore: BaseArtifactStore, tree: Path) -> None:
    store = vstore
    ref = store.put(tree, "d")
    manifest = object_path(ref.digest)
    store._write_bytes(b'{"entries":[]}', manifest)  # would hide every member from the mark
    orphan = object_path(sha256(b"orphan"))
    store._write_bytes(b"orphan", orphan)
    before = _objects(store)

    with pytest.raises(IntegrityError, match="gc --verify"):
        store.gc(grace=0)
    assert _objects(store) == before

    report = store.gc(grace=0, verify=True)
    assert list(report.damaged) == [manifest] and report.objects == []  # members unknown: nothing swept
    assert _objects(store) == before - {manifest}
    with pytest.raises(IntegrityError):
        store.tree("d")
    with pytest.raises(IntegrityError, match="Re-put the directory"):
        store.gc(grace=0)
    store.put(tree, "d")  # the manifest is absent: the put re-checks members and writes it again
    assert store.gc(grace=0).objects == [orphan]


def test_cli_gc_verify_reports_damage_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from scalable.cli.app import main

    monkeypatch.chdir(tmp_path)
    root = tmp_path / "store"
    store = build_artifact_store(root)
    store.put_bytes(b"fine", "ok")
    store.put_bytes(b"will rot", "bad")
    rel = object_path(sha256(b"will rot"))
    (root / rel).write_bytes(b"rotten")

    code = main(["gc", str(root), "--verify"])
    out, err = capsys.readouterr()

    assert code == 1
    assert f"damaged: {rel}" in err and "bad@1" in err and "re-put" in err
    assert "re-hashed 2 objects: 1 damaged" in out
    assert (root / quarantine_path(rel)).read_bytes() == b"rotten"
    assert main(["gc", str(root), "--verify", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["damaged"] == {} and doc["verified_objects"] == 1


# ---------------------------------------------------------------- directory re-puts


class _Bytes(Callback):
    def __init__(self) -> None:
        super().__init__()
        self.moved = 0

    def relative_update(self, inc: int = 1) -> None:
        self.moved += inc


def test_a_directory_re_put_checks_only_the_files_its_latest_version_lacks(
    vstore: BaseArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = vstore
    src = tmp_path / "tree"
    for i in range(300):
        sub = src / f"d{i % 10}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i:03d}").write_bytes(os.urandom(512))
    store.put(src, "t")
    store.put_bytes((src / "d0" / "f000").read_bytes() + b"!", "elsewhere")  # held under another key
    changed = sorted(src.rglob("f*"))[:30]
    for f in changed[1:]:
        f.write_bytes(os.urandom(512))
    changed[0].write_bytes((src / "d0" / "f000").read_bytes() + b"!")
    heads: list[str] = []
    listed: list[str] = []
    head, list_files = store._head, store._list_files
    monkeypatch.setattr(store, "_head", lambda rel: heads.append(rel) or head(rel))
    monkeypatch.setattr(store, "_list_files", lambda rel: listed.append(rel) or list_files(rel))
    sent = _Bytes()

    ref = store.put(src, "t", callback=sent, mode="copy")  # local "auto" clones each file: one stat per file

    assert sent.moved == 29 * 512  # the content held under another key moved no byte
    object_heads = [rel for rel in heads if rel.startswith(SHA256_OBJECTS + "/")]
    assert len(object_heads) <= 30 + 1  # the 30 the previous version lacks, and the manifest (native S3: async HEADs)
    assert not [rel for rel in listed if rel.startswith(SHA256_OBJECTS)]  # no fan-out folder listed
    monkeypatch.undo()
    store.get("t", tmp_path / "back")
    for f in src.rglob("f*"):
        assert (tmp_path / "back" / f.relative_to(src)).read_bytes() == f.read_bytes()
    assert ref.version == 2 and store.gc(grace=0, verify=True).damaged == {}
