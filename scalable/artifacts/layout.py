"""Where things live under a store's root: the layout ``scalable.store/2``.

::

    .scalable/store.json                  {"format": "scalable.store/2", ...}: written at the first write
    .scalable/objects/sha256/ab/<hex>     a file's bytes, or a directory's tree manifest, named by SHA-256
    .scalable/objects/sha256/ab/<hex>.pack  a packed directory's bytes, named by its tree digest
    .scalable/refs/<key>                  the key's head record: a copy of its latest version record
    .scalable/versions/<key>/<N>          immutable version records (created exclusively: N is unique)
    .scalable/pending/<id>                markers of puts in flight: the objects they rely on (gc keeps them)
    .scalable/tmp/                        in-flight writes of stores that stage them
    .scalable/sync/<id>.json              what the last sync from one source saw (scalable.artifacts.replicate)

See ``docs/design.md`` for the commit protocol and garbage collection.
"""

from __future__ import annotations

STORE_JSON = ".scalable/store.json"
STORE_FORMAT = "scalable.store/2"
REFS = ".scalable/refs"
VERSIONS = ".scalable/versions"
OBJECTS = ".scalable/objects"
SHA256_OBJECTS = f"{OBJECTS}/sha256"
PENDING = ".scalable/pending"
TMP = ".scalable/tmp"
PACK_SUFFIX = ".pack"

_HEX = frozenset("0123456789abcdef")


def hex_of(digest: str) -> str:
    """The hex part of ``sha256:<hex>``; ``ValueError`` for anything else."""
    algo, _, hexdigest = digest.partition(":")
    if algo != "sha256" or len(hexdigest) != 64 or not set(hexdigest) <= _HEX:
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return hexdigest


def object_path(digest: str) -> str:
    """The path of the object whose bytes hash to ``digest``."""
    hexdigest = hex_of(digest)
    return f"{SHA256_OBJECTS}/{hexdigest[:2]}/{hexdigest}"


def pack_path(tree_digest: str) -> str:
    """The path of the pack of the directory whose tree manifest hashes to ``tree_digest``."""
    return object_path(tree_digest) + PACK_SUFFIX


def ref_path(key: str) -> str:
    """The head record of ``key``."""
    return f"{REFS}/{key}"


def versions_dir(key: str) -> str:
    """The folder of ``key``'s version records."""
    return f"{VERSIONS}/{key}"


def version_path(key: str, number: int) -> str:
    """The version record ``number`` of ``key``."""
    return f"{VERSIONS}/{key}/{number}"


def version_numbers(names: list[str]) -> list[int]:
    """The version numbers among the names listed in a key's versions folder, ascending."""
    return sorted(int(n) for n in names if n.isdigit() and not n.startswith("0"))


__all__ = [
    "OBJECTS",
    "PACK_SUFFIX",
    "PENDING",
    "REFS",
    "SHA256_OBJECTS",
    "STORE_FORMAT",
    "STORE_JSON",
    "TMP",
    "VERSIONS",
    "hex_of",
    "object_path",
    "pack_path",
    "ref_path",
    "version_numbers",
    "version_path",
    "versions_dir",
]
