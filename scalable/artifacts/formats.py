"""``save``/``load``: the format follows the key's extension, as machinable's save_file does.

| extension      | saved as                                   | loaded as            |
|----------------|--------------------------------------------|----------------------|
| ``.json``      | JSON (UTF-8, indented)                     | the decoded value    |
| ``.jsonl``     | one JSON record per line                   | a list of records    |
| ``.npy``       | NumPy's ``.npy`` (needs numpy)             | a NumPy array        |
| ``.pkl``/``.p``| pickle (protocol 5)                        | the unpickled object |
| anything else  | text (``str(obj)``, UTF-8); bytes as is    | ``str``              |
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from typing import Any

from scalable.errors import FormatError


def _suffix(key: str) -> str:
    name = key.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        raise FormatError("saving or loading .npy needs numpy: pip install numpy") from None
    return numpy


def encode(key: str, obj: Any) -> bytes:
    """Serialize ``obj`` in the format of ``key``'s extension."""
    import pickle  # here, not at import: opening or listing a store does not need it

    suffix = _suffix(key)
    try:
        if suffix == "json":
            return json.dumps(obj, indent=2, ensure_ascii=False, default=_json_default).encode("utf-8")
        if suffix == "jsonl":
            if isinstance(obj, (str, bytes, dict)) or not isinstance(obj, Iterable):
                raise FormatError(f"{key!r}: .jsonl saves an iterable of records, got {type(obj).__name__}")
            lines = (json.dumps(r, ensure_ascii=False, default=_json_default) for r in obj)
            return "".join(line + "\n" for line in lines).encode("utf-8")
        if suffix == "npy":
            buf = io.BytesIO()
            _numpy().save(buf, obj, allow_pickle=False)
            return buf.getvalue()
        if suffix in ("pkl", "p", "pickle"):
            return pickle.dumps(obj, protocol=5)
    except FormatError:
        raise
    except (TypeError, ValueError, pickle.PicklingError, AttributeError) as exc:
        raise FormatError(
            f"cannot save {type(obj).__name__} to {key!r} as .{suffix}: {exc}; "
            "choose an extension whose format fits the value (.pkl saves most objects)"
        ) from exc
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj)
    return str(obj).encode("utf-8")


def decode(key: str, data: bytes) -> Any:
    """Parse bytes saved by :func:`encode` for the same key."""
    import pickle

    suffix = _suffix(key)
    try:
        if suffix == "json":
            return json.loads(data)
        if suffix == "jsonl":
            return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
        if suffix == "npy":
            return _numpy().load(io.BytesIO(data), allow_pickle=False)
        if suffix in ("pkl", "p", "pickle"):
            return pickle.loads(data)
        return data.decode("utf-8")
    except FormatError:
        raise
    except (ValueError, pickle.UnpicklingError, EOFError, UnicodeDecodeError) as exc:
        raise FormatError(f"cannot load {key!r} as .{suffix or 'txt'}: {exc}") from exc


def _json_default(value: Any) -> Any:
    # Paths, datetimes, enums, pydantic models and numpy scalars are common in records.
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if hasattr(value, "value") and type(value).__module__ != "builtins":
        return value.value
    if hasattr(value, "__fspath__"):
        return str(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


__all__ = ["decode", "encode"]
