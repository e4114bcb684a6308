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
    "key", ["a", "runs/run-001/output.csv", "ünïcødé/名前.txt", "with space/and+plus", ".hidden", "a/.scalable/b"]
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
