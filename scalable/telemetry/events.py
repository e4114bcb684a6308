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
    """The event format version (bumped when a field changes meaning or goes away)."""
    event: str
    """The kind of event, e.g. ``artifact.recorded``; readers pick the model by it."""
    timestamp: datetime = Field(default_factory=utc_now)
    """When it happened, UTC, written as ISO 8601 with ``Z``."""
    run_id: str | None = None
    """The run it belongs to."""
    host: str = Field(default_factory=_host)
    """The machine that wrote it."""
    pid: int = Field(default_factory=os.getpid)
    """The process that wrote it."""

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
    """Where it is: the store's URI and the key (credentials redacted)."""
    key: str
    """Its key in the store."""
    artifact_kind: str | None = None
    """What it holds, as :attr:`ArtifactRef.kind`: file, dir or blob."""
    digest: str
    """``sha256:<hex>`` of its bytes (of its tree manifest for a directory)."""
    size_bytes: int = Field(ge=0)
    """Its size in bytes (the sum of its files' sizes for a directory)."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """The metadata stored with it."""
    version: int | None = Field(None, ge=1)
    """The version of ``key`` the put committed (``None`` in telemetry written before versions)."""

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
            version=ref.version,
            **fields,
        )


class ArtifactUsed(Event):
    """A run read an artifact as an input (``artifacts.jsonl``): the ``in`` edge of the lineage graph.

    Written by ``session.use_artifact``, by a store read (``get``, ``open``, ``get_bytes``,
    ``load``) inside a session task, and for each ``Path`` or ``ArtifactRef`` argument of a
    ``@cacheable`` call. An input that could not be fetched has ``error`` set and, when its
    ref could not be read, no ``digest``.
    """

    event: Literal["artifact.used"] = "artifact.used"
    task: str | None = None
    """The task that read it; ``None`` when read by the driver."""
    via: str
    """How it was read: ``use_artifact``, ``get``, ``open``, ``get_bytes``, or ``argument`` (of a cached call)."""
    uri: str | None = None
    """The artifact's URI (store URI and key; credentials redacted), or the local path of an argument."""
    store: str | None = None
    """The store's URI (``None`` for a local file passed as an argument)."""
    key: str | None = None
    """Its key in the store."""
    version: int | str | None = None
    """The version read (its number), or, for an input that could not be read, the version asked for."""
    digest: str | None = None
    """``sha256:<hex>`` of the bytes read (``None`` if they could not be found)."""
    size_bytes: int | None = Field(None, ge=0)
    """Its size in bytes, when known."""
    artifact_kind: str | None = None
    """file, dir or blob, when known."""
    function: str | None = None
    """The cached function an ``argument`` input went to."""
    error: str | None = None
    """Why the input could not be fetched (the store's error), if it could not."""


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
    """The Dask worker's address (``None`` outside a worker)."""


class TaskFinished(TaskEvent):
    """A task returned; ``cache`` says whether its ``@cacheable`` result was a hit or a miss."""

    event: Literal["task.finished"] = "task.finished"
    worker: str | None = None
    """The Dask worker's address (``None`` outside a worker)."""
    duration_s: float = Field(ge=0)
    """Seconds the function ran."""
    cache: Literal["hit", "miss"] | None = None
    """``miss`` if any cached call in the task computed, ``hit`` if all were hits, ``None`` if it made none."""


class TaskFailed(TaskEvent):
    """A task raised; ``error_type`` and ``error`` say what (the message is redacted when written)."""

    event: Literal["task.failed"] = "task.failed"
    worker: str | None = None
    """The Dask worker's address (``None`` outside a worker)."""
    duration_s: float = Field(ge=0)
    """Seconds the function ran before it raised."""
    error_type: str
    """The exception's class name."""
    error: str = ""
    """The exception's message."""
    traceback: str | None = None
    """The formatted traceback (innermost frames last; redacted when written)."""


class CacheEvent(Event):
    """A ``@cacheable`` lookup or write (``cache.jsonl``).

    ``cache.hit`` (``tier`` says which), ``cache.miss`` (computed), ``cache.store``
    (written to ``tier``), ``cache.error`` (a tier failed; the call went on without it).
    """

    event: Literal["cache.hit", "cache.miss", "cache.store", "cache.error"]
    function: str
    """The cached function's qualified name (``module:qualname``)."""
    cache_key: str
    """The call's cache key (64 hex digits)."""
    tier: Literal["local", "remote"] | None = None
    """The tier that answered (a hit), was written, or failed."""
    task: str | None = None
    """The session task that made the call, if any."""
    duration_s: float | None = Field(None, ge=0)
    """Seconds the call took."""
    size_bytes: int | None = Field(None, ge=0)
    """Size of the stored entry, when known."""
    error: str | None = None
    """What went wrong (``cache.error``)."""
    source_hash: str | None = None
    """SHA-256 hex of the cached function's normalized source (``cache.hit``/``cache.miss``)."""


class RunStarted(Event):
    """A run began."""

    event: Literal["run.started"] = "run.started"
    target: str | None = None
    """The name of the target the run's tasks go to."""
    user: str | None = None
    """Who started it."""
    scalable_version: str | None = None
    """The scalable version of the driver."""
    git_commit: str | None = None
    """The commit of the working directory's git repository, if any."""
    manifest: str | None = None
    """The manifest in use, if recorded."""
    git_dirty: bool | None = None
    """Whether the git working tree had uncommitted changes (``None`` outside git)."""
    python: str | None = None
    """The driver's Python version (``platform.python_version()``)."""
    distributions_digest: str | None = None
    """``sha256:<hex>`` of the sorted ``name-version`` list of installed distributions."""


class RunFinished(Event):
    """A run ended; ``status`` is how (a session writes ``"finished"`` or ``"failed"``)."""

    event: Literal["run.finished"] = "run.finished"
    status: str
    """How it ended: ``finished`` or ``failed`` (a session's ``close(status=...)``)."""
    duration_s: float | None = Field(None, ge=0)
    """Seconds from the start of the run to its end."""


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
    "ArtifactUsed",
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
