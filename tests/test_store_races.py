"""Reads that race with overwrites: found by the reliability suite (8 processes on shared keys).

A read whose object is removed under it by a concurrent overwrite follows the new ref. Under
steady overwrites an S3 directory get lost that race four times in a row and the backend's
bare ``FileNotFoundError`` escaped (not a ``ScalableError``, and a wrong message). Now a read
follows up to ``read_attempts`` versions, then raises ``ArtifactChangingError``.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import pytest

from scalable import ArtifactChangingError, ScalableError
from scalable.artifacts.local import LocalArtifactStore
from scalable.artifacts.store import OBJECTS


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
