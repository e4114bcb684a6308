"""How commands print: rich tables and progress for people, ``--json`` for programs, ``--quiet`` for neither.

Results go to stdout; errors, warnings and progress go to stderr, so ``--json`` output can
always be piped.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


class Output:
    """One command's printing, set by its ``--quiet`` and ``--json`` flags."""

    def __init__(self, *, quiet: bool = False, json_mode: bool = False) -> None:
        self.quiet = quiet
        self.json_mode = json_mode
        self._out: Console | None = None
        self._err: Console | None = None

    # The consoles are made on first use: a command that prints only plain lines never imports rich.
    @property
    def out(self) -> Console:
        """The rich console on stdout."""
        if self._out is None:
            from rich.console import Console

            self._out = Console(file=sys.stdout, highlight=False, soft_wrap=True)
        return self._out

    @out.setter
    def out(self, console: Console) -> None:
        self._out = console

    @property
    def err(self) -> Console:
        """The rich console on stderr."""
        if self._err is None:
            from rich.console import Console

            self._err = Console(file=sys.stderr, highlight=False, soft_wrap=True)
        return self._err

    @err.setter
    def err(self, console: Console) -> None:
        self._err = console

    def json(self, doc: Any) -> None:
        """Print ``doc`` as JSON on stdout (always, even with ``--quiet``)."""
        sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")
        sys.stdout.flush()

    def print(self, *objects: Any, **kwargs: Any) -> None:
        """Print for a person on stdout, unless ``--quiet`` or ``--json``."""
        if not (self.quiet or self.json_mode):
            self.out.print(*objects, **kwargs)

    def result(self, text: str) -> None:
        """A line that is the command's result (shown even with ``--quiet``; not in ``--json``)."""
        if not self.json_mode:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    def warn(self, message: str) -> None:
        """A warning on stderr (hidden by ``--quiet``)."""
        if not self.quiet:
            self.err.print(f"[yellow]warning:[/yellow] {message}", markup=True)

    def error(self, message: str) -> None:
        """One line on stderr: ``error: <what went wrong and what to do>``."""
        first = " ".join(str(message).split("\n")[0:1]) if "\n" not in str(message) else str(message).strip()
        sys.stderr.write(f"error: {first}\n")
        sys.stderr.flush()

    def traceback(self) -> None:
        """The current exception's traceback on stderr (``--debug``)."""
        self.err.print_exception(show_locals=False)

    @contextmanager
    def progress(self, description: str, total: int | None) -> Iterator[Any]:
        """A progress bar on stderr that appears only if the work takes more than a second.

        Yields a callback ``advance(n_bytes)`` (with ``advance.set_total(n)`` for a total learnt
        later, as a store reports it). Hidden with ``--quiet``, ``--json``, or when
        stderr is not a terminal.
        """
        if self.quiet or self.json_mode or not self.err.is_terminal:
            yield _Advance(lambda n: None, lambda total: None)
            return
        from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.err,
            transient=True,
            auto_refresh=True,
        ) as bar:
            task = bar.add_task(description, total=total, visible=False)
            import time

            started = time.monotonic()

            def advance(n: int) -> None:
                bar.advance(task, n)
                if time.monotonic() - started > 1.0:
                    bar.update(task, visible=True)

            yield _Advance(advance, lambda total: bar.update(task, total=total))


class _Advance:
    """What :meth:`Output.progress` yields: ``advance(n_bytes)``, and ``advance.set_total(n)`` once it is known."""

    def __init__(self, advance: Callable[[int], None], set_total: Callable[[int | None], None]) -> None:
        self._advance = advance
        self.set_total = set_total

    def __call__(self, n: int) -> None:
        self._advance(n)


__all__ = ["Output"]
