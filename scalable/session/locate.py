"""Finding a run from what a user types: a run directory's path, a run id, or a unique prefix of one.

::

    run_dir = locate_run("20261123T2315")          # a prefix is enough when it is unique
    run_dir = locate_run(".scalable/runs/20261123T231500Z-3f2a1b")

Where it looks, in order:

1. ``run`` as a path: a directory holding a run's telemetry (``run.json`` or ``tasks.jsonl``);
2. the runs directory (``runs_dir``, else :func:`scalable.resolve_settings` ``.runs_dir``,
   default ``.scalable/runs``): ``<runs_dir>/<run>``, else the one directory whose name
   starts with ``run``;
3. the default store (``store``, else the manifest's ``default_storage``), where a closed
   session copies its telemetry under ``runs/<run_id>/telemetry/``: the files are
   downloaded (and verified) into ``$XDG_CACHE_HOME/scalable/runs/<run_id>/`` (default
   ``~/.cache/scalable/runs/<run_id>/``), so runs made on other machines can be read too.

A run found nowhere, or a prefix that fits several runs, raises
:class:`~scalable.errors.RunNotFoundError` saying where it looked and what to do.
"""

from __future__ import annotations

import os
from pathlib import Path

from scalable.artifacts.base import ArtifactStore
from scalable.artifacts.uris import redact_uri, split_protocol
from scalable.errors import RunNotFoundError, ScalableError, StoreNotFoundError
from scalable.telemetry.runids import pick_run_id

#: Files whose presence makes a directory a run directory.
RUN_MARKERS = ("run.json", "tasks.jsonl")
#: The telemetry files a session copies to its store (see ``ScalableSession.close``).
TELEMETRY_FILES = ("run.json", "summary.json", "artifacts.jsonl", "tasks.jsonl", "cache.jsonl")


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` is a directory with a run's telemetry in it."""
    return path.is_dir() and any((path / marker).is_file() for marker in RUN_MARKERS)


def run_cache_dir() -> Path:
    """Where runs read from a store are downloaded: ``$XDG_CACHE_HOME/scalable/runs`` (``~/.cache/...``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "scalable" / "runs"


def _in_runs_dir(run: str, runs_dir: Path) -> Path | None:
    exact = runs_dir / run
    if "/" not in run and os.sep not in run and is_run_dir(exact):
        return exact.resolve()
    if not runs_dir.is_dir() or "/" in run or os.sep in run:
        return None
    candidates = [p.name for p in runs_dir.iterdir() if p.name.startswith(run) and is_run_dir(p)]
    found = pick_run_id(run, candidates, str(runs_dir))
    return (runs_dir / found).resolve() if found is not None else None


def _in_store(run: str, store: ArtifactStore) -> Path | None:
    """The run's telemetry downloaded from ``store``, or ``None`` if the store has no such run."""
    keys = store.list_artifacts(f"runs/{run}")
    run_ids = sorted({k.split("/")[1] for k in keys if len(k.split("/")) == 4 and k.split("/")[2] == "telemetry"})
    run_id = pick_run_id(run, run_ids, f"store {redact_uri(store.uri)}")
    if run_id is None:
        return None
    dest = run_cache_dir() / run_id
    dest.mkdir(parents=True, exist_ok=True)
    for key in keys:
        parts = key.split("/")
        if len(parts) == 4 and parts[1] == run_id and parts[2] == "telemetry" and parts[3] in TELEMETRY_FILES:
            store.get(key, dest / parts[3], overwrite=True)  # verified, written whole; our own cache
    if not is_run_dir(dest):
        return None
    return dest


def _default_store() -> ArtifactStore:
    from scalable.artifacts.factory import build_artifact_store
    from scalable.manifest import resolve_settings

    settings = resolve_settings()
    uri = settings.default_storage
    protocol, _ = split_protocol(uri)
    if protocol in (None, "file", "local"):
        from scalable.artifacts.resolve import local_path

        root = local_path(uri)
        if not (root / ".scalable").is_dir():  # looking for a run must not create a store
            raise StoreNotFoundError(f"no artifact store at {root}")
    return build_artifact_store(uri, **settings.storage_options_for(uri))


def locate_run(
    run: str,
    *,
    runs_dir: str | os.PathLike[str] | None = None,
    store: ArtifactStore | str | None = None,
) -> Path:
    """The directory holding the telemetry of ``run`` (a path, a run id, or a unique id prefix).

    ``runs_dir`` defaults to the settings' runs directory; ``store`` (a store or its URI)
    to the default store, which is only consulted when the run is not found locally.
    Raises :class:`~scalable.errors.RunNotFoundError` when no run fits (naming the places
    searched) or when a prefix fits several runs (naming them).
    """
    text = str(run).strip()
    if not text:
        raise RunNotFoundError("no run given: pass a run id, a unique prefix of one, or a run directory's path")
    as_path = Path(text).expanduser()
    if is_run_dir(as_path):
        return as_path.resolve()
    if runs_dir is None:
        from scalable.manifest import resolve_settings

        runs_dir = resolve_settings().runs_dir
    runs = Path(runs_dir).expanduser()
    looked = [f"runs directory {runs}"]
    if as_path.exists():
        looked.insert(0, f"path {as_path} (a {'directory' if as_path.is_dir() else 'file'} without run.json)")
    elif "/" in text or os.sep in text:
        looked.insert(0, f"path {as_path} (does not exist)")
    found = _in_runs_dir(text, runs)
    if found is not None:
        return found
    if "/" not in text and os.sep not in text and not text.startswith("."):
        store_note = "the default store"
        try:
            if store is None:
                store = _default_store()
            elif isinstance(store, str):
                from scalable.artifacts.factory import build_artifact_store

                store = build_artifact_store(store)
            store_note = f"store {redact_uri(store.uri)} under runs/{text}*/telemetry/"
            found = _in_store(text, store)
        except RunNotFoundError:
            raise
        except ScalableError as exc:
            store_note = f"{store_note} (could not be read: {str(exc).splitlines()[0]})"
            found = None
        if found is not None:
            return found
        looked.append(store_note)
    raise RunNotFoundError(
        f"no run {text!r}: looked in {'; '.join(looked)}. Give a run id or a unique prefix of one "
        f"(ls {runs}) or a run directory's path; SCALABLE_RUNS_DIR and SCALABLE_DEFAULT_STORAGE choose where to look"
    )


__all__ = ["RUN_MARKERS", "TELEMETRY_FILES", "is_run_dir", "locate_run", "run_cache_dir"]
