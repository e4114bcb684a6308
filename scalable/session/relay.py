"""Events from workers that cannot see the run directory, relayed through the Dask scheduler.

A worker on another machine (an existing scheduler, a batch cluster without a shared
filesystem) cannot append to the client's ``artifacts.jsonl``. It logs each event on the
scheduler instead (``Worker.log_event``), under a topic named after the run; the client
collects them when the session closes and appends them to the run's streams, so no event
is lost because it happened in another process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scalable.telemetry import Event, JsonlStream, encode_event, parse_event


def topic(run_id: str) -> str:
    """The scheduler event topic of a run."""
    return f"scalable-run-{run_id}"


class RelayStream:
    """A stand-in for :class:`JsonlStream` on a worker: each event goes to the scheduler's log."""

    def __init__(self, run_id: str, name: str) -> None:
        self.run_id = run_id
        self.name = name

    def write(self, event: Event) -> None:
        from distributed import get_worker

        line = encode_event(event).decode("utf-8")  # redacted, like every written line
        get_worker().log_event(topic(self.run_id), {"stream": self.name, "line": line})

    def __enter__(self) -> RelayStream:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def collect(client: Any, run_id: str, run_dir: Path) -> int:
    """Append the run's relayed events to its streams; return how many there were."""
    relayed = client.get_events(topic(run_id))
    by_stream: dict[str, list[Event]] = {}
    for _, message in relayed:
        event = parse_event(json.loads(message["line"]))
        by_stream.setdefault(str(message["stream"]), []).append(event)
    for name, events in by_stream.items():
        with JsonlStream(run_dir / Path(name).name) as stream:
            stream.write_many(events)
    return sum(len(events) for events in by_stream.values())


__all__ = ["RelayStream", "collect", "topic"]
