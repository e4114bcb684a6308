"""Keys: what is accepted, what is refused, and that no accepted key leaves the store's root."""

from __future__ import annotations

import os
import posixpath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scalable import InvalidKeyError
from scalable.artifacts.keys import MAX_KEY_BYTES, ancestors, validate_key, validate_prefix


@pytest.mark.parametrize(
    "key", ["a", "runs/run-001/output.csv", "ünïcødé/名前.txt", "with space/and+plus", ".hidden", "a/.scalable-x/b"]
)
def test_good_keys(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize(
    "key, why",
    [
        ("", "empty"),
        ("/etc/passwd", "absolute"),
        ("../x", "'..'"),
        ("a/../b", "'..'"),
        ("./a", "'.'"),
        ("a//b", "empty path segments"),
        ("a/", "empty path segments"),
        ("a\\b", "backslashes"),
        ("a\x00b", "control characters"),
        ("a\x7fb", "control characters"),
        (".scalable/refs/a", "reserved"),
        ("a/.scalable/b", "reserved for the store's own records .in any position.; rename that segment"),
        ("a/.scalable", "reserved"),  # layout 3 keeps a's records in versions/a/.scalable/
        ("x" * (MAX_KEY_BYTES + 1), "limited to"),
        ("\udcff", "UTF-8"),
    ],
)
def test_bad_keys(key: str, why: str) -> None:
    with pytest.raises(InvalidKeyError, match=why):
        validate_key(key)


def test_non_string_key() -> None:
    with pytest.raises(InvalidKeyError, match="must be a str"):
        validate_key(42)  # type: ignore[arg-type]


def test_prefixes_and_ancestors() -> None:
    assert validate_prefix("") == "" and validate_prefix("runs/") == "runs/" and validate_prefix("runs/r") == "runs/r"
    with pytest.raises(InvalidKeyError):
        validate_prefix("../")
    assert ancestors("a/b/c") == ["a", "a/b"] and ancestors("a") == []


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=60) | st.from_regex(r"[a./\\]{0,12}", fullmatch=True))
def test_no_accepted_key_escapes_the_root(key: str) -> None:
    try:
        validate_key(key)
    except InvalidKeyError:
        return
    root = "/store/root"
    resolved = posixpath.normpath(posixpath.join(root, key))
    assert resolved.startswith(root + "/")
    assert not resolved.startswith(root + "/.scalable/")
    assert os.sep not in key.replace("/", "") or os.sep == "/"


def test_a_segment_longer_than_a_file_name_is_refused_on_every_backend(tmp_path) -> None:
    """Issue 13: a 256-byte segment passed validation and failed later with a raw OSError (errno 36)."""
    from scalable import build_artifact_store

    assert validate_key("a" * 255) == "a" * 255
    assert validate_key("é" * 127) == "é" * 127  # 254 bytes
    src = tmp_path / "f.txt"
    src.write_text("x")
    for store in (build_artifact_store(tmp_path / "st"), build_artifact_store("memory://segment-test")):
        for key in ("a" * 256, "dir/" + "é" * 128):
            with pytest.raises(InvalidKeyError, match="255 bytes"):
                store.put(src, key)
    assert not (tmp_path / "st").exists() or not any((tmp_path / "st").rglob("*.txt"))


def test_a_long_invalid_key_is_echoed_once_and_cut_to_a_readable_length() -> None:
    with pytest.raises(InvalidKeyError) as info:
        validate_key("k" * 5000 + "/../x")
    message = str(info.value)
    assert len(message) < 300 and "5005 characters" in message and message.count("k" * 61) == 0


def test_local_paths_that_no_file_can_have_are_scalable_errors(tmp_path) -> None:
    from scalable import DestinationExistsError, LocalPathError, build_artifact_store

    store = build_artifact_store(tmp_path / "st")
    with pytest.raises(LocalPathError, match="NUL byte"):
        store.put("f\x00.txt", "k")
    (tmp_path / "f.txt").write_text("x")
    store.put(tmp_path / "f.txt", "k")
    with pytest.raises(LocalPathError, match="NUL byte"):
        store.get("k", tmp_path / "out\x00")
    with pytest.raises(DestinationExistsError, match="is a file, not a folder"):
        store.get("k", tmp_path / "f.txt" / "inner")
    with pytest.raises(LocalPathError):
        store.put(tmp_path / "f.txt" / "inner", "k2")
