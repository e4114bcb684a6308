"""The artifact-store contract, run unchanged against every backend.

Each test states something a user relies on: what ``put`` returns, what ``get`` writes,
what ``list_artifacts`` shows, and what happens when bytes are damaged or a put dies.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import uuid
from datetime import timezone
from pathlib import Path

import pytest
from fsspec.callbacks import Callback

from scalable import (
    AmbiguousVersionError,
    ArtifactKind,
    ArtifactKindError,
    ArtifactNotFoundError,
    ArtifactRef,
    ArtifactStore,
    DestinationExistsError,
    IntegrityError,
    InvalidKeyError,
    KeyConflictError,
)
from scalable.artifacts.layout import REFS, SHA256_OBJECTS, STORE_JSON, VERSIONS, object_path
from scalable.artifacts.store import BaseArtifactStore
from tests.conftest import TREE_DIGEST, make_tree


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def listing(root: Path) -> dict[str, bytes | None]:
    """Every file (with its bytes) and folder (None) under ``root``."""
    return {p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


class CountingCallback(Callback):
    def __init__(self) -> None:
        super().__init__()
        self.moved = 0

    def relative_update(self, inc: int = 1) -> None:
        self.moved += inc


def tamper(store: BaseArtifactStore, key: str, member: str | None = None, data: bytes = b"tampered!") -> None:
    """Overwrite an artifact's stored bytes behind the store's back."""
    record = store._read_record(key)
    assert record is not None
    if member is None:
        target = record.object
    else:
        [entry] = [e for e in store.tree(key) if e.path == member]
        assert entry.digest is not None
        target = object_path(entry.digest)
    store._write_bytes(data, target)


# ---------------------------------------------------------------- put / get / info


def test_store_satisfies_protocol(store: BaseArtifactStore) -> None:
    assert isinstance(store, ArtifactStore)


def test_put_file_returns_a_complete_ref(store: BaseArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "output.csv"
    src.write_bytes(b"a,b\n1,2\n")
    ref = store.put(src, "runs/run-001/output.csv", metadata={"rows": 1})
    assert ref.key == "runs/run-001/output.csv"
    assert ref.kind is ArtifactKind.FILE
    assert ref.digest == sha256(b"a,b\n1,2\n")
    assert ref.size_bytes == 8
    assert ref.uri == store.uri_for("runs/run-001/output.csv")
    assert ref.uri.endswith("/runs/run-001/output.csv")
    assert ref.created_at.tzinfo is not None and ref.created_at.utcoffset() == timezone.utc.utcoffset(None)
    assert ref.metadata == {"rows": 1}
    assert store.info("runs/run-001/output.csv") == ref
    assert ArtifactRef.from_json(ref.to_json()) == ref
    assert json.loads(ref.to_json())["kind"] == "file"


def test_get_file_roundtrip(store: BaseArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "data.bin"
    payload = os.urandom(3 * 1024 * 1024 + 17)
    src.write_bytes(payload)
    store.put(src, "d/data.bin")
    out = store.get("d/data.bin", tmp_path / "out" / "copy.bin")
    assert out == tmp_path / "out" / "copy.bin"
    assert out.read_bytes() == payload
    # Into a folder, said with a trailing slash: named after the key's last segment.
    into = store.get("d/data.bin", f"{tmp_path / 'out'}/")
    assert into == tmp_path / "out" / "data.bin" and into.read_bytes() == payload
    assert store.get_bytes("d/data.bin") == payload
    with store.open("d/data.bin") as f:
        assert f.read(10) == payload[:10]
        assert f.read() == payload[10:]


def test_put_bytes_is_a_blob(store: BaseArtifactStore) -> None:
    ref = store.put_bytes(b"hello", "notes/hello.txt", metadata={"lang": "en"})
    assert ref.kind is ArtifactKind.BLOB and ref.size_bytes == 5 and ref.digest == sha256(b"hello")
    assert store.get_bytes("notes/hello.txt") == b"hello"
    empty = store.put_bytes(b"", "notes/empty")
    assert empty.size_bytes == 0 and store.get_bytes("notes/empty") == b""


def test_overwrite_replaces_and_get_sees_new_version(store: BaseArtifactStore, tmp_path: Path) -> None:
    store.put_bytes(b"v1", "k")
    ref2 = store.put_bytes(b"version two", "k")
    assert store.get_bytes("k") == b"version two"
    assert store.info("k") == ref2
    assert store.list_artifacts() == ["k"]


def test_unchanged_put_transfers_nothing(store: BaseArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(100_000))
    first = store.put(src, "f.bin")
    cb = CountingCallback()
    again = store.put(src, "f.bin", callback=cb)
    assert cb.moved == 0
    assert again == first
    changed_meta = store.put(src, "f.bin", metadata={"note": "x"}, callback=cb)
    assert cb.moved == 0 and changed_meta.metadata == {"note": "x"} and changed_meta.digest == first.digest
    assert store.info("f.bin").metadata == {"note": "x"}


# ---------------------------------------------------------------- directories


@pytest.mark.parametrize("pack", [False, True], ids=["unpacked", "packed"])
def test_directory_roundtrip(store: BaseArtifactStore, tree: Path, tmp_path: Path, pack: bool) -> None:
    ref = store.put(tree, "runs/r1/tree", pack=pack)
    assert ref.kind is ArtifactKind.DIR
    assert ref.digest == TREE_DIGEST  # equal trees, equal digests: every backend, every layout
    assert ref.size_bytes == sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
    out = store.get("runs/r1/tree", tmp_path / "restored")
    assert listing(out) == listing(tree)
    assert (out / "empty").is_dir() and (out / "sub" / "empty-too").is_dir()
    with store.open("runs/r1/tree", member="sub/deeper/c.csv") as f:
        assert f.read() == b"x,y\n1,2\n"
    with store.open("runs/r1/tree", member="ünïcødé –名前.txt") as f:
        assert f.read() == b"unicode\n"
    assert [e.path for e in store.tree("runs/r1/tree") if e.type == "dir"] == [
        "empty",
        "sub",
        "sub/deeper",
        "sub/empty-too",
    ]
    assert store.verify("runs/r1/tree") == ref


def _entries(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def test_get_never_removes_or_replaces_local_files_unless_asked(
    store: BaseArtifactStore, tree: Path, tmp_path: Path
) -> None:
    """Issue 13: a get onto existing paths refuses, merges or replaces only as the call says."""
    store.put(tree, "t")
    src = tmp_path / "one.txt"
    src.write_text("artifact bytes")
    store.put(src, "f/one.txt")
    work = tmp_path / "work"
    dest = work / "dest"
    dest.mkdir(parents=True)
    (dest / "keep.txt").write_text("keep")
    (work / "plain.txt").write_text("user's file")

    with pytest.raises(DestinationExistsError, match="merge=True"):
        store.get("t", dest)  # a directory onto a non-empty folder
    with pytest.raises(DestinationExistsError, match="already exists"):
        store.get("t", work / "plain.txt")  # a directory onto a file
    with pytest.raises(DestinationExistsError, match="end the destination with '/'"):
        store.get("f/one.txt", dest)  # a file onto a folder
    with pytest.raises(DestinationExistsError, match="already exists"):
        store.get("f/one.txt", work / "plain.txt")  # a file onto another file
    with pytest.raises(DestinationExistsError, match="is a file, not a folder"):
        store.get("f/one.txt", work / "plain.txt" / "inner")
    # Refused before anything moved: the user's files are as they were, and no temporary is left.
    assert _entries(work) == ["dest", "dest/keep.txt", "plain.txt"]
    assert (work / "plain.txt").read_text() == "user's file"

    # The same bytes already there: nothing to do, and no error.
    (work / "same.txt").write_text("artifact bytes")
    assert store.get("f/one.txt", work / "same.txt") == work / "same.txt"
    # An empty folder is filled; a trailing slash puts an artifact inside a folder.
    (work / "empty").mkdir()
    store.get("t", work / "empty")
    assert listing(work / "empty") == listing(tree)
    assert store.get("f/one.txt", f"{dest}/") == dest / "one.txt"

    # --merge adds the artifact's files and keeps the others; a file that differs needs overwrite too.
    store.get("t", dest, merge=True)
    assert (dest / "keep.txt").read_text() == "keep"
    assert set(_entries(tree)) <= set(_entries(dest))
    member = next(p for p in tree.rglob("*") if p.is_file())
    changed = dest / member.relative_to(tree)
    changed.write_bytes(b"edited by the user")
    with pytest.raises(DestinationExistsError, match="differs"):
        store.get("t", dest, merge=True)
    assert changed.read_bytes() == b"edited by the user"
    store.get("t", dest, merge=True, overwrite=True)
    assert changed.read_bytes() == member.read_bytes() and (dest / "keep.txt").exists()

    # overwrite replaces whatever is there, whole.
    store.get("t", dest, overwrite=True)
    assert listing(dest) == listing(tree)
    store.get("t", work / "plain.txt", overwrite=True)
    assert listing(work / "plain.txt") == listing(tree)
    store.get("f/one.txt", dest, overwrite=True)
    assert dest.read_text() == "artifact bytes"
    assert not [p for p in work.iterdir() if p.name.startswith(".")]  # no .part or .old left


def test_tree_digest_follows_documented_encoding(tree: Path) -> None:
    # Recompute TREE_DIGEST from the documented rules, independently of the library.
    entries = []
    for p in tree.rglob("*"):
        rel = p.relative_to(tree).as_posix()
        if p.is_dir():
            entries.append({"path": rel, "type": "dir"})
        else:
            data = p.read_bytes()
            entries.append({"path": rel, "type": "file", "digest": sha256(data), "size": len(data)})
    entries.sort(key=lambda e: e["path"])
    doc = {"format": "scalable.tree/1", "entries": entries}
    encoded = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert sha256(encoded) == TREE_DIGEST


def test_directory_member_errors(store: BaseArtifactStore, tree: Path) -> None:
    store.put(tree, "t", pack=True)
    with pytest.raises(ArtifactKindError, match="is a directory"):
        store.open("t")
    with pytest.raises(ArtifactKindError, match="directory"):
        store.get_bytes("t")
    with pytest.raises(ArtifactNotFoundError, match="no file 'nope.txt'"):
        store.open("t", member="nope.txt")


def test_unchanged_directory_put_transfers_nothing(store: BaseArtifactStore, tree: Path) -> None:
    first = store.put(tree, "t")
    cb = CountingCallback()
    assert store.put(tree, "t", callback=cb) == first
    assert cb.moved == 0
    (tree / "a.txt").write_bytes(b"changed\n")
    changed = store.put(tree, "t")
    assert changed.digest != first.digest
    assert store.open("t", member="a.txt").read() == b"changed\n"


# ---------------------------------------------------------------- listing and deletion


def test_list_exists_iter_refs_and_prefixes(store: BaseArtifactStore) -> None:
    keys = ["runs/run-001/a.txt", "runs/run-001/b/c.txt", "runs/run-0010/x", "runs/run-002/y", "top"]
    for k in reversed(keys):
        store.put_bytes(k.encode(), k)
    assert store.list_artifacts() == sorted(keys)
    assert store.list_artifacts("runs/run-001/") == ["runs/run-001/a.txt", "runs/run-001/b/c.txt"]
    assert store.list_artifacts("runs/run-001") == ["runs/run-001/a.txt", "runs/run-001/b/c.txt", "runs/run-0010/x"]
    assert store.list_artifacts("nothing/") == []
    assert store.exists("top") and not store.exists("runs") and not store.exists("runs/run-001/b")
    refs = list(store.iter_refs("runs/"))
    assert [r.key for r in refs] == sorted(keys)[:-1]
    assert all(r.digest == sha256(r.key.encode()) for r in refs)


def test_delete(store: BaseArtifactStore) -> None:
    store.put_bytes(b"x", "a/b")
    store.put_bytes(b"y", "a/c")
    store.delete("a/b")
    assert not store.exists("a/b") and store.list_artifacts() == ["a/c"]
    with pytest.raises(ArtifactNotFoundError, match="'a/b'"):
        store.delete("a/b")
    with pytest.raises(ArtifactNotFoundError, match="'a/b'"):
        store.get_bytes("a/b")
    store.delete("a/c")
    assert store.list_artifacts() == []
    store.put_bytes(b"now a file", "a")  # the emptied folder does not block a new key
    assert store.get_bytes("a") == b"now a file"


def test_artifacts_cannot_nest(store: BaseArtifactStore) -> None:
    store.put_bytes(b"x", "a/b")
    with pytest.raises(KeyConflictError, match="'a/b' is already an artifact"):
        store.put_bytes(b"y", "a/b/c")
    with pytest.raises(KeyConflictError, match="artifacts already exist under 'a/'"):
        store.put_bytes(b"y", "a")
    assert store.list_artifacts() == ["a/b"]


def test_missing_key_errors_name_the_key(store: BaseArtifactStore, tmp_path: Path) -> None:
    for call in (
        lambda: store.info("no/such"),
        lambda: store.get("no/such", tmp_path / "x"),
        lambda: store.open("no/such"),
        lambda: store.verify("no/such"),
        lambda: store.load("no/such"),
    ):
        with pytest.raises(ArtifactNotFoundError, match="'no/such'"):
            call()
    assert not (tmp_path / "x").exists()


def test_missing_source_path(store: BaseArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(ArtifactNotFoundError, match="does not exist"):
        store.put(tmp_path / "nope.csv", "k")
    with pytest.raises(FileNotFoundError):  # also a builtin FileNotFoundError
        store.put(tmp_path / "nope.csv", "k")
    assert store.list_artifacts() == []


def test_kind_mismatch(store: BaseArtifactStore, tree: Path) -> None:
    with pytest.raises(ArtifactKindError, match="is a directory"):
        store.put(tree, "k", kind="file")
    with pytest.raises(ArtifactKindError, match="is a file"):
        store.put(tree / "a.txt", "k", kind="dir")
    assert store.put(tree / "a.txt", "k", kind="blob").kind is ArtifactKind.BLOB
    assert store.list_artifacts() == ["k"]


BAD_KEYS = [
    "",
    "/abs/path",
    "../escape",
    "a/../../b",
    "a/./b",
    "a//b",
    "trailing/",
    "back\\slash",
    "ctl\x00char",
    "new\nline",
    "tab\there",
    ".scalable/refs/x",
    "a/.scalable/1",
    "a/.scalable",
    ".",
    "..",
]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_rejected_before_io(
    store: BaseArtifactStore, tmp_path: Path, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"x")

    def no_io(*args: object, **kwargs: object) -> None:
        raise AssertionError("I/O was attempted for an invalid key")

    for primitive in ("_open_write", "_open_read", "_exists", "_remove", "_list_files", "_read_bytes", "_write_bytes"):
        monkeypatch.setattr(store, primitive, no_io)
    for call in (
        lambda: store.put(src, key),
        lambda: store.put_bytes(b"x", key),
        lambda: store.get(key, tmp_path / "o"),
        lambda: store.get_bytes(key),
        lambda: store.open(key),
        lambda: store.exists(key),
        lambda: store.info(key),
        lambda: store.delete(key),
        lambda: store.verify(key),
        lambda: store.uri_for(key),
        lambda: store.save(key, 1),
    ):
        with pytest.raises(InvalidKeyError) as info:
            call()
        assert repr(key) in str(info.value) and "relative POSIX path" in str(info.value)
        assert isinstance(info.value, ValueError)


# ---------------------------------------------------------------- integrity


def test_tampered_file_is_refused_everywhere(store: BaseArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "f.txt"
    src.write_bytes(b"the real content")
    store.put(src, "f.txt")
    tamper(store, "f.txt", data=b"the fake content")  # same size, different bytes
    with pytest.raises(IntegrityError, match="'f.txt'"):
        store.get("f.txt", tmp_path / "out.txt")
    assert not (tmp_path / "out.txt").exists() and not list(tmp_path.glob(".out.txt*"))
    with pytest.raises(IntegrityError, match="'f.txt'"):
        store.get_bytes("f.txt")
    with pytest.raises(IntegrityError, match="'f.txt'"):
        store.open("f.txt").read()
    with pytest.raises(IntegrityError, match="'f.txt'"):
        store.verify("f.txt")
    assert store.get_bytes("f.txt", verify=False) == b"the fake content"  # asked for explicitly


def test_truncated_file_is_refused(store: BaseArtifactStore) -> None:
    store.put_bytes(b"0123456789", "k")
    tamper(store, "k", data=b"01234")
    with pytest.raises(IntegrityError, match="'k'"):
        store.get_bytes("k")
    with pytest.raises(IntegrityError, match="truncated"):
        store.open("k").read()


@pytest.mark.parametrize("pack", [False, True], ids=["unpacked", "packed"])
def test_tampered_directory_member_is_refused(store: BaseArtifactStore, tree: Path, tmp_path: Path, pack: bool) -> None:
    store.put(tree, "t", pack=pack)
    record = store._read_record("t")
    assert record is not None
    if pack:
        data = bytearray(store._read_bytes(record.object))
        data[0] ^= 0xFF
        store._write_bytes(bytes(data), record.object)
    else:
        tamper(store, "t", member="sub/b.bin", data=b"\x00" * 1024)
    with pytest.raises(IntegrityError, match="'t'"):
        store.get("t", tmp_path / "restored")
    assert not (tmp_path / "restored").exists()
    with pytest.raises(IntegrityError, match="'t'"):
        store.verify("t")


def test_damaged_ref_record(store: BaseArtifactStore) -> None:
    store.put_bytes(b"x", "k")
    store._write_bytes(b'{"format": "scalable.ref/1", "ref": {"key": "k"', f"{REFS}/k")
    with pytest.raises(IntegrityError, match="ref record of artifact 'k'.*damaged"):
        store.info("k")


def test_missing_bytes_with_committed_ref(store: BaseArtifactStore) -> None:
    store.put_bytes(b"x", "k")
    record = store._read_record("k")
    assert record is not None
    store._remove(record.object)
    with pytest.raises(IntegrityError, match="bytes of artifact 'k'.*missing"):
        store.get_bytes("k")


# ---------------------------------------------------------------- crashes


class Crash(BaseException):
    """Stands for the process dying: nothing after it runs, and no cleanup either."""


def crash_before_ref(store: BaseArtifactStore, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = store._write_bytes

    def write(data: bytes, rel: str) -> None:
        if rel.startswith(REFS + "/"):
            raise Crash()
        real_write(data, rel)

    real_create = store._create_exclusive

    def create(data: bytes, rel: str) -> bool:
        if rel.startswith(VERSIONS + "/"):
            raise Crash()
        return real_create(data, rel)

    monkeypatch.setattr(store, "_write_bytes", write)
    monkeypatch.setattr(store, "_create_exclusive", create)
    monkeypatch.setattr(store, "_remove_quietly", lambda *a, **k: None)  # a dead process cleans nothing


@pytest.mark.parametrize("what", ["file", "dir", "packed", "bytes"])
def test_crash_after_bytes_before_ref(
    store_factory, tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, what: str
) -> None:
    store = store_factory()
    src = tmp_path / "f.bin"
    src.write_bytes(b"new content")

    def put(s: BaseArtifactStore) -> ArtifactRef:
        if what == "file":
            return s.put(src, "k")
        if what == "bytes":
            return s.put_bytes(b"new content", "k")
        return s.put(tree, "k", pack=what == "packed")

    # New key: the key stays absent.
    with monkeypatch.context() as m:
        crash_before_ref(store, m)
        with pytest.raises(Crash):
            put(store)
    assert not store.exists("k") and store.list_artifacts() == []

    # Existing key: the old version stays whole and verifies.
    old = store.put_bytes(b"old version", "k")
    with monkeypatch.context() as m:
        crash_before_ref(store, m)
        with pytest.raises(Crash):
            put(store)
    assert store.info("k") == old
    assert store.get_bytes("k") == b"old version"
    assert store.verify("k") == old
    # And the next put succeeds.
    assert put(store).key == "k"
    store.verify("k")


def test_failed_upload_commits_nothing(
    store: BaseArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(50_000))

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(store, "_write_file", broken)
    monkeypatch.setattr(store, "_ingest_file", broken)
    with pytest.raises(OSError, match="disk on fire"):
        store.put(src, "k")
    assert not store.exists("k")


# ---------------------------------------------------------------- save / load


@pytest.mark.parametrize(
    "key, value",
    [
        ("rec.json", {"a": [1, 2.5, None, "x"], "b": {"nested": True}}),
        ("events.jsonl", [{"i": 1}, {"i": 2}]),
        ("obj.pkl", {"set": {1, 2}, "tuple": (1, "a")}),
        ("obj.p", [1, 2, 3]),
        ("notes.txt", "plain text ünicode"),
        ("no-extension", "text too"),
    ],
)
def test_save_load_by_extension(store: BaseArtifactStore, key: str, value: object) -> None:
    ref = store.save(key, value)
    assert ref.kind is ArtifactKind.BLOB
    assert store.load(key) == value


def test_save_load_numpy(store: BaseArtifactStore) -> None:
    np = pytest.importorskip("numpy")
    arr = np.arange(12, dtype="float32").reshape(3, 4)
    store.save("arr.npy", arr)
    loaded = store.load("arr.npy")
    assert loaded.dtype == arr.dtype and (loaded == arr).all()


def test_store_pickles(store: BaseArtifactStore) -> None:
    import pickle

    store.put_bytes(b"x", "k")
    clone = pickle.loads(pickle.dumps(store))
    assert clone.uri == store.uri
    if not store.uri.startswith("memory://"):  # memory:// is per process
        assert clone.get_bytes("k") == b"x"


def test_make_tree_digest_is_pinned(tmp_path: Path) -> None:
    from scalable.artifacts.digests import DigestCache

    assert DigestCache().path_digest(make_tree(tmp_path / "t")) == TREE_DIGEST


# ---------------------------------------------------------------- objects by digest, dedup


def stored_objects(store: BaseArtifactStore) -> dict[str, int]:
    """Every digest-named object the store holds, with its size."""
    return {name: st.size for name, st in store._list_stats(SHA256_OBJECTS).items()}


def test_conditional_create_writes_once(store: BaseArtifactStore) -> None:
    assert store._create_exclusive(b"first", ".scalable/test/x") is True
    assert store._create_exclusive(b"second", ".scalable/test/x") is False
    assert store._read_bytes(".scalable/test/x") == b"first"


def test_objects_are_named_by_their_digest(store: BaseArtifactStore, tree: Path) -> None:
    ref = store.put_bytes(b"hello", "k")
    assert store._read_bytes(object_path(ref.digest)) == b"hello"
    dref = store.put(tree, "d")
    for entry in store.tree("d"):
        if entry.type == "file":
            assert entry.digest is not None
            assert sha256(store._read_bytes(object_path(entry.digest))) == entry.digest
    assert sha256(store._read_bytes(object_path(dref.digest))) == dref.digest  # the tree manifest
    assert store._read_bytes(STORE_JSON).startswith(b"{") and b"scalable.store/3" in store._read_bytes(STORE_JSON)


def test_same_content_is_stored_once_across_keys_and_versions(store: BaseArtifactStore, tmp_path: Path) -> None:
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(os.urandom(300_000))
    b.write_bytes(os.urandom(200_000))
    first = CountingCallback()
    store.put(a, "one", callback=first)
    assert first.moved == 300_000
    for key in ("two", "three/deep"):
        moved = CountingCallback()
        store.put(a, key, callback=moved)
        assert moved.moved == 0  # one existence check, no upload
    store.put(b, "one")
    again = CountingCallback()
    store.put(a, "one", callback=again)  # back to the first content: a new version, no bytes
    assert again.moved == 0
    assert sorted(stored_objects(store).values()) == [200_000, 300_000]
    assert [r.version for r in store.versions("one")] == [1, 2, 3]
    assert store.get_bytes("three/deep") == a.read_bytes()


def test_metadata_only_change_copies_nothing(store: BaseArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(100_000))
    v1 = store.put(src, "k", metadata={"run": 1})
    before = stored_objects(store)
    moved = CountingCallback()
    v2 = store.put(src, "k", metadata={"run": 2}, callback=moved)
    assert moved.moved == 0 and stored_objects(store) == before
    assert (v1.version, v2.version) == (1, 2) and v2.digest == v1.digest
    assert store.info("k").metadata == {"run": 2}
    assert store.info("k", version=1).metadata == {"run": 1}
    same = store.put(src, "k", metadata={"run": 2})  # nothing changed: no new version
    assert same == v2


@pytest.mark.parametrize("pack", [False, True], ids=["unpacked", "packed"])
def test_directory_reput_uploads_only_changed_members(store: BaseArtifactStore, tree: Path, pack: bool) -> None:
    store.put(tree, "d1", pack=pack)
    copy = CountingCallback()
    store.put(tree, "d2", pack=pack, callback=copy)
    assert copy.moved == 0
    (tree / "a.txt").write_bytes(b"changed!")
    changed = CountingCallback()
    ref = store.put(tree, "d1", pack=pack, callback=changed)
    if pack:
        assert changed.moved == ref.size_bytes  # a pack is one object: written whole once per tree
    else:
        assert changed.moved == len(b"changed!")
    assert store.info("d1").version == 2


# ---------------------------------------------------------------- versions


def test_history_and_reads_of_old_versions(store: BaseArtifactStore, tree: Path, tmp_path: Path) -> None:
    refs = [store.put_bytes(f"content {i}".encode(), "k", metadata={"i": i}) for i in range(3)]
    assert [r.version for r in refs] == [1, 2, 3]
    history = store.versions("k")
    assert [r.version for r in history] == [1, 2, 3]
    assert [r.digest for r in history] == [r.digest for r in refs]
    assert store.info("k") == refs[-1]
    assert store.get_bytes("k", version=1) == b"content 0"
    assert store.info("k", version=2).metadata == {"i": 1}
    with store.open("k", version=2) as f:
        assert f.read() == b"content 1"
    store.get("k", tmp_path / "v1.bin", version=1)
    assert (tmp_path / "v1.bin").read_bytes() == b"content 0"
    prefix = refs[0].digest[: len("sha256:") + 8]
    assert store.get_bytes("k", version=prefix) == b"content 0"
    assert store.verify("k", version=1) == refs[0]
    store.save("v.json", {"a": 1})
    store.save("v.json", {"a": 2})
    assert store.load("v.json", version=1) == {"a": 1}


def test_unknown_versions_name_the_versions_that_exist(store: BaseArtifactStore) -> None:
    store.put_bytes(b"a", "k")
    store.put_bytes(b"b", "k")
    with pytest.raises(ArtifactNotFoundError, match=r"no version 7.*versions are: 1 \(sha256:.*\), 2"):
        store.get_bytes("k", version=7)
    with pytest.raises(ArtifactNotFoundError, match="no a version with digest sha256:ffffffffff"):
        store.info("k", version="sha256:ffffffffff")
    with pytest.raises(ArtifactNotFoundError, match="no artifact at key 'nope'"):
        store.versions("nope")


def test_ambiguous_digest_prefix_lists_candidates(store: BaseArtifactStore) -> None:
    for i in range(40):  # 40 contents: two share a first hex digit for sure
        store.put_bytes(f"c{i}".encode(), "k")
    digests = [r.digest for r in store.versions("k")]
    first = [d[len("sha256:")] for d in digests]
    shared = next(c for c in first if first.count(c) > 1)
    with pytest.raises(AmbiguousVersionError, match="matches .* contents of 'k'"):
        store.info("k", version=f"sha256:{shared}")


def test_restore_makes_a_new_version_without_copying(store: BaseArtifactStore) -> None:
    store.put_bytes(b"old", "k")
    store.put_bytes(b"new", "k")
    before = stored_objects(store)
    ref = store.restore("k", version=1)
    assert ref.version == 3 and store.get_bytes("k") == b"old"
    assert stored_objects(store) == before
    assert [r.version for r in store.versions("k")] == [1, 2, 3]


def test_delete_hides_history_and_numbers_keep_growing(store: BaseArtifactStore) -> None:
    store.put_bytes(b"a", "k")
    store.put_bytes(b"b", "k")
    store.delete("k")
    assert not store.exists("k") and store.list_artifacts() == []
    with pytest.raises(ArtifactNotFoundError):
        store.versions("k")
    with pytest.raises(ArtifactNotFoundError):
        store.get_bytes("k", version=1)
    ref = store.put_bytes(b"c", "k")
    assert ref.version == 4  # 3 was the delete's tombstone
    assert [r.version for r in store.versions("k")] == [4]


def what_readers_see(store: BaseArtifactStore, key: str) -> dict[str, object]:
    """Every reader's answer about ``key``: exists, list, iter_refs, info, versions, iter_versions, old reads."""
    seen: dict[str, object] = {
        "exists": store.exists(key),
        "listed": key in store.list_artifacts(),
        "iter_refs": [r.version for r in store.iter_refs() if r.key == key],
        "iter_versions": [r.version for r in store.iter_versions() if r.key == key],
    }
    try:
        seen["info"] = store.info(key).version
    except ArtifactNotFoundError:
        seen["info"] = None
    try:
        seen["versions"] = [r.version for r in store.versions(key)]
    except ArtifactNotFoundError:
        seen["versions"] = None
    try:
        seen["version 1"] = store.get_bytes(key, version=1)
    except ArtifactNotFoundError:
        seen["version 1"] = None
    return seen


def assert_readers_agree(store: BaseArtifactStore, key: str, history: list[int] | None) -> None:
    """All readers say ``key`` has ``history`` (oldest first), or (``None``) that it does not exist."""
    seen = what_readers_see(store, key)
    if history is None:
        expected: dict[str, object] = {
            "exists": False, "listed": False, "iter_refs": [], "iter_versions": [],
            "info": None, "versions": None, "version 1": None,
        }  # fmt: skip
    else:
        expected = {
            "exists": True, "listed": True, "iter_refs": [history[-1]], "iter_versions": history,
            "info": history[-1], "versions": history, "version 1": seen["version 1"] if 1 in history else None,
        }  # fmt: skip
        assert (seen["version 1"] is not None) == (1 in history)
    assert seen == expected


@pytest.mark.parametrize("killed", ["before the tombstone", "after the tombstone", "after the head went"])
@pytest.mark.parametrize("then", ["delete", "put"])
def test_a_killed_delete_reads_the_same_everywhere_and_the_next_write_repairs_it(
    store: BaseArtifactStore, monkeypatch: pytest.MonkeyPatch, killed: str, then: str
) -> None:
    store.put_bytes(b"a", "k")
    store.put_bytes(b"b", "k")
    store.put_bytes(b"other", "k2")
    with monkeypatch.context() as m:
        real_create, real_remove = store._create_exclusive, store._remove
        if killed == "before the tombstone":

            def create(data: bytes, rel: str) -> bool:
                if rel.startswith(VERSIONS + "/"):
                    raise Crash()
                return real_create(data, rel)

            m.setattr(store, "_create_exclusive", create)
        elif killed == "after the tombstone":

            def remove(rel: str, *, recursive: bool = False) -> None:
                if rel.startswith(REFS + "/"):
                    raise Crash()
                real_remove(rel, recursive=recursive)

            m.setattr(store, "_remove", remove)
        else:
            m.setattr(store, "_republish_after", lambda *a: (_ for _ in ()).throw(Crash()))
        m.setattr(store, "_remove_quietly", lambda *a, **k: None)  # a dead process cleans nothing
        with pytest.raises(Crash):
            store.delete("k")
    deleted = killed == "after the head went"  # the head's removal is the delete's commit point
    assert_readers_agree(store, "k", None if deleted else [1, 2])
    assert_readers_agree(store, "k2", [1])
    if then == "delete":
        if deleted:
            with pytest.raises(ArtifactNotFoundError, match="no artifact at key 'k'"):
                store.delete("k")
        else:
            store.delete("k")
        assert_readers_agree(store, "k", None)
        ref = store.put_bytes(b"c", "k")
        assert_readers_agree(store, "k", [ref.version])
    else:
        ref = store.put_bytes(b"c", "k")
        # A tombstone on record ends the history before it: the put comes after the delete.
        assert_readers_agree(store, "k", [1, 2, 3] if killed == "before the tombstone" else [ref.version])
        assert ref.version == (3 if killed == "before the tombstone" else 4)
    assert store.get_bytes("k") == b"c"
    assert_readers_agree(store, "k2", [1])


@pytest.mark.parametrize("killed", ["after the tombstone", "after the head went"])
def test_gc_completes_a_delete_killed_after_its_commit_point(
    store: BaseArtifactStore, monkeypatch: pytest.MonkeyPatch, killed: str
) -> None:
    store.put_bytes(b"first", "k")
    store.put_bytes(b"second", "k")
    store.put_bytes(b"other", "k2")
    with monkeypatch.context() as m:
        if killed == "after the tombstone":
            real_remove = store._remove

            def remove(rel: str, *, recursive: bool = False) -> None:
                if rel.startswith(REFS + "/"):
                    raise Crash()
                real_remove(rel, recursive=recursive)

            m.setattr(store, "_remove", remove)
        else:
            m.setattr(store, "_republish_after", lambda *a: (_ for _ in ()).throw(Crash()))
        m.setattr(store, "_remove_quietly", lambda *a, **k: None)  # a dead process cleans nothing
        with pytest.raises(Crash):
            store.delete("k")
    records = {f"{VERSIONS}/k/.scalable/1", f"{VERSIONS}/k/.scalable/2"}
    assert records <= {f"{VERSIONS}/{n}" for n in store._list_files(VERSIONS)}

    report = store.gc(grace=0)

    if killed == "after the head went":  # deleted: its records are dead, their bytes go
        assert sorted(report.records) == sorted(records)
        assert sorted(report.objects) == sorted(object_path(sha256(d)) for d in (b"first", b"second"))
        assert not records & {f"{VERSIONS}/{n}" for n in store._list_files(VERSIONS)}
        assert_readers_agree(store, "k", None)
        assert store.put_bytes(b"third", "k").version == 4  # the tombstone keeps the numbers growing
    else:  # the head is still there: the key reads as before until a delete completes
        assert report.records == [] and report.objects == []
        assert_readers_agree(store, "k", [1, 2])
        assert store.get_bytes("k") == b"second"
    assert store.get_bytes("k2") == b"other"


def test_keep_versions_limits_history(store_factory, backend: str, tmp_path: Path) -> None:
    store = store_factory()
    store.keep_versions = 2
    for i in range(5):
        store.put_bytes(f"v{i}".encode(), "k")
    assert [r.version for r in store.versions("k")] == [4, 5]
    assert store.get_bytes("k") == b"v4"
    with pytest.raises(ArtifactNotFoundError, match="versions are: 4"):
        store.get_bytes("k", version=1)


def test_concurrent_commits_of_one_key_all_get_unique_versions(store: BaseArtifactStore) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def commit(i: int) -> int:
        ref = store.put_bytes(f"writer {i}".encode(), "shared")
        assert ref.version is not None
        return ref.version

    with ThreadPoolExecutor(8) as pool:
        numbers = list(pool.map(commit, range(16)))
    assert sorted(numbers) == list(range(1, 17))
    history = store.versions("shared")
    assert [r.version for r in history] == list(range(1, 17))
    assert {store.get_bytes("shared", version=r.version) for r in history} == {
        f"writer {i}".encode() for i in range(16)
    }
    assert store.info("shared").version == 16  # the head names the newest


# ---------------------------------------------------------------- gc


def test_gc_removes_only_what_no_version_needs(store: BaseArtifactStore, tree: Path, tmp_path: Path) -> None:
    store.put_bytes(b"kept", "a")
    store.put_bytes(b"history", "b")
    store.put_bytes(b"latest", "b")
    store.put(tree, "d")
    store.put(tree, "p", pack=True)
    store.put_bytes(b"deleted", "gone")
    store.delete("gone")
    orphan = sha256(b"orphan of a killed put")
    store._write_bytes(b"orphan of a killed put", object_path(orphan))
    before = stored_objects(store)

    report = store.gc(grace=3600)  # everything is young: nothing goes
    assert report.objects == [] and stored_objects(store) == before

    dry = store.gc(grace=0, dry_run=True)
    assert sorted(dry.objects) == sorted([object_path(orphan), object_path(sha256(b"deleted"))])
    assert stored_objects(store) == before

    done = store.gc(grace=0)
    assert sorted(done.objects) == sorted(dry.objects)
    assert done.object_bytes == len(b"orphan of a killed put") + len(b"deleted")
    assert store.get_bytes("b", version=1) == b"history"
    store.get("d", tmp_path / "d")
    assert listing(tmp_path / "d") == listing(tree)
    for key in ("a", "b", "d", "p"):
        store.verify(key)
    assert store.gc(grace=0).objects == []


def test_gc_keeps_objects_named_by_a_pending_put(store: BaseArtifactStore) -> None:
    rel = object_path(sha256(b"in flight"))
    store._write_bytes(b"in flight", rel)
    with store._pending([rel]):
        assert store.gc(grace=60).objects == []  # a fresh marker protects what the put relies on
        assert store._head(rel) is not None


def test_reader_keeps_its_version_through_overwrite_delete_and_gc(store: BaseArtifactStore) -> None:
    data = os.urandom(3 * 1024 * 1024)
    store.put_bytes(data, "k")
    with store.open("k") as f:
        head = f.read(1000)
        store.put_bytes(b"other", "k")
        store.delete("k")
        rest = f.read()
    assert head + rest == data


# ---------------------------------------------------------------- the old layout

FIXTURE_V1 = Path(__file__).parent / "fixtures" / "store_v1"


def copy_fixture_into(store: BaseArtifactStore) -> None:
    """Write the files of the store made by the release before content-addressed objects into ``store``."""
    for path in sorted(FIXTURE_V1.rglob("*")):
        if path.is_file():
            store._write_bytes(path.read_bytes(), path.relative_to(FIXTURE_V1).as_posix())


def test_an_old_layout_store_is_refused_then_migrated_without_loss(store: BaseArtifactStore, tmp_path: Path) -> None:
    from scalable import StoreLayoutError

    copy_fixture_into(store)
    with pytest.raises(StoreLayoutError, match="scalable migrate"):
        store.info("files/hello.txt")
    with pytest.raises(StoreLayoutError, match="scalable migrate"):
        store.put_bytes(b"new", "new")
    report = store.migrate()
    assert sorted(report.converted) == ["blob.bin", "dirs/packed", "dirs/unpacked", "files/hello.txt"]
    assert store.get_bytes("files/hello.txt") == b"hello, world\n"
    assert store.info("files/hello.txt").metadata == {"n": 1} and store.info("files/hello.txt").version == 1
    assert store.get_bytes("blob.bin") == b"\x00\x01blob"
    for key in ("dirs/packed", "dirs/unpacked"):
        assert store.verify(key).digest == "sha256:2bd82a9bcf2b741218111e630a19bfdf3caf3e6ee0bbc9e012a8c762a667fe84"
        out = store.get(key, tmp_path / key.replace("/", "-"))
        assert (out / "a.txt").read_bytes() == b"alpha\n" and (out / "sub" / "b.txt").read_bytes() == b"beta\n"
        assert (out / "empty").is_dir()
    assert [p for p in store._list_files(".scalable/objects") if not p.startswith("sha256/")] == []
    again = store.migrate()  # idempotent: a killed migration is resumed by running it again
    assert again.converted == [] and len(again.already) == 4
    assert store.put_bytes(b"new", "files/hello.txt").version == 2
    assert store.gc(grace=0).objects == []  # the migrated objects are all named by versions


# ---------------------------------------------------------------- layout 2 (version records not escaped)

FIXTURE_V2 = Path(__file__).parent / "fixtures" / "store_v2"
V2_KEYS = ["blob.bin", "dirs/packed", "dirs/unpacked", "files/hello.txt", "gone/1", "history/k"]


def copy_v2_fixture_into(store: BaseArtifactStore) -> None:
    """Write the files of the layout-2 store made by ``tests/fixtures/make_store_v2.py`` into ``store``."""
    for path in sorted(FIXTURE_V2.rglob("*")):
        if path.is_file():
            store._write_bytes(path.read_bytes(), path.relative_to(FIXTURE_V2).as_posix())


def assert_reads_the_v2_fixture(store: BaseArtifactStore, tmp_path: Path) -> None:
    """Everything the layout-2 fixture holds, read through the public API."""
    assert store.list_artifacts() == V2_KEYS
    assert store.get_bytes("files/hello.txt") == b"hello, world\n"
    assert store.info("files/hello.txt").metadata == {"n": 1}
    assert store.get_bytes("blob.bin") == b"\x00\x01blob"
    assert [r.version for r in store.versions("history/k")] == [1, 2]
    assert store.get_bytes("history/k", version=1) == b"first\n"
    assert store.get_bytes("history/k") == b"second\n" and store.info("history/k", version=2).metadata == {"note": "v2"}
    assert not store.exists("gone")
    with pytest.raises(ArtifactNotFoundError, match="no artifact at key 'gone'"):
        store.versions("gone")
    assert store.get_bytes("gone/1") == b"under a deleted key\n"
    assert [r.version for r in store.versions("gone/1")] == [1]
    for key in ("dirs/packed", "dirs/unpacked"):
        assert store.verify(key).digest == "sha256:2bd82a9bcf2b741218111e630a19bfdf3caf3e6ee0bbc9e012a8c762a667fe84"
        out = store.get(key, tmp_path / f"{uuid.uuid4().hex}", overwrite=True)
        assert (out / "a.txt").read_bytes() == b"alpha\n" and (out / "sub" / "b.txt").read_bytes() == b"beta\n"
        assert (out / "empty").is_dir()
    assert [(r.key, r.version) for r in store.iter_versions()] == [
        (k, n) for k in V2_KEYS for n in ([1, 2] if k == "history/k" else [1])
    ]


def test_a_layout_2_store_is_read_as_it_is_refused_for_writes_then_migrated(
    store: BaseArtifactStore, tmp_path: Path
) -> None:
    from scalable import StoreLayoutError

    copy_v2_fixture_into(store)
    assert_reads_the_v2_fixture(store, tmp_path)
    reader = pickle.loads(pickle.dumps(store))  # a reader that saw layout 2 and keeps reading
    lister = pickle.loads(pickle.dumps(store))  # another, whose next read after the migration lists every version
    listed = [(r.key, r.version) for r in store.iter_versions()]
    before = {name: store._read_bytes(f".scalable/{name}") for name in store._list_files(".scalable")}
    for write in (
        lambda: store.put_bytes(b"new", "new"),
        lambda: store.put_bytes(b"third\n", "history/k"),
        lambda: store.delete("history/k"),
        lambda: store.restore("history/k", version=1),
        lambda: store.gc(grace=0),
    ):
        with pytest.raises(StoreLayoutError, match=r"layout scalable.store/2 .*scalable migrate"):
            write()
    assert {name: store._read_bytes(f".scalable/{name}") for name in store._list_files(".scalable")} == before

    report = store.migrate()
    assert report.layout_from == "scalable.store/2" and report.records_moved == 8
    assert report.converted == sorted([*V2_KEYS, "gone"])  # gone: its tombstone
    assert json.loads(store._read_bytes(STORE_JSON))["format"] == "scalable.store/3"
    names = store._list_files(VERSIONS)
    assert names and all("/.scalable/" in f"/{name}" for name in names)  # no layout-2 name is left
    assert_reads_the_v2_fixture(store, tmp_path)
    assert_reads_the_v2_fixture(reader, tmp_path)  # it notices the records moved
    assert [(r.key, r.version) for r in lister.iter_versions()] == listed
    again = store.migrate()
    assert again.converted == [] and again.records_moved == 0 and again.already == V2_KEYS
    assert again.summary().startswith("nothing to convert: the store is in layout scalable.store/3 (6 artifacts)")

    assert store.gc(grace=0).objects == [object_path(sha256(b"deleted\n"))]  # only the deleted key's bytes
    assert store.put_bytes(b"third\n", "history/k").version == 3
    assert [r.version for r in store.versions("history/k")] == [1, 2, 3]
    store.delete("gone/1")
    assert store.put_bytes(b"a key again", "gone").version == 3  # after its tombstone 2
    assert store.list_artifacts() == sorted({*V2_KEYS, "gone"} - {"gone/1"})


def test_a_killed_layout_2_migration_reads_correctly_at_every_step_and_resumes(
    store_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    step = 0
    while True:  # kill the migration at its first write, then its second, ... until it completes
        store = store_factory()
        copy_v2_fixture_into(store)
        store.max_concurrency = 1  # one write at a time: the kill lands between two of them
        done = 0
        with monkeypatch.context() as m:
            for name in ("_write_bytes", "_create_exclusive", "_remove"):
                real = getattr(store, name)

                def killing(*args: object, _real: object = real, _step: int = step, **kwargs: object) -> object:
                    nonlocal done
                    if done == _step:
                        raise Crash()
                    done += 1
                    return _real(*args, **kwargs)  # type: ignore[operator]

                m.setattr(store, name, killing)
            try:
                store.migrate()
                finished = True
            except Crash:
                finished = False
        fresh = pickle.loads(pickle.dumps(store))
        fresh._records_layout_seen = None
        assert_reads_the_v2_fixture(fresh, tmp_path)  # at every step, as if nothing happened
        fresh.migrate()
        assert_reads_the_v2_fixture(fresh, tmp_path)
        assert all("/.scalable/" in f"/{name}" for name in fresh._list_files(VERSIONS))
        assert fresh.put_bytes(b"third\n", "history/k").version == 3
        if finished:
            break
        step += 1
    assert step >= 10  # two writes of store.json, eight records moved, their old names removed


def test_a_layout_2_key_with_the_reserved_segment_stops_the_migration_before_it_changes_anything(
    store: BaseArtifactStore, tmp_path: Path
) -> None:
    from scalable import StoreLayoutError

    copy_v2_fixture_into(store)
    record = store._read_bytes(".scalable/versions/blob.bin/1")  # any layout-2 record will do as the key's
    store._write_bytes(record, ".scalable/versions/x/.scalable/1")  # what layout 2 wrote for a key 'x/.scalable'
    before = {name: store._read_bytes(f".scalable/{name}") for name in store._list_files(".scalable")}
    with pytest.raises(StoreLayoutError, match=r"versions/x/.scalable/1 belongs to a key with a '.scalable' segment"):
        store.migrate()
    assert {name: store._read_bytes(f".scalable/{name}") for name in store._list_files(".scalable")} == before


def test_a_layout_2_store_syncs_out_as_it_is_and_refuses_to_be_synced_into(
    store: BaseArtifactStore, tmp_path: Path
) -> None:
    from scalable import StoreLayoutError, build_artifact_store
    from scalable.artifacts.replicate import copy_artifact, sync

    copy_v2_fixture_into(store)
    out = build_artifact_store(tmp_path / "out")
    sync(store, out, versions="all")  # type: ignore[arg-type]
    assert_reads_the_v2_fixture(out, tmp_path)  # type: ignore[arg-type]
    again = build_artifact_store(tmp_path / "again")
    assert copy_artifact(store, "history/k", again, versions="all").version == 2  # type: ignore[arg-type]
    assert [r.version for r in again.versions("history/k")] == [1, 2]  # type: ignore[attr-defined]
    with pytest.raises(StoreLayoutError, match="scalable migrate"):
        sync(out, store)  # type: ignore[arg-type]
