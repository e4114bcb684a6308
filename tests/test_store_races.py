"""Reads and puts that race with overwrites and deletes: found by the reliability suite.

A read whose object was removed under it by a concurrent overwrite used to follow the new
ref (and, losing that race too often, raise ``ArtifactChangingError``). Objects are now
named by their digest and removed only by gc after a grace period, so a read finishes with
the version it resolved, whatever overwrites or deletes follow.

Puts that race with overwrites and deletes: re-putting the same bytes with new metadata
used to point the new ref at an object a concurrent overwrite or delete removes. Now no
commit removes any object, so such a put commits a new version naming the same object.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO

import pytest

from scalable.artifacts.layout import REFS, SHA256_OBJECTS
from scalable.artifacts.local import LocalArtifactStore
from tests.conftest import TREE_DIGEST


class ChurningStore(LocalArtifactStore):
    """A store where another writer overwrites, then deletes, ``key`` just before each read of an object."""

    key = "k"
    overwrites_left = 0
    version = 0

    def _overwrite_first(self, rel: str) -> None:
        if rel.startswith(f"{SHA256_OBJECTS}/") and self.overwrites_left > 0:
            self.overwrites_left -= 1
            self.version += 1
            other = LocalArtifactStore(self.root)
            other.put_bytes(f"version {self.version}".encode(), self.key)
            other.delete(self.key)
            other.put_bytes(f"version {self.version}".encode(), self.key)

    def _open_read(self, rel: str) -> BinaryIO:
        self._overwrite_first(rel)
        return super()._open_read(rel)

    def _read_bytes(self, rel: str) -> bytes:
        self._overwrite_first(rel)
        return super()._read_bytes(rel)


@pytest.fixture
def churning(tmp_path: Path) -> ChurningStore:
    store = ChurningStore(tmp_path / "store")
    store.put_bytes(b"version 0", "k")
    return store


@pytest.mark.parametrize("read", ["get_bytes", "get", "verify", "open"])
def test_a_read_finishes_with_the_version_it_began_on(churning: ChurningStore, tmp_path: Path, read: str) -> None:
    churning.overwrites_left = 10**6
    calls = {
        "get_bytes": lambda: churning.get_bytes("k"),
        "get": lambda: churning.get("k", tmp_path / "out.bin").read_bytes(),
        "verify": lambda: churning.verify("k").digest,
        "open": lambda: churning.open("k").read(),
    }
    got = calls[read]()
    assert churning.version >= 1  # the key really was overwritten and deleted under the read
    expected = "sha256:" + hashlib.sha256(b"version 0").hexdigest() if read == "verify" else b"version 0"
    assert got == expected


class RacingStore(LocalArtifactStore):
    """A store where, just before this writer commits a ref, another writer acts on the same key."""

    race: str | None = None

    def _write_bytes(self, data: bytes, rel: str) -> None:
        race, self.race = self.race, None
        if race is not None and rel.startswith(REFS):
            other = LocalArtifactStore(self.root)  # another process's store object on the same root
            if race == "overwrite":
                other.put_bytes(b"the other writer's bytes", "k")
            else:
                other.delete("k")
        super()._write_bytes(data, rel)


@pytest.mark.parametrize("race", ["overwrite", "delete"])
def test_a_put_that_only_changes_metadata_never_commits_a_ref_to_removed_bytes(tmp_path: Path, race: str) -> None:
    """Re-putting the same bytes with new metadata used to point the new ref at the old object,
    which a concurrent overwrite or delete removes: a committed artifact without bytes."""
    store = RacingStore(tmp_path / "store")
    store.put_bytes(b"same bytes", "k", metadata={"n": 1})
    store.race = race
    ref = store.put_bytes(b"same bytes", "k", metadata={"n": 2})

    fresh = LocalArtifactStore(tmp_path / "store")
    assert fresh.info("k") == ref
    assert fresh.verify("k") == ref
    assert fresh.get_bytes("k") == b"same bytes"


@pytest.mark.parametrize("pack", [False, True])
def test_a_directory_re_put_with_new_metadata_keeps_its_bytes(tree: Path, tmp_path: Path, pack: bool) -> None:
    store = RacingStore(tmp_path / "store")
    first = store.put(tree, "k", pack=pack, metadata={"n": 1})
    store.race = "delete"
    ref = store.put(tree, "k", pack=pack, metadata={"n": 2})

    fresh = LocalArtifactStore(tmp_path / "store")
    assert ref.digest == first.digest == TREE_DIGEST and fresh.verify("k") == ref
    out = fresh.get("k", tmp_path / "out")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == sorted(
        p.relative_to(tree).as_posix() for p in tree.rglob("*")
    )
