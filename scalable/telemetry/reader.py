"""Reading streams back: typed events, and an account of every line that was skipped.

A line can be unreadable for two reasons, both reported and neither fatal:

- the last line has no ``\\n`` and does not parse: a writer is mid-write, or died
  mid-write (a *torn final line*);
- a line in the middle does not parse or does not fit its event's model: a writer died
  mid-write and a later writer started on a fresh line after it, or the file was edited.

Readers skip such lines, keep going, count them (:attr:`EventLog.skipped`) and, unless
told not to, warn with :class:`TelemetryWarning`.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from scalable.telemetry.events import Event, parse_event

_TORN = "torn final line (a write in progress, or a writer died mid-write)"
_INVALID = "not a JSON event (a writer died mid-write, or the file was edited)"


class TelemetryWarning(UserWarning):
    """A stream had lines that could not be read; they were skipped."""


@dataclass(frozen=True)
class SkippedLine:
    """A line a reader skipped: its number (from 1), why, and whether it was the torn last line."""

    line: int
    reason: str
    torn_tail: bool = False


@dataclass
class EventLog:
    """What :func:`read_events` found: the events in file order and the lines it skipped."""

    path: Path
    events: list[Event] = field(default_factory=list)
    problems: list[SkippedLine] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        """How many lines were skipped (torn or invalid)."""
        return len(self.problems)

    @property
    def torn_tail(self) -> bool:
        """Whether the last line was torn (a write in progress, or a writer that died mid-write)."""
        return bool(self.problems) and self.problems[-1].torn_tail

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)


def iter_events(
    path: str | os.PathLike[str], *, on_skip: Callable[[SkippedLine], None] | None = None
) -> Iterator[Event]:
    """Yield the events of the stream at ``path`` one by one, calling ``on_skip`` for each bad line.

    Reads as it goes, so it suits large files. Raises ``FileNotFoundError`` if there is no file.
    """
    with open(path, "rb") as file:
        for number, raw in enumerate(file, start=1):
            whole = raw.endswith(b"\n")
            text = raw[:-1] if whole else raw
            if not text.strip():
                continue
            try:
                data = json.loads(text)
                if not isinstance(data, dict):
                    raise ValueError("not a JSON object")
                event = parse_event(data)
            except ValidationError as exc:
                reason = f"not a valid {data.get('event')!r} event ({exc.error_count()} field error(s))"
                if on_skip is not None:
                    on_skip(SkippedLine(number, reason, torn_tail=not whole))
                continue
            except ValueError:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
                reason = _TORN if not whole else _INVALID
                if on_skip is not None:
                    on_skip(SkippedLine(number, reason, torn_tail=not whole))
                continue
            yield event


def read_events(path: str | os.PathLike[str], *, warn: bool = True) -> EventLog:
    """Every event in the stream at ``path``, and the lines that were skipped.

    With ``warn`` (the default) skipped lines also raise one :class:`TelemetryWarning`
    naming the file and the lines. Raises ``FileNotFoundError`` if there is no file.
    """
    log = EventLog(Path(path))
    log.events.extend(iter_events(path, on_skip=log.problems.append))
    if warn and log.problems:
        shown = ", ".join(f"line {p.line} ({p.reason})" for p in log.problems[:5])
        more = f" and {log.skipped - 5} more" if log.skipped > 5 else ""
        warnings.warn(
            f"{path}: skipped {log.skipped} unreadable line(s): {shown}{more}", TelemetryWarning, stacklevel=2
        )
    return log


__all__ = ["EventLog", "SkippedLine", "TelemetryWarning", "iter_events", "read_events"]
