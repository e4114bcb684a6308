"""Code written for JGCRI scalable 2.0's ``scalable.artifacts`` runs unchanged where our contract allows."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from scalable.artifacts import ArtifactKind, ArtifactRef, build_artifact_store


def test_its_names_and_keywords_work(tmp_path: Path) -> None:
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "a.txt").write_text("a")
    store = build_artifact_store(tmp_path / "store")
    assert store.scheme == "file"
    assert build_artifact_store("memory://jgcri").scheme == "memory"
    ref = store.put(local_path=str(tmp_path / "tree"), remote_key="out/tree", kind=ArtifactKind.DIRECTORY)
    assert ref.kind is ArtifactKind.DIRECTORY is ArtifactKind.DIR and ref.kind.value == "dir"
    got = store.get(remote_key="out/tree", local_path=str(tmp_path / "copy"))
    assert (Path(got) / "a.txt").read_text() == "a"
    assert store.exists("out/tree") and store.list_artifacts("out/") == ["out/tree"]
    with pytest.raises(TypeError, match="give one"):
        store.put(str(tmp_path / "tree"), "a", remote_key="b")


@pytest.mark.parametrize("digest", [None, "ab" * 32])
def test_its_optional_or_bare_digests_are_refused_saying_why(digest: str | None) -> None:
    with pytest.raises(ValidationError, match="stricter than JGCRI scalable 2.0") as info:
        ArtifactRef(uri="file:///x", key="x", kind="file", digest=digest, size_bytes=1)  # type: ignore[arg-type]
    if digest:
        assert f"sha256:{digest}" in str(info.value)
