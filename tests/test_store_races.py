"""Reads that race with overwrites: found by the reliability suite (8 processes on shared keys).

A read whose object is removed under it by a concurrent overwrite follows the new ref. Under
steady overwrites an S3 directory get lost that race four times in a row and the backend's
bare ``FileNotFoundError`` escaped (not a ``ScalableError``, and a wrong message). Now a read
follows up to ``read_attempts`` versions, then raises ``ArtifactChangingError``.

Puts that race with overwrites and deletes: re-putting the same bytes with new metadata
pointed the new ref at the previous put's object, which a concurrent overwrite or delete
removes, leaving a committed artifact without bytes. Now such a put copies the object to a
fresh path of its own (inside the store, still no bytes from the caller).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import pytest

from scalable import ArtifactChangingError, ScalableError
from scalable.artifacts.local import LocalArtifactStore
from scalable.artifacts.store import OBJECTS, REFS
from tests.conftest import TREE_DIGEST


class ChurningStore(LocalArtifactStore):
    """A store where another writer overwrites ``key`` just before each read of one of its objects."""

    key = "k"
    overwrites_left = 0
    version = 0

    def _overwrite_first(self, rel: str) -> None:
        if rel.startswith(f"{OBJECTS}/{self.key}/") and self.overwrites_left > 0:
            self.overwrites_left -= 1
            self.version += 1
            self.put_bytes(f"version {self.version}".encode(), self.key)  # removes the object about to be read

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


def test_a_read_follows_a_few_concurrent_overwrites_to_the_newest_version(
    churning: ChurningStore, tmp_path: Path
) -> None:
    churning.overwrites_left = churning.read_attempts - 1
    assert churning.get_bytes("k") == f"version {churning.read_attempts - 1}".encode()

    churning.overwrites_left = 3
    dest = churning.get("k", tmp_path / "out.bin")
    assert dest.read_bytes() == f"version {churning.read_attempts + 2}".encode()


@pytest.mark.parametrize("read", ["get_bytes", "get", "verify", "open"])
def test_a_read_that_keeps_losing_to_overwrites_raises_a_scalable_error(
    churning: ChurningStore, tmp_path: Path, read: str
) -> None:
    churning.overwrites_left = 10**6
    calls = {
        "get_bytes": lambda: churning.get_bytes("k"),
        "get": lambda: churning.get("k", tmp_path / "out.bin"),
        "verify": lambda: churning.verify("k"),
        "open": lambda: churning.open("k"),
    }
    with pytest.raises(ArtifactChangingError, match=r"'k' .* overwritten 10 times while it was read") as info:
        calls[read]()
    assert isinstance(info.value, ScalableError)
    assert not isinstance(info.value, FileNotFoundError)
    assert not (tmp_path / "out.bin").exists()


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
