"""``@cacheable``: a function whose results are looked up before they are computed.

Lookup order (DESIGN.md): the local tier, then the remote tier (a hit fills the local
tier), then compute under a per-key lock and write both tiers. ``None`` is a value like
any other. A local hit is one key computation, one SQLite read and one unpickle.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import logging
import pickle
import sys
import threading
import time
import types
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar, overload

from scalable.artifacts.base import ArtifactStore
from scalable.cache import entries, events
from scalable.cache.config import UNSET, state
from scalable.cache.errors import UncacheableResultWarning
from scalable.cache.inputs import argument_inputs
from scalable.cache.keys import ArgumentKeyer, key_prefix
from scalable.cache.runtime import Runtime, runtime_for
from scalable.cache.source import source_hash

log = logging.getLogger("scalable.cache")

P = ParamSpec("P")
R = TypeVar("R")

TIERS = ("local", "remote")

# Indexes of the counters in CachedFunction._stats.
_LOCAL_HIT, _LOCAL_MISS, _REMOTE_HIT, _REMOTE_MISS, _REMOTE_ERROR, _COMPUTED = range(6)


@dataclass(frozen=True)
class CacheInfo:
    """What a cached function did in this process since it was defined or last cleared.

    ``hits`` are calls answered from a tier, ``misses`` calls that ran the body.
    ``remote_errors`` counts remote lookups and writes that failed, or were skipped
    while the remote rested after a failure.
    """

    hits: int
    misses: int
    local_hits: int
    local_misses: int
    remote_hits: int
    remote_misses: int
    remote_errors: int


@dataclass(frozen=True)
class CallInfo:
    """One call: its key and where its result came from (``local``, ``remote`` or ``computed``)."""

    function: str
    key: str
    outcome: str
    seconds: float

    @property
    def hit(self) -> bool:
        """Whether the result came from a tier rather than from running the body."""
        return self.outcome != "computed"


@dataclass(frozen=True)
class CacheOptions:
    """How one function is cached (picklable: it travels with the function to workers)."""

    version: Any = None
    ignore: tuple[str, ...] = ()
    recompute: bool = False
    tiers: tuple[str, ...] = TIERS
    settings: tuple[tuple[str, Any], ...] = ()


def _resolves_to(module_name: str, qualname: str, obj: object) -> bool:
    target: Any = sys.modules.get(module_name)
    for part in qualname.split("."):
        target = getattr(target, part, None)
        if target is None:
            return False
    return target is obj


def _rebuild(func: Callable[..., Any], options: CacheOptions, source: str | None) -> CachedFunction[Any, Any]:
    cached: CachedFunction[Any, Any] = CachedFunction(func, options)
    if source is not None:
        cached._source_hash = source
    return cached


class CachedFunction(Generic[P, R]):
    """A function wrapped by :func:`cacheable`: call it as the function itself.

    It keeps the function's name, docstring and signature, pickles by reference when its
    module is importable (and by value, with its source hash, otherwise: a Dask worker
    computes the same keys), and works as a method.
    """

    def __init__(self, func: Callable[P, R], options: CacheOptions) -> None:
        if inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError(f"@cacheable does not support async functions yet ({func.__qualname__})")
        functools.update_wrapper(self, func)
        original_qualname = getattr(func, "_scalable_qualname", None)
        if original_qualname is not None:  # decorated before: its __qualname__ was renamed
            self.__qualname__ = original_qualname
        self._func = func
        self._options = options
        self._recompute = options.recompute
        self._use_local = "local" in options.tiers
        self._use_remote = "remote" in options.tiers
        self._settings = dict(options.settings)
        #: ``module:qualname`` of the function: part of every key, and the local tier's tag.
        self.qualified_name = f"{func.__module__}:{self.__qualname__}"
        self._keyer = ArgumentKeyer(func, options.ignore)
        self._source_hash: str | None = None
        self._hasher: Any = None  # SHA-256 fed with the key's prefix, copied for every key
        self._runtime: Runtime | None = None
        self._generation = -1
        self._stats = [0] * 6
        self._stats_lock = threading.Lock()
        self._warned_unpicklable = False
        if original_qualname is None:
            # The undecorated function stays picklable by reference, as ``<qualname>.uncached``.
            try:
                func._scalable_qualname = self.__qualname__  # type: ignore[attr-defined]
                func.__qualname__ = f"{self.__qualname__}.uncached"
            except (AttributeError, TypeError):
                pass

    # ------------------------------------------------------------------ calling
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._call(args, kwargs)[0]

    def call_with_info(self, *args: P.args, **kwargs: P.kwargs) -> tuple[R, CallInfo]:
        """Call, and say where the result came from (for a session recording "cache hit or miss")."""
        began = time.perf_counter()
        value, outcome, key = self._call(args, kwargs)
        return value, CallInfo(self.qualified_name, key, outcome, time.perf_counter() - began)

    def _call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[R, str, str]:
        began = time.perf_counter() if events.listeners else 0.0
        runtime = self._runtime
        if runtime is None or self._generation != state.generation:
            runtime = self._open()
        key = self._keyer.key(self._hasher or self._make_hasher(), args, kwargs)
        local = runtime.local
        if local is not None and not self._recompute:
            data = local.get(key)
            if data is not None:
                try:
                    value = pickle.loads(entries.payload_of(data))
                except Exception as exc:
                    self._corrupt(local, key, exc)
                else:
                    with self._stats_lock:
                        self._stats[_LOCAL_HIT] += 1
                    if events.listeners:
                        self._emit_call(key, "local", began, args, kwargs)
                    return value, "local", key
        value, outcome = self._lookup_or_compute(runtime, key, args, kwargs)
        if events.listeners:
            self._emit_call(key, outcome, began, args, kwargs)
        return value, outcome, key

    def _lookup_or_compute(
        self, runtime: Runtime, key: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Any, str]:
        recompute = self._recompute
        if runtime.local is not None and not recompute:
            self._count(_LOCAL_MISS)
        if runtime.remote is not None and not recompute:
            found, value = self._from_remote(runtime, key)
            if found:
                return value, "remote"
        if recompute:
            return self._compute(runtime, key, args, kwargs), "computed"
        timeout = runtime.settings.lock_timeout
        began = time.monotonic()
        with runtime.locks.hold(key, timeout) as acquired:
            if not acquired:
                waited = time.monotonic() - began
                log.warning(
                    "%s: waited %.3g s for another caller computing %s; computing it here too",
                    self.qualified_name,
                    waited,
                    key,
                )
                events.emit("lock_timeout", function=self.qualified_name, key=key, seconds=waited)
            else:
                # Another caller may have computed it while we waited for the lock.
                found, value = self._recheck(runtime, key)
                if found:
                    return value, "local" if runtime.local is not None else "remote"
            return self._compute(runtime, key, args, kwargs), "computed"

    def _recheck(self, runtime: Runtime, key: str) -> tuple[bool, Any]:
        if runtime.local is not None:
            data = runtime.local.get(key)
            if data is None:
                return False, None
            try:
                value = pickle.loads(entries.payload_of(data))
            except Exception as exc:
                self._corrupt(runtime.local, key, exc)
                return False, None
            self._count(_LOCAL_HIT)
            return True, value
        if runtime.remote is not None:
            return self._from_remote(runtime, key)
        return False, None

    def _from_remote(self, runtime: Runtime, key: str) -> tuple[bool, Any]:
        remote = runtime.remote
        assert remote is not None
        status, data, payload = remote.get(key)
        if status == "hit":
            assert data is not None and payload is not None
            try:
                value = pickle.loads(payload)
            except Exception as exc:
                remote.refuse(key, f"its value cannot be unpickled here ({type(exc).__name__}: {exc})")
                self._count(_REMOTE_MISS)
                return False, None
            if runtime.local is not None:
                runtime.local.set(key, data, tag=self.qualified_name)
            self._count(_REMOTE_HIT)
            return True, value
        self._count(_REMOTE_MISS if status in ("miss", "refused") else _REMOTE_ERROR)
        return False, None

    def _compute(self, runtime: Runtime, key: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        value = self._func(*args, **kwargs)
        self._count(_COMPUTED)
        try:
            payload = entries.dumps(value)
        except Exception as exc:
            self._not_cached(key, value, exc)
            return value
        data = entries.pack(payload, key, runtime.settings.secret)
        if runtime.local is not None:
            runtime.local.set(key, data, tag=self.qualified_name)
        if runtime.remote is not None and not runtime.remote.put(key, data, {"function": self.qualified_name}):
            self._count(_REMOTE_ERROR)
        return value

    # ------------------------------------------------------------------ incidents
    def _count(self, which: int) -> None:
        with self._stats_lock:
            self._stats[which] += 1

    def _corrupt(self, local: Any, key: str, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}"[:300]
        log.warning("%s: local cache entry %s is unreadable (%s); recomputing it", self.qualified_name, key, reason)
        events.emit("corrupt", function=self.qualified_name, key=key, reason=reason)
        local.delete(key)

    def _not_cached(self, key: str, value: Any, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}"[:300]
        events.emit("not_cached", function=self.qualified_name, key=key, reason=reason)
        if self._warned_unpicklable:
            log.debug("%s: result not cached (%s)", self.qualified_name, reason)
            return
        self._warned_unpicklable = True
        message = (
            f"{self.qualified_name} returned a {type(value).__name__} that cannot be pickled ({reason}); "
            "it is returned but not cached. Return picklable values to cache this function"
        )
        log.warning(message)
        warnings.warn(message, UncacheableResultWarning, stacklevel=5)

    def _emit_call(self, key: str, outcome: str, began: float, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        events.emit(
            "call",
            function=self.qualified_name,
            key=key,
            outcome=outcome,
            seconds=time.perf_counter() - began,
            source_hash=self._source_hash,
            inputs=argument_inputs(self._keyer.bind(args, kwargs)),  # for lineage: paths and refs by digest
        )

    # ------------------------------------------------------------------ setup
    def _open(self) -> Runtime:
        generation = state.generation
        runtime = runtime_for(self._settings, self._use_local, self._use_remote)
        self._runtime, self._generation = runtime, generation
        return runtime

    def _make_hasher(self) -> Any:
        if self._source_hash is None:
            self._source_hash = source_hash(self._func)
        prefix = key_prefix(self.qualified_name, self._source_hash, self._options.version, self._keyer.n_arguments)
        self._hasher = hashlib.sha256(prefix)
        return self._hasher

    # ------------------------------------------------------------------ public helpers
    @property
    def uncached(self) -> Callable[P, R]:
        """The undecorated function: runs the body, reads and writes no cache."""
        return self._func

    @property
    def source_hash(self) -> str:
        """SHA-256 hex of the function's normalized source (part of every key)."""
        if self._source_hash is None:
            self._make_hasher()
        assert self._source_hash is not None
        return self._source_hash

    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The key (64 hex digits) a call with these arguments would use; nothing is called."""
        return self._keyer.key(self._hasher or self._make_hasher(), args, kwargs)

    def cache_info(self) -> CacheInfo:
        """Hits and misses per tier in this process (see :class:`CacheInfo`)."""
        with self._stats_lock:
            s = list(self._stats)
        return CacheInfo(
            hits=s[_LOCAL_HIT] + s[_REMOTE_HIT],
            misses=s[_COMPUTED],
            local_hits=s[_LOCAL_HIT],
            local_misses=s[_LOCAL_MISS],
            remote_hits=s[_REMOTE_HIT],
            remote_misses=s[_REMOTE_MISS],
            remote_errors=s[_REMOTE_ERROR],
        )

    def cache_clear(self) -> int:
        """Remove this function's entries from the local tier and reset its counters.

        Returns how many entries were removed. Remote entries are shared with other
        machines and stay; delete the store's ``cache/`` prefix to drop them.
        """
        runtime = self._runtime
        if runtime is None or self._generation != state.generation:
            runtime = self._open()
        removed = runtime.local.evict(self.qualified_name) if runtime.local is not None else 0
        with self._stats_lock:
            self._stats = [0] * 6
        return removed

    # ------------------------------------------------------------------ Python protocols
    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return types.MethodType(self, obj)

    def __reduce__(self) -> str | tuple[Any, ...]:
        module = self.__module__
        if module != "__main__" and _resolves_to(module, self.__qualname__, self):
            return self.__qualname__  # by reference: the worker imports the module
        return (_rebuild, (self._func, self._options, self.source_hash))

    def __repr__(self) -> str:
        return f"<cacheable {self.qualified_name}>"


def _tiers(tiers: str | Iterable[str]) -> tuple[str, ...]:
    names = (tiers,) if isinstance(tiers, str) else tuple(tiers)
    expanded = tuple(dict.fromkeys(t for name in names for t in (TIERS if name in ("both", "all") else (name,))))
    unknown = [t for t in expanded if t not in TIERS]
    if unknown or not expanded:
        raise ValueError(f"tiers must name 'local' and/or 'remote' (or 'both'), got {tiers!r}")
    return expanded


@overload
def cacheable(func: Callable[P, R], /) -> CachedFunction[P, R]: ...


@overload
def cacheable(
    *,
    version: Any = None,
    ignore: Iterable[str] = (),
    recompute: bool = False,
    tiers: str | Iterable[str] = TIERS,
    local_dir: Any = UNSET,
    remote: str | ArtifactStore | None = UNSET,
    remote_options: Mapping[str, Any] = UNSET,
    lock_timeout: float = UNSET,
) -> Callable[[Callable[P, R]], CachedFunction[P, R]]: ...


def cacheable(
    func: Callable[P, R] | None = None,
    /,
    *,
    version: Any = None,
    ignore: Iterable[str] = (),
    recompute: bool = False,
    tiers: str | Iterable[str] = TIERS,
    local_dir: Any = UNSET,
    remote: str | ArtifactStore | None = UNSET,
    remote_options: Mapping[str, Any] = UNSET,
    lock_timeout: float = UNSET,
) -> CachedFunction[P, R] | Callable[[Callable[P, R]], CachedFunction[P, R]]:
    """Cache a function's results on this machine and, with a remote, on every machine.

    Use it bare (``@cacheable``) or with options:

    * ``version``: a salt in every key; change it to drop old results (say, when a helper
      the function calls has changed, which the source hash does not see).
    * ``ignore``: names of parameters left out of the key (a logger, a verbosity flag).
    * ``recompute``: compute every call again and overwrite both tiers.
    * ``tiers``: ``"local"``, ``"remote"`` or both (the default). The remote tier is used
      only when a remote is configured.
    * ``local_dir``, ``remote``, ``remote_options``, ``lock_timeout``: this function's own
      settings, over :func:`~scalable.cache.config.configure_cache` and the environment
      (``SCALABLE_CACHE_DIR``, ``SCALABLE_CACHE_REMOTE``, ...), read at the first call.

    The wrapped function has ``cache_key(*args, **kwargs)``, ``cache_info()``,
    ``cache_clear()``, ``call_with_info(*args, **kwargs)`` and ``uncached``.
    """
    settings = {
        name: value
        for name, value in (
            ("local_dir", local_dir),
            ("remote", remote),
            ("remote_options", remote_options),
            ("lock_timeout", lock_timeout),
        )
        if value is not UNSET
    }
    if isinstance(ignore, str):
        ignore = (ignore,)
    options = CacheOptions(
        version=version,
        ignore=tuple(ignore),
        recompute=bool(recompute),
        tiers=_tiers(tiers),
        settings=tuple(settings.items()),
    )

    def decorate(f: Callable[P, R]) -> CachedFunction[P, R]:
        return CachedFunction(f, options)

    return decorate(func) if func is not None else decorate


__all__ = ["CacheInfo", "CacheOptions", "CachedFunction", "CallInfo", "cacheable"]
