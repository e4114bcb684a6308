"""Cache settings: where the tiers are, how big, which secret, resolved at first use.

Precedence, highest first (as for every scalable setting): an argument of ``@cacheable``,
:func:`configure_cache`, the environment variable, :func:`configure_cache` with
``as_defaults=True`` (where a session puts the manifest's values), the built-in default.
Nothing is read at import time, so tests and sessions can set variables before the first
call; :func:`configure_cache` and :func:`reset_cache_config` make every cached function
resolve its settings again on its next call.

Variables:

* ``SCALABLE_CACHE_DIR``: ``local_dir``, default ``.scalable/cache`` of the project (the
  folder of the nearest ``scalable.yaml``), else of the working directory, at the first call.
* ``SCALABLE_CACHE_SIZE_LIMIT``: ``size_limit`` of the local tier, bytes or a number and a
  unit (``500MB`` in powers of 1000; ``10GiB``, ``2G`` in powers of 1024), default ``10GiB``.
* ``SCALABLE_CACHE_REMOTE``: ``remote``, an artifact store URI; unset, empty or ``off``:
  no remote tier.
* ``SCALABLE_CACHE_SECRET``: ``secret``, the HMAC key that signs and checks remote
  entries; unset: entries are not signed.
* ``SCALABLE_CACHE_LOCK_TIMEOUT``: ``lock_timeout``, seconds a call waits for another
  caller computing the same key, default ``900``.
* ``SCALABLE_CACHE_REMOTE_TIMEOUT``: ``remote_timeout``, seconds one remote request may
  take, default ``10`` (``0``: as long as the store takes).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scalable.artifacts.base import ArtifactStore

ENV_DIR = "SCALABLE_CACHE_DIR"
ENV_SIZE_LIMIT = "SCALABLE_CACHE_SIZE_LIMIT"
ENV_REMOTE = "SCALABLE_CACHE_REMOTE"
ENV_SECRET = "SCALABLE_CACHE_SECRET"
ENV_LOCK_TIMEOUT = "SCALABLE_CACHE_LOCK_TIMEOUT"
ENV_REMOTE_TIMEOUT = "SCALABLE_CACHE_REMOTE_TIMEOUT"
#: Every environment variable the cache reads.
ENV_VARS = (ENV_DIR, ENV_REMOTE, ENV_SECRET, ENV_SIZE_LIMIT, ENV_LOCK_TIMEOUT, ENV_REMOTE_TIMEOUT)

DEFAULT_DIR = os.path.join(".scalable", "cache")
DEFAULT_SIZE_LIMIT = 10 * 1024**3
DEFAULT_LOCK_TIMEOUT = 900.0
DEFAULT_REMOTE_BACKOFF = 30.0
DEFAULT_REMOTE_TIMEOUT = 10.0

SETTINGS = (
    "local_dir",
    "size_limit",
    "remote",
    "remote_options",
    "secret",
    "lock_timeout",
    "remote_timeout",
    "remote_backoff",
)
_ENV = {
    "local_dir": ENV_DIR,
    "size_limit": ENV_SIZE_LIMIT,
    "remote": ENV_REMOTE,
    "secret": ENV_SECRET,
    "lock_timeout": ENV_LOCK_TIMEOUT,
    "remote_timeout": ENV_REMOTE_TIMEOUT,
}
_OFF = ("", "off", "none", "0", "false")


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


#: "Not given" (``None`` is a value: ``remote=None`` means no remote tier).
UNSET: Any = _Unset()


@dataclass(frozen=True)
class CacheSettings:
    """The settings one cached function runs with; ``origins`` says where each came from."""

    local_dir: Path
    size_limit: int
    remote: str | ArtifactStore | None
    remote_options: Mapping[str, Any]
    secret: bytes | None
    lock_timeout: float
    remote_timeout: float | None
    remote_backoff: float
    origins: Mapping[str, str] = field(default_factory=dict, compare=False)

    def origin(self, name: str) -> str:
        """Where setting ``name`` came from (an argument, a variable, the defaults)."""
        return self.origins.get(name, "default")


class _State:
    """Process-wide configuration; ``generation`` changes whenever cached functions must re-resolve."""

    def __init__(self) -> None:
        self.explicit: dict[str, Any] = {}
        self.defaults: dict[str, Any] = {}
        self.generation = 0
        self.lock = threading.Lock()

    def bump(self) -> None:
        # No lock: this also runs in a forked child, where a lock held by another thread stays held.
        self.generation += 1


state = _State()


def _after_fork_in_child() -> None:
    # A forked child re-opens its tiers (SQLite connections and HTTP sessions do not survive
    # a fork), and gets a fresh lock: one held by another thread at the fork stays held.
    state.lock = threading.Lock()
    state.bump()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def configure_cache(
    *,
    local_dir: str | os.PathLike[str] | None = UNSET,
    size_limit: int | str = UNSET,
    remote: str | ArtifactStore | None = UNSET,
    remote_options: Mapping[str, Any] = UNSET,
    secret: str | bytes | None = UNSET,
    lock_timeout: float = UNSET,
    remote_timeout: float | None = UNSET,
    remote_backoff: float = UNSET,
    as_defaults: bool = False,
) -> None:
    """Set cache settings for this process; every cached function picks them up on its next call.

    Values given here override the environment variables, unless ``as_defaults=True``:
    then they rank below the variables (the level of the manifest). Pass ``None`` to clear
    a setting at that level (``remote=None`` also means "no remote tier").
    ``remote_options`` are storage options for ``build_artifact_store(remote, ...)``;
    ``remote_timeout`` bounds each remote request in seconds (``0``: no bound);
    ``remote_backoff`` is how many seconds the remote tier rests after a failure (it
    doubles while failures go on, up to 10x).
    """
    given = {
        "local_dir": local_dir,
        "size_limit": size_limit,
        "remote": remote,
        "remote_options": remote_options,
        "secret": secret,
        "lock_timeout": lock_timeout,
        "remote_timeout": remote_timeout,
        "remote_backoff": remote_backoff,
    }
    target = state.defaults if as_defaults else state.explicit
    with state.lock:
        for name, value in given.items():
            if value is UNSET:
                continue
            if value is None and name != "remote":
                target.pop(name, None)
            else:
                target[name] = value
    state.bump()


def reset_cache_config() -> None:
    """Forget everything :func:`configure_cache` set; the environment is read again on the next call."""
    with state.lock:
        state.explicit.clear()
        state.defaults.clear()
    state.bump()


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)(b?)\s*$", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def parse_size(value: int | str, what: str = "size_limit") -> int:
    """Bytes from ``1073741824``, ``"500MB"`` (powers of 1000), ``"10GiB"`` or ``"2G"`` (powers of 1024)."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number of bytes, got {value!r}")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.match(str(value))
        if match is None:
            raise ValueError(f"{what}={value!r} is not a size: give bytes, or a number and a unit (500MB, 10GiB, 2G)")
        number, prefix, binary, byte = match.groups()
        base = 1000 if (prefix and byte and not binary) else 1024
        size = int(float(number) * base ** _POWERS[prefix.lower()])
    if size <= 0:
        raise ValueError(f"{what} must be positive, got {value!r}")
    return size


def _from_env(name: str, raw: str) -> Any:
    variable = _ENV[name]
    if name == "local_dir":
        return raw
    if name == "size_limit":
        return parse_size(raw, variable)
    if name == "remote":
        return None if raw.strip().lower() in _OFF else raw.strip()
    if name == "secret":
        return raw or None
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{variable}={raw!r} is not a number of seconds") from None


_BUILTIN: dict[str, Any] = {
    "local_dir": DEFAULT_DIR,
    "size_limit": DEFAULT_SIZE_LIMIT,
    "remote": None,
    "remote_options": {},
    "secret": None,
    "lock_timeout": DEFAULT_LOCK_TIMEOUT,
    "remote_timeout": DEFAULT_REMOTE_TIMEOUT,
    "remote_backoff": DEFAULT_REMOTE_BACKOFF,
}


def _default_local_dir() -> str:
    """``.scalable/cache`` of the project (the nearest ``scalable.yaml``'s folder), else of the working directory."""
    from scalable.project import project_dir

    root = project_dir()
    return DEFAULT_DIR if root is None else os.path.join(root, DEFAULT_DIR)


def resolve_settings(arguments: Mapping[str, Any] | None = None) -> CacheSettings:
    """The settings for one function: its ``arguments`` over configure_cache, the variables, the defaults."""
    arguments = arguments or {}
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    with state.lock:
        explicit, defaults = dict(state.explicit), dict(state.defaults)
    for name in SETTINGS:
        if name in arguments and arguments[name] is not UNSET:
            values[name], origins[name] = arguments[name], "the @cacheable argument"
        elif name in explicit:
            values[name], origins[name] = explicit[name], "configure_cache()"
        elif name in _ENV and os.environ.get(_ENV[name]) is not None:
            values[name], origins[name] = _from_env(name, os.environ[_ENV[name]]), f"${_ENV[name]}"
        elif name in defaults:
            values[name], origins[name] = defaults[name], "configure_cache(as_defaults=True)"
        elif name == "local_dir":
            values[name], origins[name] = _default_local_dir(), "default"
        else:
            values[name], origins[name] = _BUILTIN[name], "default"
    secret = values["secret"]
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    return CacheSettings(
        local_dir=Path(os.path.abspath(os.path.expanduser(os.fspath(values["local_dir"])))),
        size_limit=parse_size(values["size_limit"]),
        remote=values["remote"] or None,
        remote_options=dict(values["remote_options"] or {}),
        secret=secret or None,
        lock_timeout=float(values["lock_timeout"]),
        remote_timeout=float(values["remote_timeout"] or 0) or None,
        remote_backoff=float(values["remote_backoff"]),
        origins=origins,
    )


__all__ = [
    "DEFAULT_DIR",
    "DEFAULT_LOCK_TIMEOUT",
    "DEFAULT_SIZE_LIMIT",
    "ENV_DIR",
    "ENV_LOCK_TIMEOUT",
    "ENV_REMOTE",
    "ENV_REMOTE_TIMEOUT",
    "ENV_SECRET",
    "ENV_SIZE_LIMIT",
    "ENV_VARS",
    "UNSET",
    "CacheSettings",
    "configure_cache",
    "parse_size",
    "reset_cache_config",
    "resolve_settings",
]
