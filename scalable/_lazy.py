"""Lazy package namespaces (PEP 562): a name is imported from its module when first used.

``import scalable`` (and every ``import scalable.x.y``, which runs ``scalable/__init__``
first) then costs almost nothing: pydantic, fsspec, diskcache and dask load only when a
name that needs them is touched. Each package lists its public names and their modules
once; ``from scalable.artifacts import ArtifactRef`` and ``scalable.ArtifactRef`` work as
before, and so does attribute access to a submodule (``scalable.artifacts.local``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_namespace(
    package: str, exports: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``, whose name ``N`` lives in module ``exports[N]``.

    A resolved name is stored in the package's ``namespace`` so the next access is a plain
    lookup. A name that is not exported but is a submodule is imported as one.
    """

    def __getattr__(name: str) -> Any:
        module_name = exports.get(name)
        if module_name is None:
            if name.startswith("__"):
                raise AttributeError(f"module {package!r} has no attribute {name!r}")
            try:
                value = importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{package}.{name}":
                    raise
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        else:
            value = getattr(importlib.import_module(module_name), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__


__all__ = ["lazy_namespace"]
