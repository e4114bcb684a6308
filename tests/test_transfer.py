"""copy_hashing and the verifying readers: the byte-moving pieces every store shares."""

from __future__ import annotations

import hashlib
import io
import os

import pytest

from scalable import IntegrityError
from scalable.artifacts.digests import digest_bytes
from scalable.artifacts.transfer import RangeReader, VerifyingReader, buffered, copy_hashing


@pytest.mark.parametrize("size", [0, 1, 5_000, 8 * 1024 * 1024, 40 * 1024 * 1024 + 7])
def test_copy_hashing_copies_and_hashes(size: int) -> None:
    payload = os.urandom(size)
    out = io.BytesIO()
    digest, n = copy_hashing(io.BytesIO(payload), out.write, size_hint=size)
    assert n == size and out.getvalue() == payload
    assert digest == "sha256:" + hashlib.sha256(payload).hexdigest()


def test_copy_hashing_without_size_hint_uses_the_threaded_path() -> None:
    payload = os.urandom(3 * 1024 * 1024)
    out = io.BytesIO()
    assert copy_hashing(io.BytesIO(payload), out.write, chunk_size=64 * 1024)[1] == len(payload)
    assert out.getvalue() == payload


def test_copy_hashing_surfaces_write_errors_without_hanging() -> None:
    calls = {"n": 0}

    def write(view: memoryview) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("device gone")

    with pytest.raises(OSError, match="device gone"):
        copy_hashing(io.BytesIO(os.urandom(10 * 1024 * 1024)), write, chunk_size=1024 * 1024)


def test_copy_hashing_surfaces_read_errors() -> None:
    class Broken(io.RawIOBase):
        def readinto(self, b):  # type: ignore[no-untyped-def]
            raise OSError("read failed")

    with pytest.raises(OSError, match="read failed"):
        copy_hashing(Broken(), lambda v: None)


def verifying(data: bytes, expected: bytes | None = None) -> io.BufferedReader:
    reference = data if expected is None else expected
    raw = VerifyingReader(io.BytesIO(data), digest_bytes(reference), len(reference), what="artifact 'k'")
    return buffered(raw)  # type: ignore[return-value]


def test_verifying_reader_passes_good_bytes() -> None:
    payload = os.urandom(3_000_000)
    f = verifying(payload)
    assert f.read(10) + f.read() == payload


def test_verifying_reader_raises_instead_of_eof() -> None:
    with pytest.raises(IntegrityError, match="does not match"):
        verifying(b"bad bytes!", expected=b"good bytes").read()
    with pytest.raises(IntegrityError, match="truncated"):
        verifying(b"short", expected=b"short but longer").read()
    with pytest.raises(IntegrityError, match="more bytes"):
        verifying(b"longer than recorded", expected=b"longer").read()


def test_verifying_reader_after_seek_checks_size() -> None:
    payload = b"0123456789"
    f = verifying(payload)
    f.seek(5)
    assert f.read() == b"56789"
    f.seek(0)
    assert f.read() == payload  # back to the start: hashed again from scratch
    bad = verifying(b"0123456789", expected=b"0123456780")
    bad.seek(5)
    bad.read(2)
    bad.seek(0)
    with pytest.raises(IntegrityError, match="does not match"):
        bad.read()  # a full read after seeking back is verified again


def test_range_reader_windows() -> None:
    raw = io.BytesIO(b"aaaaBBBBBcc")
    r = buffered(RangeReader(raw, 4, 5))
    assert r.read() == b"BBBBB"
    r.seek(2)
    assert r.read(2) == b"BB"
    r.seek(0, io.SEEK_END)
    assert r.read() == b""
