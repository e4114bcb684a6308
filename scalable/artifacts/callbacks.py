"""Progress callbacks of the store API, without importing fsspec.

``put``, ``get`` and the transfers under them report progress to a callback with the
interface of :class:`fsspec.callbacks.Callback`: pass any fsspec callback (``TqdmCallback``,
a subclass of your own). The default, :data:`DEFAULT_CALLBACK`, ignores every report and is
not fsspec's own no-op callback, so that opening a local store, listing it or reading a ref
does not import fsspec (about 40 ms): ``scalable ls`` on a local store never needs it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Callback(Protocol):
    """What a store calls on a progress callback: the part of ``fsspec.callbacks.Callback`` it uses."""

    def set_size(self, size: int | None) -> None:
        """The number of bytes the transfer will move (``None``: not known)."""

    def relative_update(self, inc: int = 1) -> None:
        """``inc`` more bytes moved (negative when a failed attempt's bytes are taken back)."""


class NoProgress:
    """A callback that ignores every report: fsspec's ``NoOpCallback`` interface, without fsspec."""

    size: int | None = None
    value: int = 0

    def set_size(self, size: int | None) -> None:
        """Ignored."""

    def absolute_update(self, value: int) -> None:
        """Ignored."""

    def relative_update(self, inc: int = 1) -> None:
        """Ignored."""

    def call(self, hook_name: str | None = None, **kwargs: Any) -> None:
        """Ignored."""

    def branched(self, path_1: str, path_2: str, **kwargs: Any) -> NoProgress:
        """The callback of a child transfer: this one (it ignores reports too)."""
        return self

    def wrap(self, iterable: Iterable[T]) -> Iterator[T]:
        """The items of ``iterable``, reporting nothing."""
        yield from iterable

    def close(self) -> None:
        """Nothing to close."""

    def __enter__(self) -> NoProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def __repr__(self) -> str:
        return "DEFAULT_CALLBACK"


#: The default ``callback=`` of ``put``, ``get`` and the transfers: reports go nowhere.
DEFAULT_CALLBACK = NoProgress()

__all__ = ["DEFAULT_CALLBACK", "Callback", "NoProgress"]
