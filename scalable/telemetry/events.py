"""Telemetry events: one pydantic model per kind, each a JSON object on one line of a stream.

Every event carries ``schema_version`` (bumped when a field changes meaning or goes away;
new optional fields do not bump it), ``event`` (its kind, e.g. ``"artifact.recorded"``),
``timestamp`` (UTC), ``run_id``, ``host`` and ``pid``. Readers turn a line back into the
model named by its ``event``; an ``event`` they do not know (written by a newer
scalable, or a user's own subclass not imported) comes back as a plain :class:`Event`
holding every field, so old readers keep working on new streams.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, ClassVar, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, field_validator

from scalable.artifacts.ref import utc_now

if TYPE_CHECKING:
    from scalable.artifacts.ref import ArtifactRef

#: The version of the event format this module writes.
SCHEMA_VERSION = 1

_HOST = socket.gethostname()

#: ``event`` value -> model, filled as subclasses are defined (see :meth:`Event.__pydantic_init_subclass__`).
EVENT_TYPES: dict[str, type[Event]] = {}


def _host() -> str:
    return _HOST


class Event(BaseModel):
    """The fields every event has. Subclass it (with a ``Literal`` ``event``) for a new kind.

    Unknown fields are kept (``extra="allow"``), so an event read from a newer stream
    round-trips whole.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    schema_version: int = SCHEMA_VERSION
    event: str
    timestamp: datetime = Field(default_factory=utc_now)
    run_id: str | None = None
    host: str = Field(default_factory=_host)
    pid: int = Field(default_factory=os.getpid)

    #: The ``event`` values this class is parsed from (empty for the abstract bases).
    event_names: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        annotation = cls.model_fields["event"].annotation
        if get_origin(annotation) is Literal:
            cls.event_names = tuple(str(name) for name in get_args(annotation))
            for name in cls.event_names:
                EVENT_TYPES[name] = cls

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class ArtifactRecorded(Event):
    """An artifact was stored and recorded by a run (``artifacts.jsonl``)."""

    event: Literal["artifact.recorded"] = "artifact.recorded"
    task: str | None = None
    """The task that recorded it; ``None`` when recorded by the driver."""
    name: str
    """The artifact's name in the run (by default its file name)."""
    kind: str = "result"
    """The role the caller gave it (``record_artifact(kind=...)``): result, input, log, ..."""
    uri: str
    key: str
    artifact_kind: str | None = None
    """What it holds, as :attr:`ArtifactRef.kind`: file, dir or blob."""
    digest: str
    size_bytes: int = Field(ge=0)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_ref(
        cls,
        ref: ArtifactRef,
        *,
        name: str,
        kind: str = "result",
        run_id: str | None = None,
        task: str | None = None,
        **fields: Any,
    ) -> ArtifactRecorded:
        """The event for a committed :class:`~scalable.artifacts.ref.ArtifactRef`."""
        return cls(
            run_id=run_id,
            task=task,
            name=name,
            kind=kind,
            uri=ref.uri,
            key=ref.key,
            artifact_kind=str(ref.kind),
            digest=ref.digest,
            size_bytes=ref.size_bytes,
            metadata=dict(ref.metadata),
            **fields,
        )


class TaskEvent(Event):
    """Fields of every task event (``tasks.jsonl``)."""

    task: str
    """The task's key, unique in the run."""
    function: str | None = None
    """The qualified name of the function the task runs."""


class TaskSubmitted(TaskEvent):
    """The driver handed a task to the scheduler."""

    event: Literal["task.submitted"] = "task.submitted"


class TaskStarted(TaskEvent):
    """A worker began running a task."""

    event: Literal["task.started"] = "task.started"
    worker: str | None = None


class TaskFinished(TaskEvent):
    """A task returned; ``cache`` says whether its ``@cacheable`` result was a hit or a miss."""

    event: Literal["task.finished"] = "task.finished"
    worker: str | None = None
    duration_s: float = Field(ge=0)
    cache: Literal["hit", "miss"] | None = None


class TaskFailed(TaskEvent):
    """A task raised; ``error_type`` and ``error`` say what (the message is redacted when written)."""

    event: Literal["task.failed"] = "task.failed"
    worker: str | None = None
    duration_s: float = Field(ge=0)
    error_type: str
    error: str = ""


class CacheEvent(Event):
    """A ``@cacheable`` lookup or write (``cache.jsonl``).

    ``cache.hit`` (``tier`` says which), ``cache.miss`` (computed), ``cache.store``
    (written to ``tier``), ``cache.error`` (a tier failed; the call went on without it).
    """

    event: Literal["cache.hit", "cache.miss", "cache.store", "cache.error"]
    function: str
    cache_key: str
    tier: Literal["local", "remote"] | None = None
    task: str | None = None
    duration_s: float | None = Field(None, ge=0)
    size_bytes: int | None = Field(None, ge=0)
    error: str | None = None


class RunStarted(Event):
    """A run began."""

    event: Literal["run.started"] = "run.started"
    target: str | None = None
    user: str | None = None
    scalable_version: str | None = None
    git_commit: str | None = None
    manifest: str | None = None


class RunFinished(Event):
    """A run ended; ``status`` is how (e.g. ``"completed"``, ``"failed"``)."""

    event: Literal["run.finished"] = "run.finished"
    status: str
    duration_s: float | None = Field(None, ge=0)


def parse_event(data: Mapping[str, Any]) -> Event:
    """The model named by ``data["event"]`` (a plain :class:`Event` for an unknown one), validated.

    Raises :class:`pydantic.ValidationError` if the fields do not fit.
    """
    cls = EVENT_TYPES.get(str(data.get("event")), Event)
    return cls.model_validate(data)


__all__ = [
    "EVENT_TYPES",
    "SCHEMA_VERSION",
    "ArtifactRecorded",
    "CacheEvent",
    "Event",
    "RunFinished",
    "RunStarted",
    "TaskEvent",
    "TaskFailed",
    "TaskFinished",
    "TaskStarted",
    "TaskSubmitted",
    "parse_event",
]
