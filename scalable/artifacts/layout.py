"""Where things live under a store's root: the layout ``scalable.store/3``.

::

    .scalable/store.json                  {"format": "scalable.store/3", ...}: written at the first write
    .scalable/objects/sha256/ab/<hex>     a file's bytes, or a directory's tree manifest, named by SHA-256
    .scalable/objects/sha256/ab/<hex>.pack  a packed directory's bytes, named by its tree digest
    .scalable/refs/<key>                  the key's head record: a copy of its latest version record
    .scalable/versions/<key>/.scalable/<N>  immutable version records (created exclusively: N is unique)
    .scalable/pending/<id>                markers of puts in flight: the objects they rely on (gc keeps them)
    .scalable/tmp/                        in-flight writes of stores that stage them
    .scalable/sync/<id>.json              what the last sync from one source saw (scalable.artifacts.replicate)

The segment ``.scalable`` is reserved in keys, so a record name can never be a key's
folder: the records of ``a`` (``versions/a/.scalable/1``) and those of a key ``a/1``
(``versions/a/1/.scalable/1``) cannot collide. Layout 2 (``scalable.store/2``) named them
``versions/<key>/<N>``; :mod:`scalable.artifacts.migrate` converts it.

See ``docs/design.md`` for the commit protocol and garbage collection.
"""

from __future__ import annotations

STORE_JSON = ".scalable/store.json"
STORE_FORMAT = "scalable.store/3"
#: The layout before escaped version records: read as it is, written only after ``scalable migrate``.
STORE_FORMAT_V2 = "scalable.store/2"
#: The segment that starts the records of a key below its folder in ``versions/`` (reserved in keys).
RECORDS = ".scalable"
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


def versions_dir(key: str, layout: int = 3) -> str:
    """The folder of ``key``'s version records (``layout=2``: where layout 2 kept them)."""
    return f"{VERSIONS}/{key}/{RECORDS}" if layout >= 3 else f"{VERSIONS}/{key}"


def version_path(key: str, number: int, layout: int = 3) -> str:
    """The version record ``number`` of ``key`` (``layout=2``: its name in layout 2)."""
    return f"{versions_dir(key, layout)}/{number}"


def is_version_number(name: str) -> bool:
    """Whether ``name`` is a version number as records are named: digits, no leading zero."""
    return name.isdigit() and name.isascii() and not name.startswith("0")


def version_numbers(names: list[str]) -> list[int]:
    """The version numbers among the names listed in a key's versions folder, ascending."""
    return sorted(int(n) for n in names if is_version_number(n))


def parse_version_name(name: str, layout: int = 3) -> tuple[str, int] | None:
    """``(key, number)`` of a record named ``name`` below ``versions/``; ``None`` if it names no record.

    Layout 3: ``<key>/.scalable/<N>``. Layout 2: ``<key>/<N>``.
    """
    head, _, number = name.rpartition("/")
    if not is_version_number(number):
        return None
    if layout >= 3:
        key, _, records = head.rpartition("/")
        if records != RECORDS or not key:
            return None
        return key, int(number)
    return (head, int(number)) if head else None


__all__ = [
    "OBJECTS",
    "PACK_SUFFIX",
    "PENDING",
    "RECORDS",
    "REFS",
    "SHA256_OBJECTS",
    "STORE_FORMAT",
    "STORE_FORMAT_V2",
    "STORE_JSON",
    "TMP",
    "VERSIONS",
    "hex_of",
    "is_version_number",
    "object_path",
    "pack_path",
    "parse_version_name",
    "ref_path",
    "version_numbers",
    "version_path",
    "versions_dir",
]
