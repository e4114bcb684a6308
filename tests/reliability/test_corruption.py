"""Corruption: every way a stored artifact can be damaged is caught, with the key named.

For each backend (local, S3), each layout (file, unpacked directory, packed directory) and
each damage (a flipped byte, a truncated object, a deleted object with its ref intact, a
damaged ref record), ``get``, ``get_bytes``, ``open``, ``verify`` and ``scalable verify``
must all refuse: ``IntegrityError`` (a ``ScalableError``) naming the key, nothing at the
destination of a ``get``, and no clean end-of-file from ``open``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from scalable import IntegrityError, ScalableError
from scalable.artifacts.digests import digest_bytes, tree_manifest_bytes
from scalable.artifacts.layout import object_path
from scalable.artifacts.ref import ArtifactKind
from scalable.artifacts.store import Layout
from tests.conftest import make_tree
from tests.reliability._helpers_f import RawStore, make_raw, run_cli
from tests.reliability.conftest import trials

LAYOUTS = ["file", "tree", "packed"]
DAMAGES = ["flip", "truncate", "delete", "ref"]
#: The member of the test tree that directory damages hit.
MEMBER = "sub/b.bin"


def _put(raw: RawStore, layout: str, tmp_path: Path, key: str) -> bytes:
    """Put one artifact in ``layout``; return the bytes a damage targets (file or member)."""
    if layout == "file":
        data = random.Random(key).randbytes(300_000)
        src = tmp_path / "src.bin"
        src.write_bytes(data)
        raw.store.put(src, key)
        return data
    tree = make_tree(tmp_path / f"tree-{layout}")
    raw.store.put(tree, key, pack=layout == "packed")
    return (tree / MEMBER).read_bytes()


def _member_offset(raw: RawStore, key: str) -> int:
    files = [e for e in raw.store.tree(key) if e.type == "file"]
    return sum(e.size for e in files[: [e.path for e in files].index(MEMBER)])


def _damage(raw: RawStore, key: str, layout: str, damage: str, rng: random.Random) -> None:
    """Damage the stored artifact directly, around the store."""
    if damage == "ref":
        good = raw.read(f".scalable/refs/{key}")
        damaged = rng.choice([good[: len(good) // 2], b"\x00garbage", good.replace(b"{", b"[", 1)])
        raw.write(f".scalable/refs/{key}", damaged)
        return
    record = raw.record(key)
    start = 0
    if layout == "file":
        target = record.object
    elif layout == "tree":  # the member's own object, named by its digest
        [entry] = [e for e in raw.store.tree(key) if e.path == MEMBER]
        assert entry.digest is not None
        target = object_path(entry.digest)
    else:
        target, start = record.object, _member_offset(raw, key)
    data = raw.read(target)
    size = len(data) - start if layout != "packed" else 1024
    if damage == "delete":
        raw.remove(target)
    elif damage == "truncate":
        raw.write(target, data[: start + rng.randrange(size)])
    else:
        at = start + rng.randrange(size)
        raw.write(target, data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1 :])


def _assert_names_key(exc: BaseException, key: str) -> None:
    assert isinstance(exc, ScalableError), f"{type(exc).__name__} is not a ScalableError: {exc}"
    assert repr(key) in str(exc), f"the error does not name the key {key!r}: {exc}"


def _check_refused(raw: RawStore, key: str, layout: str, tmp_path: Path) -> None:
    store = raw.store
    expected = IntegrityError
    # get: refuses, and leaves nothing at the destination (nor a temporary file beside it).
    out = tmp_path / "out"
    out.mkdir()
    dest = out / "dest"
    with pytest.raises(expected) as info:
        store.get(key, dest)
    _assert_names_key(info.value, key)
    assert list(out.iterdir()) == [], f"get left {list(out.iterdir())} behind"
    if layout == "file":
        with pytest.raises(expected) as info:
            store.get_bytes(key)
        _assert_names_key(info.value, key)
    # open: the read that would end on bad bytes raises instead of returning end-of-file.
    member = None if layout == "file" else MEMBER
    with pytest.raises(expected) as info:
        with store.open(key, member=member) as f:
            f.read()
    _assert_names_key(info.value, key)
    with pytest.raises(expected):  # the same, read in small chunks
        with store.open(key, member=member) as f:
            while f.read(4096):
                pass
    # verify
    with pytest.raises(expected) as info:
        store.verify(key)
    _assert_names_key(info.value, key)


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("backend", ["local", "s3", "s3-fsspec"])
def test_damage_is_detected_by_every_read(
    request: pytest.FixtureRequest, backend: str, layout: str, damage: str, tmp_path: Path, tally: object
) -> None:
    n = trials(1, 10)
    failures = 0
    try:
        for i in range(n):
            work = tmp_path / f"t{i}"
            work.mkdir()
            raw = make_raw(request, backend, work)
            key = f"runs/r{i}/art-{layout}" + (".bin" if layout == "file" else "")
            _put(raw, layout, work, key)
            _damage(raw, key, layout, damage, random.Random(f"{backend}{layout}{damage}{i}"))
            _check_refused(raw, key, layout, work)
            # The other artifacts of the store are untouched by the damage and by the failed reads.
            raw.store.put_bytes(b"neighbour", "runs/neighbour")
            assert raw.store.get_bytes("runs/neighbour") == b"neighbour"
    except BaseException:
        failures = 1
        raise
    finally:
        tally.add("corruption", trials=n, failures=failures)  # type: ignore[attr-defined]


@pytest.mark.parametrize("backend", ["local", "s3", "s3-fsspec"])
def test_scalable_verify_lists_the_damaged_keys_and_exits_1(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    raw = make_raw(request, backend, tmp_path)
    keys = {}
    for layout, damage in zip([*LAYOUTS, "file"], DAMAGES, strict=True):
        key = f"bad/{layout}-{damage}"
        sub = tmp_path / key.replace("/", "_")
        sub.mkdir()
        _put(raw, layout, sub, key)
        _damage(raw, key, layout, damage, random.Random(key))
        keys[key] = damage
    raw.store.put_bytes(b"fine", "good/one")
    raw.store.put_bytes(b"fine too", "bad-not/fine")
    whole = run_cli(["verify", raw.cli_uri], env=raw.cli_env)
    assert whole.returncode == 1, whole.stdout + whole.stderr
    text = whole.stdout + whole.stderr
    for key in keys:
        assert key in text, f"scalable verify did not name {key}: {text}"
    assert "Traceback" not in text
    if backend == "local":  # STORE#PREFIX and STORE#KEY: parsing is the same for every backend
        good = run_cli(["verify", f"{raw.cli_uri}#good/"], env=raw.cli_env)
        assert good.returncode == 0, good.stdout + good.stderr
        one = run_cli(["verify", f"{raw.cli_uri}#bad/file-flip"], env=raw.cli_env)
        assert one.returncode == 1 and "bad/file-flip" in one.stdout + one.stderr


# --------------------------------------------------------------------------- forged records


def test_a_forged_ref_record_cannot_read_or_delete_outside_the_store(tmp_path: Path) -> None:
    """Regression: a ref record's object path was trusted; ``../`` in it reached outside the root.

    Records no longer hold paths (objects are named by digest), and a record with fields it
    should not have (an old-style ``object`` path) is refused as damaged.
    """
    raw = make_raw(None, "local", tmp_path)  # type: ignore[arg-type]
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_bytes(b"precious")
    raw.store.put_bytes(b"payload", "k")
    doc = json.loads(raw.read(".scalable/refs/k"))
    depth = len(Path(raw.store.uri.removeprefix("file://")).relative_to(tmp_path).parts)
    doc["object"] = ".scalable/objects/k/" + "../" * (3 + depth) + "outside/precious.txt"
    doc["ref"]["digest"] = digest_bytes(b"precious")
    doc["ref"]["size_bytes"] = 8
    raw.write(".scalable/refs/k", json.dumps(doc).encode())
    for call in (lambda: raw.store.get_bytes("k"), lambda: raw.store.verify("k"), lambda: raw.store.delete("k")):
        with pytest.raises(IntegrityError) as info:
            call()
        _assert_names_key(info.value, "k")
    assert (outside / "precious.txt").read_bytes() == b"precious"


def test_a_forged_tree_manifest_cannot_write_outside_the_destination(tmp_path: Path) -> None:
    """Regression: tree manifest paths were joined to the destination unchecked (``../x`` escaped it)."""
    raw = make_raw(None, "local", tmp_path)  # type: ignore[arg-type]
    src = tmp_path / "d"
    src.mkdir()
    (src / "a").write_bytes(b"A")
    raw.store.put(src, "dir")
    record = raw.record("dir")
    assert record.layout == Layout.TREE and record.ref.kind is ArtifactKind.DIR
    from scalable.artifacts.digests import TreeEntry

    manifest = tree_manifest_bytes([TreeEntry("../../escaped", "file", digest_bytes(b"A"), 1)])
    raw.write(object_path(digest_bytes(manifest)), manifest)  # a well-named object with a hostile path in it
    doc = json.loads(raw.read(".scalable/refs/dir"))
    doc["ref"]["digest"] = digest_bytes(manifest)
    raw.write(".scalable/refs/dir", json.dumps(doc).encode())
    dest_parent = tmp_path / "dest" / "inner"
    with pytest.raises(IntegrityError) as info:
        raw.store.get("dir", dest_parent / "out")
    _assert_names_key(info.value, "dir")
    assert not (tmp_path / "dest" / "escaped").exists() and not (tmp_path / "escaped").exists()
