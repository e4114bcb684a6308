"""The fsspec callback that moves a command's progress bar (imported only by commands that transfer)."""

from __future__ import annotations

from typing import Any

from fsspec.callbacks import Callback


class BarCallback(Callback):
    """An fsspec callback that moves a :meth:`~scalable.cli.output.Output.progress` bar."""

    def __init__(self, advance: Any) -> None:
        super().__init__()
        self._advance = advance

    def set_size(self, size: int | None) -> None:
        self.size = size
        self._advance.set_total(size)

    def relative_update(self, inc: int = 1) -> None:
        self.value += inc
        self._advance(inc)

    def absolute_update(self, value: int) -> None:
        delta, self.value = value - self.value, value
        self._advance(delta)


__all__ = ["BarCallback"]
