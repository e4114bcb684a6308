"""A run's code identity: git commit and dirty flag, Python, installed distributions, cached functions.

Two runs ran the same code when their ``code["digest"]`` are equal: it is the SHA-256 of
the commit, the dirty flag, the Python version, the distributions digest and every cached
function's source digest, so "same code?" is one comparison.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from scalable.session.runs import git_commit


@lru_cache(maxsize=1)
def distributions_digest() -> str:
    """``sha256:<hex>`` of the sorted ``name-version`` names of the installed distributions (once per process).

    The names come from the ``*.dist-info`` and ``*.egg-info`` folders on ``sys.path`` (what
    ``importlib.metadata`` finds), listed rather than parsed: reading every ``METADATA``
    file takes most of a second in a large environment, listing the folders milliseconds.
    """
    names = set()
    for entry in sys.path:
        try:
            with os.scandir(entry or ".") as found:
                for item in found:
                    if item.name.endswith((".dist-info", ".egg-info")):
                        names.add(item.name.rsplit(".", 1)[0].lower().replace("_", "-"))
        except OSError:  # a zip file or a missing folder on sys.path
            continue
    return "sha256:" + hashlib.sha256("\n".join(sorted(names)).encode("utf-8")).hexdigest()


def environment_identity(commit: str | None = None) -> dict[str, Any]:
    """The driver's code identity without the functions: git commit and dirty flag, Python, distributions."""
    commit = git_commit() if commit is None else commit
    head = commit.removesuffix("-dirty") if commit else None
    return {
        "git_commit": head,
        "git_dirty": commit.endswith("-dirty") if commit else None,
        "python": platform.python_version(),
        "distributions_digest": distributions_digest(),
    }


def code_identity(environment: Mapping[str, Any], functions: Mapping[str, str]) -> dict[str, Any]:
    """``environment`` plus ``functions`` (qualified name -> source digest) and their overall ``digest``."""
    doc = {**environment, "functions": dict(sorted(functions.items()))}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    doc["digest"] = "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()
    return doc


__all__ = ["code_identity", "distributions_digest", "environment_identity"]
