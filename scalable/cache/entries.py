"""The bytes of one cache entry: a small header, then the value pickled with protocol 5.

::

    offset  size  field
    0       4     magic b"SCE1" (scalable cache entry, format 1)
    4       1     flags: bit 0 set = signed
    5       4     CRC-32 of the payload, big-endian (catches a damaged local entry)
    9       32    HMAC-SHA256 of the entry, present only when signed
    9|41    ...   payload: pickle.dumps(value, protocol=5)

The HMAC is computed with ``SCALABLE_CACHE_SECRET`` over ``b"scalable.cache/1\\0" + key +
b"\\0" + payload``: binding the key means a signed entry moved to another key is refused
too. The same bytes go to both tiers, so a remote hit fills the local tier as it came.

Unpickling runs code chosen by whoever wrote the bytes. The local tier is trusted (it is
the user's own directory); entries from a shared remote are unpickled only when their
HMAC verifies, if a secret is set.
"""

from __future__ import annotations

import hashlib
import hmac
import pickle
import struct
import zlib
from typing import Any

MAGIC = b"SCE1"
FLAG_SIGNED = 0x01
_HEADER = struct.Struct(">4sBI")
HEADER_SIZE = _HEADER.size
MAC_SIZE = 32
_MAC_CONTEXT = b"scalable.cache/1\0"


class EntryError(Exception):
    """An entry's bytes are damaged, in an unknown format, or not signed as required."""


def dumps(value: Any) -> bytes:
    """The payload of ``value`` (pickle protocol 5); raises whatever pickle raises."""
    return pickle.dumps(value, protocol=5)


def _mac(secret: bytes, key: str, payload: bytes | memoryview) -> bytes:
    h = hmac.new(secret, _MAC_CONTEXT, hashlib.sha256)
    h.update(key.encode("ascii"))
    h.update(b"\0")
    h.update(payload)
    return h.digest()


def pack(payload: bytes, key: str, secret: bytes | None) -> bytes:
    """An entry holding ``payload``, signed for ``key`` when ``secret`` is given."""
    crc = zlib.crc32(payload)
    if secret is None:
        return _HEADER.pack(MAGIC, 0, crc) + payload
    return b"".join((_HEADER.pack(MAGIC, FLAG_SIGNED, crc), _mac(secret, key, payload), payload))


def payload_of(data: bytes, check_crc: bool = True) -> memoryview:
    """The payload of an entry whose header (and CRC, unless told not to) check out; ``EntryError`` otherwise."""
    if len(data) < HEADER_SIZE:
        raise EntryError("entry shorter than its header")
    magic, flags, crc = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise EntryError(f"not a scalable cache entry (magic {magic!r})")
    start = HEADER_SIZE + (MAC_SIZE if flags & FLAG_SIGNED else 0)
    payload = memoryview(data)[start:]
    if check_crc and zlib.crc32(payload) != crc:
        raise EntryError("the payload does not match its CRC-32")
    return payload


def verified_payload(data: bytes, key: str, secret: bytes | None) -> memoryview:
    """The payload of an entry read from a remote store, which has already checked its SHA-256.

    When ``secret`` is set the entry must carry a valid HMAC for ``key``. The CRC is not
    checked again: the store's digest covers every byte.
    """
    payload = payload_of(data, check_crc=False)
    if secret is None:
        return payload
    flags = data[4]
    if not flags & FLAG_SIGNED:
        raise EntryError("entry is not signed, and SCALABLE_CACHE_SECRET is set")
    mac = bytes(data[HEADER_SIZE : HEADER_SIZE + MAC_SIZE])
    if not hmac.compare_digest(mac, _mac(secret, key, payload)):
        raise EntryError("entry signature does not verify (altered, or signed with another secret)")
    return payload


def loads(payload: memoryview | bytes) -> Any:
    """The value of a payload (raises whatever unpickling raises)."""
    return pickle.loads(payload)


__all__ = [
    "FLAG_SIGNED",
    "HEADER_SIZE",
    "MAC_SIZE",
    "MAGIC",
    "EntryError",
    "dumps",
    "loads",
    "pack",
    "payload_of",
    "verified_payload",
]
