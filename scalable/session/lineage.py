"""A run's inputs: ``use_artifact``, store reads inside tasks, and cached calls' path and ref arguments.

Each input is one ``artifact.used`` event in the run's ``artifacts.jsonl``, beside the
``artifact.recorded`` events of its outputs: together they are the run's part of the
lineage graph (input digest -> task -> output digest) that the catalog indexes.

- :func:`use_artifact` fetches an artifact to a local path (:func:`local_input_path`, the
  one place a local mirror slots in) and records it; a fetch that fails is recorded with
  the store's error, then raised.
- :func:`record_read` is the read listener a session installs in
  :mod:`scalable.artifacts.observe`: a ``get``/``open``/``get_bytes``/``load`` inside a
  session task is recorded, unless the session was opened with ``record_reads=False``.
- :func:`record_argument_inputs` records the ``Path`` and ``ArtifactRef`` arguments of a
  ``@cacheable`` call (from the cache's ``call`` event).
"""

from __future__ import annotations

import inspect
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from scalable.artifacts.base import ArtifactStore
from scalable.artifacts.factory import build_artifact_store
from scalable.artifacts.observe import add_read_listener, reads_unobserved
from scalable.artifacts.ref import ArtifactRef
from scalable.errors import InvalidKeyError, VersionNotSupportedError
from scalable.session.handle import ARTIFACTS_STREAM, SessionHandle, active_handle
from scalable.session.relay import RelayStream
from scalable.telemetry import SCHEMA_VERSION, ArtifactUsed, JsonlStream, parse_event, redact_text

#: ``SessionHandle.extra`` key: whether store reads inside tasks are recorded (default on).
RECORD_READS = "record_reads"

_streams: dict[str, JsonlStream] = {}
_streams_lock = threading.Lock()


def _write(handle: SessionHandle, event: ArtifactUsed) -> None:
    """Append ``event`` to the run's ``artifacts.jsonl``, through a stream kept open per run (cheap per event)."""
    stream = _streams.get(handle.run_dir)
    if stream is None:
        path = Path(handle.run_dir) / ARTIFACTS_STREAM
        if not path.parent.is_dir():  # a worker that cannot see the run directory
            RelayStream(handle.run_id, ARTIFACTS_STREAM).write(event)
            return
        with _streams_lock:
            stream = _streams.setdefault(handle.run_dir, JsonlStream(path))
    stream.write(event)


def close_streams(run_dir: str) -> None:
    """Release the kept-open stream of a run (the session calls it at close)."""
    with _streams_lock:
        stream = _streams.pop(str(run_dir), None)
    if stream is not None:
        stream.close()


def _used(handle: SessionHandle, store: ArtifactStore | None, ref: ArtifactRef | None, **fields: Any) -> ArtifactUsed:
    if ref is not None:
        fields.setdefault("uri", ref.uri)
        fields.setdefault("key", ref.key)
        fields.update(digest=ref.digest, size_bytes=ref.size_bytes, artifact_kind=str(ref.kind))
        if ref.version is not None:  # the version read, whatever was asked for (a number, a digest prefix)
            fields["version"] = ref.version
    return ArtifactUsed(run_id=handle.run_id, task=handle.task, store=None if store is None else store.uri, **fields)


def record_read(store: Any, ref: ArtifactRef, how: str) -> None:
    """The read listener: a store read inside a session task becomes an ``artifact.used`` event.

    It runs on every read in a task, so the line is built directly (:func:`read_line`, the
    same JSON the ``ArtifactUsed`` model writes; a test holds the two equal), which costs a
    fraction of validating and serializing the model.
    """
    handle = active_handle()
    if handle is None or handle.task is None or not handle.extra.get(RECORD_READS, True):
        return
    line = read_line(handle.run_id, handle.task, str(store.uri), ref, how)
    stream = _streams.get(handle.run_dir)
    if stream is None:
        _write(handle, parse_event(json.loads(line)))  # opens the run's stream, or relays
    else:
        stream.write_line(line)


#: JSON strings as pydantic writes them: UTF-8, not ``\\u`` escapes (so redaction sees the same text).
_dumps = json.JSONEncoder(ensure_ascii=False).encode
_HOST = _dumps(socket.gethostname())
_second: tuple[int, str] = (-1, "")  # the last whole second formatted (one tuple: threads read it whole)


def _utc_stamp() -> str:
    """The time now as the event models write it (ISO 8601 UTC with microseconds and ``Z``), in about 1 us.

    ``datetime.strftime`` with a time zone costs ten times more; the date part changes once a second.
    """
    global _second
    now = time.time()
    second, text = _second
    if int(now) != second:
        second = int(now)
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second = (second, text)
    return f"{text}.{int((now - second) * 1e6):06d}Z"


def read_line(run_id: str, task: str | None, store_uri: str, ref: ArtifactRef, how: str) -> bytes:
    """The ``artifacts.jsonl`` line of an ``artifact.used`` event for a store read (secrets redacted)."""
    now = _utc_stamp()
    dumps = _dumps
    line = (
        f'{{"schema_version":{SCHEMA_VERSION},"event":"artifact.used","timestamp":"{now}",'
        f'"run_id":{dumps(run_id)},"host":{_HOST},"pid":{os.getpid()},"task":{dumps(task)},'
        f'"via":{dumps(how)},"uri":{dumps(ref.uri)},"store":{dumps(store_uri)},"key":{dumps(ref.key)},'
        f'"version":{dumps(ref.version)},"digest":"{ref.digest}","size_bytes":{ref.size_bytes},'
        f'"artifact_kind":"{ref.kind.value}","function":null,"error":null}}'
    )
    if "://" in line and ("@" in line or "?" in line):  # the rule encode_event applies
        line = redact_text(line)
    return line.encode("utf-8") + b"\n"


def record_argument_inputs(handle: SessionHandle, record: dict[str, Any]) -> None:
    """One ``artifact.used`` event per path or ref argument of a cached call (the cache's ``call`` event)."""
    for item in record.get("inputs") or ():
        _write(
            handle,
            ArtifactUsed(
                run_id=handle.run_id,
                task=handle.task,
                via="argument",
                uri=item.get("uri"),
                store=_store_of(item) if item.get("key") else None,
                key=item.get("key"),
                digest=item.get("digest"),
                size_bytes=item.get("size_bytes"),
                artifact_kind=item.get("kind"),
                function=str(record.get("function", "")) or None,
            ),
        )


def _store_of(item: dict[str, Any]) -> str:
    uri, key = str(item.get("uri", "")), str(item["key"])
    return uri[: -len(key) - 1] if uri.endswith("/" + key) else uri


def install() -> None:
    """Listen to store reads in this process (idempotent; the client and each worker call it)."""
    add_read_listener(record_read)


# ---------------------------------------------------------------------- use_artifact
def _store_and_key(source: ArtifactStore | ArtifactRef | str, key: str | None) -> tuple[ArtifactStore, str]:
    if isinstance(source, ArtifactRef):
        return build_artifact_store(_store_of({"uri": source.uri, "key": source.key})), key or source.key
    if isinstance(source, str):
        store_text, hash_sign, named = source.partition("#")
        if hash_sign and key is None:
            key = named
        store_text = store_text if hash_sign else source
        if not key:
            raise InvalidKeyError(
                f"use_artifact({source!r}) names no artifact: give 'STORE#KEY' "
                "(e.g. './data#forcing/era5.nc') or a store and key=..."
            )
        return build_artifact_store(store_text), key
    if key is None:
        raise InvalidKeyError("use_artifact(store) needs key=...: the artifact's key in that store")
    return source, key


def _version_kwargs(store: ArtifactStore, version: int | str | None) -> dict[str, Any]:
    if version is None:
        return {}
    try:
        accepts = "version" in inspect.signature(store.get).parameters
    except (TypeError, ValueError):
        accepts = False
    if not accepts:
        raise VersionNotSupportedError(
            f"{type(store).__name__} at {store.uri} cannot read past versions (version={version!r}): "
            "leave out version= to use the current one, or upgrade scalable to a release with artifact versions"
        )
    return {"version": version}


def local_input_path(
    handle: SessionHandle, store: ArtifactStore, key: str, version: int | str | None = None
) -> tuple[Path, ArtifactRef]:
    """Fetch the artifact at ``key`` to a local path for this run, and return it with its ref.

    Inputs come through the local mirror (:mod:`scalable.artifacts.mirror`): verified,
    read-only, named by content, so using the same input twice (in this run or any other on
    this machine) downloads it once. The one ref read is the one the event records.
    """
    from scalable.artifacts.mirror import default_mirror

    extra = _version_kwargs(store, version)
    with reads_unobserved():
        ref = store.info(key, **extra)
        path = default_mirror().fetch_ref(store, ref, version=version)
    return path, ref


def use_artifact(
    handle: SessionHandle,
    source: ArtifactStore | ArtifactRef | str,
    key: str | None = None,
    version: int | str | None = None,
) -> Path:
    """A local path to the artifact, recorded as an input of the current task (see ``ScalableSession.use_artifact``)."""
    store, key = _store_and_key(source, key)
    try:
        path, ref = local_input_path(handle, store, key, version)
    except Exception as exc:
        _write(
            handle,
            _used(
                handle,
                store,
                None,
                via="use_artifact",
                uri=f"{store.uri}/{key}",
                key=key,
                version=version,
                error=f"{type(exc).__name__}: {exc}",
            ),
        )
        raise
    _write(handle, _used(handle, store, ref, via="use_artifact", version=version))
    return path


__all__ = [
    "RECORD_READS",
    "close_streams",
    "install",
    "local_input_path",
    "record_argument_inputs",
    "record_read",
    "use_artifact",
]
