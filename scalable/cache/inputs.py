"""The inputs of a cached call that lineage records: its ``Path`` and ``ArtifactRef`` arguments, by digest.

A cache key already counts a ``Path`` argument by its content and an ``ArtifactRef`` by its
digest (:mod:`scalable.cache.keys`); a session records the same digests as the task's
inputs, so "which results came from this file?" has an answer. Arguments are looked at one
level deep (a list, tuple, set or dict's values of paths counts too). File digests come from
the shared digest cache, so a file the key just hashed costs a ``stat``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from scalable.artifacts.digests import digest_bytes, shared_digest_cache, tree_manifest_bytes
from scalable.artifacts.ref import ArtifactRef


def _candidates(values: Mapping[str, Any]) -> Iterator[Any]:
    for value in values.values():
        if isinstance(value, (Path, ArtifactRef)):
            yield value
        elif isinstance(value, (list, tuple, set, frozenset)):
            yield from (v for v in value if isinstance(v, (Path, ArtifactRef)))
        elif isinstance(value, Mapping):
            yield from (v for v in value.values() if isinstance(v, (Path, ArtifactRef)))


def _path_input(path: Path) -> dict[str, Any] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None  # a missing path is keyed by its name: there are no bytes to trace
    cache = shared_digest_cache()
    local = str(path.resolve())
    if stat.S_ISDIR(st.st_mode):
        entries = cache.tree(path)
        size = sum(e.size or 0 for e in entries if e.type == "file")
        return {"uri": local, "digest": digest_bytes(tree_manifest_bytes(entries)), "size_bytes": size, "kind": "dir"}
    digest, size = cache.digest_of(path, st)
    return {"uri": local, "digest": digest, "size_bytes": size, "kind": "file"}


def argument_inputs(arguments: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``uri``, ``digest``, ``size_bytes``, ``kind`` (and ``key`` for a ref) of each path or ref argument."""
    found: list[dict[str, Any]] = []
    for value in _candidates(arguments):
        if isinstance(value, ArtifactRef):
            found.append(
                {
                    "uri": value.uri,
                    "key": value.key,
                    "digest": value.digest,
                    "size_bytes": value.size_bytes,
                    "kind": str(value.kind),
                }
            )
        else:
            item = _path_input(value)
            if item is not None:
                found.append(item)
    return found


__all__ = ["argument_inputs"]
