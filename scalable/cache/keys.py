"""Canonical encoding of values, and cache keys built from it.

A cache key is the SHA-256 (full width, lowercase hex) of the canonical encoding of the
5-tuple ``("scalable.cache/1", qualified_name, source_hash, version, arguments)``, where
``arguments`` is a dict from parameter name to value with defaults applied. The encoding
is a tagged, length-prefixed byte string: equal inputs give equal bytes on every machine
and Python version, and unequal inputs (within a type) give unequal bytes. The rules are
written out in ``docs/cache.md`` and pinned by golden vectors in ``tests/test_cache_keys.py``;
changing any of them changes every key, so a change needs a new format string.

The encoder is written for speed on small arguments (an ``int``, a short ``str``): exact
type checks first, then a per-type handler found once and remembered.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import inspect
import logging
import operator
import os
import pickle
import stat
import struct
import threading
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path, PurePath
from typing import Any

from scalable.artifacts.digests import digest_bytes, shared_digest_cache, tree_manifest_bytes
from scalable.artifacts.ref import ArtifactRef
from scalable.cache.errors import UnhashableArgumentError, UnstableKeyWarning

log = logging.getLogger("scalable.cache")

#: The format string that starts every key's preimage; bump it when an encoding rule changes.
KEY_FORMAT = "scalable.cache/1"

#: Buffers at least this large are hashed in place rather than copied into the preimage.
_BIG = 1 << 20

_pack_double = struct.Struct(">d").pack
_NAN = b"f" + _pack_double(float("nan"))  # one bit pattern for every NaN: 7ff8000000000000


class _Parts(list):  # type: ignore[type-arg]
    """The encoding being built: byte strings to concatenate; ``big`` once a large buffer is in."""

    big = False


def _encode(x: Any, out: _Parts) -> None:
    """Append the canonical encoding of ``x`` to ``out``."""
    t = type(x)
    if t is str:
        b = x.encode("utf-8", "surrogatepass")
        out.append(b"s%d:" % len(b))
        out.append(b)
    elif t is int:
        out.append(b"i%x;" % x)
    elif x is None:
        out.append(b"N")
    elif t is bool:
        out.append(b"T" if x else b"F")
    elif t is float:
        out.append(_NAN if x != x else b"f" + _pack_double(x))
    elif t is tuple:
        out.append(b"t%d:" % len(x))
        for item in x:
            _encode(item, out)
    elif t is list:
        out.append(b"l%d:" % len(x))
        for item in x:
            _encode(item, out)
    elif t is dict:
        _encode_dict(x, out)
    elif t is bytes:
        _encode_buffer(x, out)
    else:
        handler = _handlers.get(t)
        if handler is None:
            handler = _handler_for(t)
        handler(x, out)


def _joined(x: Any) -> bytes:
    parts = _Parts()
    _encode(x, parts)
    return b"".join(parts)


def _encode_buffer(data: bytes | memoryview, out: _Parts) -> None:
    out.append(b"b%d:" % len(data))
    out.append(data)
    if len(data) >= _BIG:
        out.big = True


def _encode_dict(d: Mapping[Any, Any], out: _Parts) -> None:
    out.append(b"d%d:" % len(d))
    if not d:
        return
    keyed = sorted(((_joined(k), v) for k, v in d.items()), key=_first)
    if all(keyed[i][0] != keyed[i + 1][0] for i in range(len(keyed) - 1)):
        for kb, v in keyed:
            out.append(kb)
            _encode(v, out)
        return
    # Two keys encode alike (possible only through pickled keys): order by the values too.
    for kb, vb in sorted((kb, _joined(v)) for kb, v in keyed):
        out.append(kb)
        out.append(vb)


_first = operator.itemgetter(0)
_REQUIRED = object()  # a row slot whose parameter has no default and was not given


def _encode_set(s: set[Any] | frozenset[Any], out: _Parts) -> None:
    out.append(b"S%d:" % len(s))
    out.extend(sorted(_joined(item) for item in s))


def _type_name(t: type) -> str:
    return f"{t.__module__}.{t.__qualname__}"


# --------------------------------------------------------------------------- per-type handlers

Handler = Callable[[Any, _Parts], None]
_handlers: dict[type, Handler] = {}
_handlers_lock = threading.Lock()
_warned_types: set[type] = set()


def _after_fork_in_child() -> None:
    global _handlers_lock
    _handlers_lock = threading.Lock()  # one held by another thread at the fork would stay held


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _handler_for(t: type) -> Handler:
    """Find (once per type) how values of type ``t`` are encoded."""
    handler = _choose_handler(t)
    with _handlers_lock:
        _handlers[t] = handler
    return handler


def _choose_handler(t: type) -> Handler:
    module = t.__module__ or ""
    if issubclass(t, ArtifactRef):
        return _encode_ref
    if issubclass(t, enum.Enum):
        return _encode_enum
    if issubclass(t, PurePath):
        return _encode_path if issubclass(t, Path) else _encode_pure_path
    if module == "numpy" or module.startswith("numpy."):
        handler = _numpy_handler(t)
        if handler is not None:
            return handler
    if module == "pandas" or module.startswith("pandas."):
        handler = _pandas_handler(t)
        if handler is not None:
            return handler
    for base, handler in _BUILTIN_BASES:
        if issubclass(t, base):
            return handler
    if dataclasses.is_dataclass(t):
        return _encode_dataclass
    if _is_pydantic_model(t):
        return _encode_model
    return _encode_pickled


def _encode_ref(x: ArtifactRef, out: _Parts) -> None:
    out.append(b"R")
    _encode(x.digest, out)


def _encode_enum(x: enum.Enum, out: _Parts) -> None:
    out.append(b"e")
    _encode(_type_name(type(x)), out)
    _encode(x.name, out)


def _encode_path(x: Path, out: _Parts) -> None:
    try:
        st = os.stat(x)
    except FileNotFoundError:
        out.append(b"pm")
        _encode(os.fspath(x), out)
        return
    cache = shared_digest_cache()
    if stat.S_ISDIR(st.st_mode):
        out.append(b"pd")
        _encode(digest_bytes(tree_manifest_bytes(cache.tree(x))), out)
    else:
        out.append(b"pf")
        _encode(cache.digest_of(x, st)[0], out)


def _encode_pure_path(x: PurePath, out: _Parts) -> None:
    out.append(b"q")
    _encode(x.as_posix(), out)


def _encode_str_subclass(x: str, out: _Parts) -> None:
    _encode(str.__str__(x), out)


def _encode_int_subclass(x: int, out: _Parts) -> None:
    out.append(b"i%x;" % int.__index__(x))


def _encode_float_subclass(x: float, out: _Parts) -> None:
    _encode(float.__float__(x), out)


def _encode_complex(x: complex, out: _Parts) -> None:
    out.append(b"c")
    _encode(float(x.real), out)
    _encode(float(x.imag), out)


def _encode_bytes_like(x: Any, out: _Parts) -> None:
    view = memoryview(x)
    if not view.c_contiguous:
        view = memoryview(view.tobytes())
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    _encode_buffer(view, out)


def _encode_tuple_subclass(x: tuple[Any, ...], out: _Parts) -> None:
    _encode(tuple(x), out)


def _encode_list_subclass(x: list[Any], out: _Parts) -> None:
    _encode(list(x), out)


def _encode_dict_subclass(x: Mapping[Any, Any], out: _Parts) -> None:
    _encode_dict(x, out)


_BUILTIN_BASES: tuple[tuple[type, Handler], ...] = (
    (str, _encode_str_subclass),
    (int, _encode_int_subclass),  # bool cannot be subclassed; IntEnum is caught above
    (float, _encode_float_subclass),
    (complex, _encode_complex),
    (bytes, _encode_bytes_like),
    (bytearray, _encode_bytes_like),
    (memoryview, _encode_bytes_like),
    (tuple, _encode_tuple_subclass),
    (list, _encode_list_subclass),
    (dict, _encode_dict_subclass),
    (set, _encode_set),
    (frozenset, _encode_set),
)


def _encode_dataclass(x: Any, out: _Parts) -> None:
    out.append(b"D")
    _encode(_type_name(type(x)), out)
    _encode_dict({f.name: getattr(x, f.name) for f in dataclasses.fields(x)}, out)


def _is_pydantic_model(t: type) -> bool:
    try:
        from pydantic import BaseModel
    except ImportError:  # pragma: no cover - pydantic is a dependency
        return False
    return issubclass(t, BaseModel)


def _encode_model(x: Any, out: _Parts) -> None:
    fields = {name: getattr(x, name) for name in type(x).model_fields}
    fields.update(x.model_extra or {})
    out.append(b"M")
    _encode(_type_name(type(x)), out)
    _encode_dict(fields, out)


def _encode_pickled(x: Any, out: _Parts) -> None:
    t = type(x)
    try:
        data = pickle.dumps(x, protocol=5)
    except Exception as exc:  # a lock, an open file, a generator...: no key can stand for it
        raise UnhashableArgumentError(
            f"a value of type {_type_name(t)} cannot be part of a cache key: it has no canonical encoding "
            f"and cannot be pickled ({type(exc).__name__}: {exc}). Pass plain values, a dataclass or a "
            "pydantic model instead, or leave the argument out of the key with ignore=[...]"
        ) from exc
    if t not in _warned_types:
        _warned_types.add(t)
        message = (
            f"scalable.cache: an argument of type {_type_name(t)} has no canonical encoding and is hashed "
            "through pickle; its cache key may change with Python or library versions "
            "(pass a dataclass, a pydantic model or plain values for keys that never drift)"
        )
        log.warning(message)
        warnings.warn(message, UnstableKeyWarning, stacklevel=2)
    out.append(b"k")
    _encode(_type_name(t), out)
    _encode_buffer(data, out)


# --------------------------------------------------------------------------- numpy and pandas


def _numpy_handler(t: type) -> Handler | None:
    import numpy as np

    if issubclass(t, np.ndarray):
        return _encode_ndarray
    if issubclass(t, np.generic):
        return _encode_numpy_scalar
    return None


def _dtype_descr(dtype: Any) -> Any:
    from numpy.lib import format as npformat

    return npformat.dtype_to_descr(dtype)


def _array_bytes(array: Any) -> memoryview:
    import numpy as np

    flat = np.ascontiguousarray(array).reshape(-1)
    return memoryview(flat.view(np.uint8))


def _encode_ndarray(x: Any, out: _Parts) -> None:
    out.append(b"A")
    if x.dtype.hasobject:  # pointers are not content: encode the items themselves
        _encode("|O", out)
        _encode(tuple(x.shape), out)
        _encode(x.tolist(), out)
        return
    _encode(_dtype_descr(x.dtype), out)
    _encode(tuple(int(n) for n in x.shape), out)
    _encode_buffer(_array_bytes(x), out)


def _encode_numpy_scalar(x: Any, out: _Parts) -> None:
    import numpy as np

    array = np.asarray(x)
    if array.dtype.hasobject:
        _encode_pickled(x, out)
        return
    out.append(b"a")
    _encode(_dtype_descr(array.dtype), out)
    _encode_buffer(_array_bytes(array), out)


def _pandas_handler(t: type) -> Handler | None:
    import pandas as pd

    if issubclass(t, pd.DataFrame):
        return _encode_dataframe
    if issubclass(t, pd.Series):
        return _encode_series
    if issubclass(t, pd.Index):
        return _encode_index
    return None


def _row_hashes(x: Any, index: bool = True) -> Any:
    from pandas.util import hash_pandas_object

    return hash_pandas_object(x, index=index).to_numpy()


def _encode_dataframe(x: Any, out: _Parts) -> None:
    out.append(b"X")
    _encode("pandas.DataFrame", out)
    _encode(list(x.columns), out)
    _encode([str(d) for d in x.dtypes], out)
    _encode(list(x.index.names), out)
    _encode(str(x.index.dtype), out)
    _encode(_row_hashes(x), out)


def _encode_series(x: Any, out: _Parts) -> None:
    out.append(b"X")
    _encode("pandas.Series", out)
    _encode(x.name, out)
    _encode(str(x.dtype), out)
    _encode(list(x.index.names), out)
    _encode(str(x.index.dtype), out)
    _encode(_row_hashes(x), out)


def _encode_index(x: Any, out: _Parts) -> None:
    out.append(b"X")
    _encode("pandas.Index", out)
    _encode(list(x.names), out)
    _encode(str(x.dtype), out)
    _encode(_row_hashes(x, index=False), out)


# --------------------------------------------------------------------------- public helpers


def encode(value: Any) -> bytes:
    """The canonical encoding of ``value`` (see ``docs/cache.md``)."""
    return _joined(value)


def _digest(parts: _Parts, base: Any = None) -> str:
    h = base.copy() if base is not None else hashlib.sha256()
    if parts.big:
        for part in parts:
            h.update(part)
    else:
        h.update(b"".join(parts))
    return h.hexdigest()


def key_prefix(qualname: str, source_hash: str, version: Any, n_arguments: int) -> bytes:
    """The preimage of a key up to the entries of its arguments dict."""
    parts = _Parts()
    parts.append(b"t5:")
    for item in (KEY_FORMAT, qualname, source_hash, version):
        _encode(item, parts)
    parts.append(b"d%d:" % n_arguments)
    return b"".join(parts)


def cache_key(qualname: str, source_hash: str, version: Any, arguments: Mapping[str, Any]) -> str:
    """The cache key of a call: SHA-256 hex of ``encode((KEY_FORMAT, qualname, source_hash, version, arguments))``.

    ``arguments`` maps parameter names to values, defaults applied (``*args`` as a tuple,
    ``**kwargs`` as a dict). This is the reference form of what ``@cacheable`` computes
    with precomputed pieces.
    """
    parts = _Parts()
    _encode((KEY_FORMAT, qualname, source_hash, version, dict(arguments)), parts)
    return _digest(parts)


class ArgumentKeyer:
    """Binds a call's arguments to a function's parameters and hashes them, fast.

    The signature is read once: binding is a ``zip`` of positional names plus a loop over
    keywords, and the argument names' encodings are precomputed in their sorted order, so
    a call encodes only its values. Anything unusual (a missing or unexpected argument) is
    handed to ``inspect.Signature.bind`` for its exact ``TypeError``.
    """

    def __init__(self, func: Callable[..., Any], ignore: tuple[str, ...] = ()) -> None:
        self.signature = inspect.signature(func)
        params = list(self.signature.parameters.values())
        names = [p.name for p in params]
        unknown = [name for name in ignore if name not in names]
        if unknown:
            raise ValueError(f"ignore= names {unknown} are not parameters of {func.__qualname__}{self.signature}")
        kinds = inspect.Parameter
        positional = (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)
        keywordable = (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)
        self._positional = tuple(p.name for p in params if p.kind in positional)
        self._n_positional = len(self._positional)
        self._keywordable = frozenset(p.name for p in params if p.kind in keywordable)
        self._varargs = next((p.name for p in params if p.kind is kinds.VAR_POSITIONAL), None)
        self._varkw = next((p.name for p in params if p.kind is kinds.VAR_KEYWORD), None)
        self._defaults = {p.name: p.default for p in params if p.default is not p.empty}
        self._plain = [p.name for p in params if p.kind not in (kinds.VAR_POSITIONAL, kinds.VAR_KEYWORD)]
        self._n_params = len(params)
        kept = [name for name in names if name not in ignore]
        #: (name, encoded name) of every parameter in the key, sorted by the encoded name.
        self.order = sorted(((name, _joined(name)) for name in kept), key=lambda pair: pair[1])
        self.n_arguments = len(kept)
        # Without *args and **kwargs, a call binds into a row: one slot per parameter, the
        # kept ones first in key order, then the ignored ones (checked for presence only).
        self._row: list[Any] | None = None
        if self._varargs is None and self._varkw is None:
            slot_names = [name for name, _ in self.order] + [name for name in names if name in ignore]
            slot = {name: i for i, name in enumerate(slot_names)}
            self._row = [self._defaults.get(name, _REQUIRED) for name in slot_names]
            self._slot_names = slot_names
            self._encoded_names = [encoded for _, encoded in self.order]
            self._position_slots = [slot[name] for name in self._positional]
            # keyword -> (slot, its position or a number past any position); positional-only names are absent.
            self._keyword_slots = {
                name: (slot[name], self._positional.index(name) if name in self._positional else len(params))
                for name in self._keywordable
            }

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Parameter name -> value for a call, defaults applied (``TypeError`` as a call would)."""
        values = dict(zip(self._positional, args, strict=False))
        if len(args) > self._n_positional:
            if self._varargs is None:
                self.signature.bind(*args, **kwargs)  # raises the call's TypeError
            values[self._varargs] = args[self._n_positional :]
        elif self._varargs is not None:
            values[self._varargs] = ()
        extra: dict[str, Any] | None = {} if self._varkw is not None else None
        for name, value in kwargs.items():
            if name in self._keywordable and name not in values:
                values[name] = value
            elif extra is not None and name not in self._keywordable:
                extra[name] = value
            else:
                self.signature.bind(*args, **kwargs)
                raise TypeError(f"unexpected keyword argument {name!r}")  # pragma: no cover - bind raised
        if extra is not None:
            values[self._varkw] = extra  # type: ignore[index]
        if len(values) < self._n_params:
            defaults = self._defaults
            for name in self._plain:
                if name not in values:
                    if name not in defaults:
                        self.signature.bind(*args, **kwargs)
                    values[name] = defaults[name]
        return values

    def key(self, base: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The key of a call; ``base`` is a SHA-256 object fed with the :func:`key_prefix` bytes."""
        parts = _Parts()
        if self._row is not None:
            n = len(args)
            if n > self._n_positional:
                self.signature.bind(*args, **kwargs)  # raises the call's TypeError
            row = self._row.copy()
            slots = self._position_slots
            for i in range(n):
                row[slots[i]] = args[i]
            if kwargs:
                keyword_slots = self._keyword_slots
                for name, value in kwargs.items():
                    found = keyword_slots.get(name)
                    if found is None or found[1] < n:  # unknown, positional-only, or given twice
                        self.signature.bind(*args, **kwargs)
                    row[found[0]] = value  # type: ignore[index]
            for i, encoded_name in enumerate(self._encoded_names):
                value = row[i]
                if value is _REQUIRED:
                    self.signature.bind(*args, **kwargs)
                parts.append(encoded_name)
                try:
                    _encode(value, parts)
                except Exception as exc:
                    raise self._unhashable(self._slot_names[i], value, exc) from exc
            for i in range(len(self._encoded_names), len(row)):
                if row[i] is _REQUIRED:  # an ignored parameter is still required by the call
                    self.signature.bind(*args, **kwargs)
            return _digest(parts, base)
        values = self.bind(args, kwargs)
        for name, encoded_name in self.order:
            parts.append(encoded_name)
            try:
                _encode(values[name], parts)
            except Exception as exc:
                raise self._unhashable(name, values[name], exc) from exc
        return _digest(parts, base)

    @staticmethod
    def _unhashable(name: str, value: Any, exc: Exception) -> UnhashableArgumentError:
        return UnhashableArgumentError(
            f"argument {name!r} ({type(value).__name__}) cannot be part of a cache key: {exc}. "
            f"Pass a value that can be hashed, or leave it out of the key with ignore=[{name!r}]"
        )


__all__ = ["KEY_FORMAT", "ArgumentKeyer", "cache_key", "encode", "key_prefix"]
