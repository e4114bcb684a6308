"""Copy and sync artifacts between stores by digest: only the objects a destination lacks move.

:func:`copy_artifact` copies one key, :func:`sync` every key under a prefix. Both work on
the object layer of any two stores (local disk, S3, GCS, Azure, memory), in three steps
for each batch of keys:

1. read the source's head (and, with ``versions="all"``, version) records, and find the
   objects they name (a directory's member objects from its verified tree manifest);
2. write a pending-put marker at the destination, check which objects it already holds
   (one request each for a few, a listing for many) and copy the others, dozens in
   flight: inside one bucket or account with a server-side copy, else streamed through
   this machine and re-hashed on the way (bytes that do not match their digest are never
   completed at the destination, and the ref is reported failed with ``IntegrityError``);
3. only then create the destination's version records, oldest first, and publish its
   head: the destination never shows a ref whose objects are not all there. Records keep
   the source's digest, kind, metadata and ``created_at``; the destination numbers them.

A killed sync, run again, finds the objects it already copied and the versions it already
committed (a destination version with the same digest and ``created_at`` is the same
version) and moves only the rest. At the end, a sync record
``.scalable/sync/<id>.json`` at the destination remembers each source head record's listing
fingerprint (size, time, entity tag) and the destination head's: a later sync with nothing
changed costs a listing of each side and one read, and no per-object request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from scalable.artifacts.callbacks import DEFAULT_CALLBACK, Callback
from scalable.artifacts.digests import TreeEntry, sha256
from scalable.artifacts.keys import ancestors, validate_key, validate_prefix
from scalable.artifacts.layout import (
    REFS,
    SHA256_OBJECTS,
    VERSIONS,
    object_path,
    parse_version_name,
    ref_path,
    version_path,
)
from scalable.artifacts.primitives import ObjectStat
from scalable.artifacts.store import BaseArtifactStore, Layout, RefRecord
from scalable.errors import ArtifactNotFoundError, IntegrityError, KeyConflictError, ScalableError, SyncConflictError

if TYPE_CHECKING:
    from scalable.artifacts.ref import ArtifactRef

log = logging.getLogger("scalable.artifacts")

Versions = Literal["latest", "all"]

SYNC_DIR = ".scalable/sync"
SYNC_FORMAT = "scalable.sync/1"
#: Objects up to this size are copied with one read and one write; larger ones are streamed.
SMALL_OBJECT = 8 * 1024 * 1024
#: Keys planned, copied and committed together (objects of a batch first, then its records).
BATCH_KEYS = 2000
#: Above this many objects, presence at the destination is checked by listing all its objects.
LIST_ALL_ABOVE = 1000
#: At most this many copies in flight.
MAX_IN_FLIGHT = 64


@dataclass
class SyncFailure:
    """A key that could not be copied: nothing of it was committed at the destination."""

    key: str
    error: str
    message: str

    def to_dict(self) -> dict[str, str]:
        """A JSON-ready dict."""
        return {"key": self.key, "error": self.error, "message": self.message}


@dataclass
class SyncSummary:
    """What a copy or sync did (or, with ``dry_run``, would do).

    ``refs``: version records committed at the destination; ``keys``: keys they were
    committed under; ``objects``/``bytes``: objects copied and their bytes (``server_side``
    of them copied by the service); ``skipped``: keys already up to date; ``deleted``:
    destination keys removed by ``delete=True``; ``failed``: keys not copied, and why.
    """

    source: str
    destination: str
    dry_run: bool = False
    keys: int = 0
    refs: int = 0
    objects: int = 0
    bytes: int = 0
    server_side: int = 0
    skipped: int = 0
    deleted: int = 0
    failed: list[SyncFailure] = field(default_factory=list)
    seconds: float = 0.0
    exceptions: dict[str, BaseException] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what ``scalable sync --json`` prints)."""
        return {
            "source": self.source,
            "destination": self.destination,
            "dry_run": self.dry_run,
            "keys": self.keys,
            "refs": self.refs,
            "objects": self.objects,
            "bytes": self.bytes,
            "server_side": self.server_side,
            "skipped": self.skipped,
            "deleted": self.deleted,
            "failed": [f.to_dict() for f in self.failed],
            "seconds": round(self.seconds, 3),
        }

    def _fail(self, key: str, exc: BaseException) -> None:
        self.failed.append(SyncFailure(key, type(exc).__name__, str(exc)))
        self.exceptions[key] = exc


@dataclass
class _Check:
    """How an object's bytes are verified while they are copied: a digest, or a pack's members."""

    size: int | None
    digest: str | None = None
    members: list[TreeEntry] | None = None

    def new(self) -> Any:
        return _PackHasher(self.members) if self.members is not None else sha256()


class _PackHasher:
    """Hashes a pack as it streams, member by member, in manifest order."""

    def __init__(self, members: list[TreeEntry]) -> None:
        self._members = members
        self._index = 0
        self._left = members[0].size if members else 0
        self._h = sha256()
        self.bad: str | None = None
        self._skip_empty()

    def _skip_empty(self) -> None:
        while self._index < len(self._members) and self._left == 0:
            self._finish_member()

    def _finish_member(self) -> None:
        e = self._members[self._index]
        if "sha256:" + self._h.hexdigest() != e.digest and self.bad is None:
            self.bad = e.path
        self._index += 1
        self._h = sha256()
        self._left = self._members[self._index].size if self._index < len(self._members) else 0

    def update(self, data: Any) -> None:
        view = memoryview(data).cast("B")
        while view:
            if self._index >= len(self._members):
                self.bad = self.bad or "(bytes past the last member)"
                return
            n = min(self._left, len(view))
            self._h.update(view[:n])
            self._left -= n
            view = view[n:]
            if self._left == 0:
                self._finish_member()
                self._skip_empty()

    def problem(self) -> str | None:
        if self.bad is None and self._index < len(self._members):
            return f"it is truncated at member {self._members[self._index].path!r}"
        return None if self.bad is None else f"member {self.bad!r} does not match its digest"


@dataclass
class _Plan:
    """One key to copy: the source records to commit (oldest first) and the objects they need."""

    key: str
    dst_key: str
    records: list[RefRecord]
    objects: dict[str, _Check]
    republish: RefRecord | None = None  # all objects and versions there, only the head is stale
    start: int | None = None  # the first version number to try at the destination (None: list them)


def _fingerprint(stat: ObjectStat) -> list[Any]:
    return [stat.size, stat.mtime.isoformat(), stat.etag]


def _trusted(fp: list[Any], before: float) -> bool:
    """Whether an unchanged fingerprint proves an unchanged record (a coarse clock needs the record to be old)."""
    if fp[2]:
        return True
    from datetime import datetime

    mtime = datetime.fromisoformat(fp[1])
    return mtime.microsecond != 0 or mtime.timestamp() < before - 2.0


def _list_heads(store: BaseArtifactStore, prefix: str) -> dict[str, ObjectStat]:
    """The head records of the keys starting with ``prefix``, with their listing stats (one listing)."""
    folder = prefix.rpartition("/")[0]
    rel_dir = f"{REFS}/{folder}" if folder else REFS
    out: dict[str, ObjectStat] = {}
    for name, stat in store._list_stats(rel_dir).items():
        key = f"{folder}/{name}" if folder else name
        if key.startswith(prefix):
            out[key] = stat
    return out


def _list_versions(store: BaseArtifactStore, prefix: str) -> dict[str, list[int]]:
    """The version numbers of every key starting with ``prefix``, ascending (one listing; layout 2 or 3)."""
    folder = prefix.rpartition("/")[0]
    rel_dir = f"{VERSIONS}/{folder}" if folder else VERSIONS
    layout = store._records_layout()
    numbers: dict[str, list[int]] = {}
    for name in store._list_files(rel_dir):
        parsed = parse_version_name(f"{folder}/{name}" if folder else name, layout)
        if parsed is not None and parsed[0].startswith(prefix):
            numbers.setdefault(parsed[0], []).append(parsed[1])
    return {k: sorted(v) for k, v in numbers.items()}


def _identity(ref: ArtifactRef) -> tuple[str, str]:
    """What makes two version records copies of one version: its digest and creation time."""
    return ref.digest, ref.created_at.isoformat()


def _same_content(a: ArtifactRef, b: ArtifactRef) -> bool:
    return a.digest == b.digest and a.kind is b.kind and a.metadata == b.metadata


def _record_name(src: BaseArtifactStore, prefix: str, dst_prefix: str, versions: str) -> str:
    ident = json.dumps([src.uri, prefix, dst_prefix, versions]).encode()
    return f"{SYNC_DIR}/{hashlib.sha256(ident).hexdigest()[:32]}.json"


class _Sync:
    """One run of :func:`sync` (or :func:`copy_artifact`): the state shared by its batches."""

    def __init__(
        self,
        src: BaseArtifactStore,
        dst: BaseArtifactStore,
        *,
        prefix: str,
        dst_prefix: str,
        versions: str,
        overwrite: bool,
        dry_run: bool,
        callback: Callback,
    ) -> None:
        if versions not in ("latest", "all"):
            raise ValueError(f"versions must be 'latest' or 'all', not {versions!r}")
        self.src, self.dst = src, dst
        self.prefix, self.dst_prefix = prefix, dst_prefix
        self.versions = versions
        self.overwrite = overwrite
        self.dry_run = dry_run
        self.callback = callback
        self.summary = SyncSummary(src.uri, dst.uri, dry_run=dry_run)
        self.workers = max(1, min(MAX_IN_FLIGHT, max(src.max_concurrency, dst.max_concurrency)))
        self.dst_keys: set[str] = set()
        self.src_versions: dict[str, list[int]] | None = None
        self.dst_versions: dict[str, list[int]] | None = None
        self.planned_bytes = 0
        self.lock = threading.Lock()

    # ------------------------------------------------------------------ helpers
    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        if len(items) < 2 or self.workers == 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(max_workers=min(self.workers, len(items)), thread_name_prefix="scalable-sync") as pool:
            return list(pool.map(fn, items))

    def dst_key_of(self, key: str) -> str:
        return validate_key(self.dst_prefix + key[len(self.prefix) :])

    def records_of(
        self, store: BaseArtifactStore, listing: dict[str, list[int]], keys: Iterable[str], *, headless: bool = False
    ) -> dict[str, list[RefRecord]]:
        """The history of each of ``keys``, oldest first, in one batched read.

        As the store's readers see it (up to the head, after the last tombstone), or with
        ``headless`` every record after the last tombstone, the head or not.
        """
        layout = store._records_layout()
        wanted = {k: listing.get(k, []) for k in keys}
        heads = [] if headless else [ref_path(k) for k in wanted]
        found = store._read_many(heads + [version_path(k, n, layout) for k, ns in wanted.items() for n in ns])
        if headless:
            return {k: store._retained(k, ns, found, layout) for k, ns in wanted.items()}
        return {k: store._history(k, ns, found, layout) for k, ns in wanted.items()}

    def heads_of(self, store: BaseArtifactStore, keys: Iterable[str]) -> dict[str, RefRecord]:
        keys = list(keys)
        found = store._read_many([ref_path(k) for k in keys])
        out: dict[str, RefRecord] = {}
        for k in keys:
            data = found.get(ref_path(k))
            if data is not None:
                rec = RefRecord.from_bytes(data, k, store.uri)
                if isinstance(rec, RefRecord):
                    out[k] = rec
        return out

    def objects_of(self, record: RefRecord) -> dict[str, _Check]:
        """The objects ``record`` needs, each with how to verify it (a tree's manifest is read and verified)."""
        ref = record.ref
        if record.layout == Layout.FILE:
            return {object_path(ref.digest): _Check(ref.size_bytes, ref.digest)}
        entries = self.src._tree_entries(record)
        files = [e for e in entries if e.type == "file"]
        out = {object_path(ref.digest): _Check(None, ref.digest)}
        if record.layout == Layout.PACKED:
            out[record.object] = _Check(ref.size_bytes, members=files)
        else:
            for e in files:
                assert e.digest is not None
                out[object_path(e.digest)] = _Check(e.size, e.digest)
        return out

    def conflicts(self, dst_key: str) -> str | None:
        for parent in ancestors(dst_key):
            if parent in self.dst_keys:
                return parent
        below = dst_key + "/"
        return next((k for k in self.dst_keys if k.startswith(below)), None)

    # ------------------------------------------------------------------ planning
    def plan(self, keys: list[str], dst_present: set[str]) -> list[_Plan]:
        """What to copy for each of ``keys``; keys already up to date count as skipped, refusals as failed."""
        src_heads = self.heads_of(self.src, keys)
        dst_heads = self.heads_of(self.dst, [self.dst_key_of(k) for k in keys if self.dst_key_of(k) in dst_present])
        src_all: dict[str, list[RefRecord]] = {}
        dst_all: dict[str, list[RefRecord]] = {}
        if self.dst_versions is not None:
            # Records without a head: a killed run committed them but not the head (or a delete's tombstone).
            # With every version: all the records after the last tombstone, so none is copied twice.
            dkeys = [self.dst_key_of(k) for k in keys]
            wanted = [k for k in dkeys if k in self.dst_versions and (self.versions == "all" or k not in dst_heads)]
            dst_all = self.records_of(self.dst, self.dst_versions, wanted, headless=True)
        if self.versions == "all":
            assert self.src_versions is not None
            src_all = self.records_of(self.src, self.src_versions, [k for k in keys if k in src_heads])
        plans: list[_Plan] = []
        for key in keys:
            head = src_heads.get(key)
            if head is None:
                continue  # deleted since it was listed
            dkey = self.dst_key_of(key)
            dhead = dst_heads.get(dkey)
            try:
                plan = self.plan_key(key, dkey, head, dhead, src_all.get(key), dst_all.get(dkey, []))
            except ScalableError as exc:
                self.summary._fail(key, exc)
                continue
            if plan is None:
                self.summary.skipped += 1
            else:
                plans.append(plan)
        return plans

    def plan_key(
        self,
        key: str,
        dkey: str,
        head: RefRecord,
        dhead: RefRecord | None,
        history: list[RefRecord] | None,
        dst_history: list[RefRecord],
    ) -> _Plan | None:
        if self.versions == "latest":
            if dhead is not None and _same_content(dhead.ref, head.ref):
                return None
            if dhead is None and dst_history and _identity(dst_history[-1].ref) == _identity(head.ref):
                return _Plan(key, dkey, [], {}, republish=dst_history[-1])
            todo = [head]
        else:
            source = history or [head]
            have = {_identity(r.ref) for r in dst_history}
            todo = [r for r in source if _identity(r.ref) not in have]
            if not todo:
                newest = dst_history[-1] if dst_history else None
                if newest is not None and (dhead is None or dhead.version != newest.version):
                    return _Plan(key, dkey, [], {}, republish=newest)  # a killed run committed versions, not the head
                return None
        if dhead is not None and not self.overwrite and not self.came_from_source(key, dhead, history):
            raise SyncConflictError(
                f"{dkey!r} in {self.dst.uri} holds a different artifact ({dhead.ref.digest[:19]}) than {key!r} in "
                f"{self.src.uri} ({head.ref.digest[:19]}), and overwriting was refused: copy it under another key, "
                "or allow overwriting (the destination keeps both as versions)"
            )
        if dhead is None and dkey not in self.dst_keys and (other := self.conflicts(dkey)) is not None:
            raise KeyConflictError(
                f"cannot copy {key!r} to {dkey!r} in {self.dst.uri}: {other!r} is already an artifact there, and "
                "artifacts cannot nest; copy it under another key"
            )
        objects: dict[str, _Check] = {}
        for rec in todo:
            objects.update(self.objects_of(rec))
        start: int | None = None  # None: the numbers are listed
        if self.dst_versions is not None:  # above every number there, tombstones too
            start = max(dhead.version if dhead else 0, (self.dst_versions.get(dkey) or [0])[-1]) + 1
        return _Plan(key, dkey, todo, objects, start=start)

    def came_from_source(self, key: str, dhead: RefRecord, history: list[RefRecord] | None) -> bool:
        """Whether the destination's head is a copy of one of the source key's versions."""
        if history is None:
            history = self.src._version_records(key)
        return _identity(dhead.ref) in {_identity(r.ref) for r in history}

    # ------------------------------------------------------------------ copying
    def present(self, names: list[str]) -> set[str]:
        if len(names) > LIST_ALL_ABOVE:
            held = {f"{SHA256_OBJECTS}/{n}" for n in self.dst._list_files(SHA256_OBJECTS)}
            return {n for n in names if n in held}
        return self.dst._present(names)

    def copy_object(self, rel: str, check: _Check) -> int:
        """Copy one object from the source to the destination, verified; the bytes moved."""
        server = getattr(self.dst, "_server_copy_from", None)
        if server is not None and server(self.src, rel, rel):
            with self.lock:
                self.summary.server_side += 1
            size = check.size if check.size is not None else 0
            self.callback.relative_update(size)
            return size
        if check.size is None or check.size <= SMALL_OBJECT:
            data = self.src._read_bytes(rel)
            h = check.new()
            h.update(data)
            self.verify(rel, check, h, len(data))
            self.dst._write_bytes(data, rel)
            self.callback.relative_update(len(data))
            return len(data)
        moved = 0
        with self.src._open_read(rel) as f, self.dst._open_write(rel) as out:
            h = check.new()
            while chunk := f.read(4 * 1024 * 1024):
                h.update(chunk)
                out.write(chunk)
                moved += len(chunk)
                self.callback.relative_update(len(chunk))
            self.verify(rel, check, h, moved)  # raising here aborts the write: the object never completes
        return moved

    def verify(self, rel: str, check: _Check, h: Any, size: int) -> None:
        if isinstance(h, _PackHasher):
            problem = h.problem()
        elif check.digest is not None and "sha256:" + h.hexdigest() != check.digest:
            problem = f"its bytes hash to sha256:{h.hexdigest()[:12]}..., not {check.digest[:19]}..."
        elif check.size is not None and size != check.size:
            problem = f"it has {size} bytes, not {check.size}"
        else:
            problem = None
        if problem is not None:
            raise IntegrityError(
                f"object {rel} in {self.src.uri} failed verification while it was copied ({problem}); nothing "
                "was committed for the artifacts that need it: re-put them at the source from their files, or "
                "restore the source from a copy"
            )

    def run_batch(self, keys: list[str], dst_present: set[str]) -> None:
        plans = self.plan(keys, dst_present)
        if not plans:
            return
        names = sorted({rel for p in plans for rel in p.objects})
        checks = {rel: check for p in plans for rel, check in p.objects.items()}
        if self.dry_run:
            held = self.present(names) if names else set()
            missing = [n for n in names if n not in held]
            self.summary.objects += len(missing)
            self.summary.bytes += sum(checks[n].size or 0 for n in missing)
            self.summary.refs += sum(len(p.records) for p in plans)
            self.summary.keys += sum(1 for p in plans if p.records)
            return
        with self.dst._pending(names):
            held = self.present(names) if names else set()
            missing = [n for n in names if n not in held]
            self.planned_bytes += sum(checks[n].size or 0 for n in missing)
            self.callback.set_size(self.planned_bytes)
            errors: dict[str, BaseException] = {}

            def one(rel: str) -> int:
                try:
                    return self.copy_object(rel, checks[rel])
                except (ScalableError, OSError) as exc:
                    errors[rel] = exc
                    return 0

            moved = self.map(one, missing)
            self.summary.objects += sum(1 for rel in missing if rel not in errors)
            self.summary.bytes += sum(moved)
            ready: list[_Plan] = []
            for p in plans:
                bad = next((errors[rel] for rel in p.objects if rel in errors), None)
                if bad is not None:
                    self.summary._fail(p.key, bad)
                else:
                    ready.append(p)

            def commit(p: _Plan) -> RefRecord | BaseException:
                try:
                    return self.commit(p)
                except (ScalableError, OSError) as exc:
                    return exc

            published: list[RefRecord] = []
            for p, made in zip(ready, self.map(commit, ready), strict=True):
                if isinstance(made, BaseException):
                    self.summary._fail(p.key, made)
                    continue
                published.append(made)
                self.summary.refs += len(p.records)
                self.summary.keys += 1 if p.records else 0
                self.dst_keys.add(p.dst_key)
            self.confirm_heads(published)

    def confirm_heads(self, published: list[RefRecord]) -> None:
        """After the heads are written: where another writer made a newer version meanwhile, publish that one.

        The check :meth:`BaseArtifactStore._publish_head` makes per key, made for the whole
        batch with one listing of the version records (or, for a few keys among many, a
        look-up of each one's next number: versions are numbered without gaps).
        """
        if not published:
            return
        if len(published) > 64 and len(self.dst_keys) <= 4 * len(published):
            listing = _list_versions(self.dst, self.dst_prefix)
            newer = [r for r in published if (listing.get(r.ref.key) or [0])[-1] > r.version]
        else:
            flags = self.map(lambda r: self.dst._exists(version_path(r.ref.key, r.version + 1)), published)
            newer = [r for r, flag in zip(published, flags, strict=True) if flag]
        for record in newer:
            self.dst._publish_head(record)

    def commit(self, plan: _Plan) -> RefRecord:
        """Create the destination's version records of ``plan``, oldest first, then publish its head."""
        dst, dkey = self.dst, plan.dst_key
        if plan.republish is not None:
            dst._publish_head(plan.republish)
            return plan.republish
        uri = dst.uri_for(dkey)
        last: RefRecord | None = None
        start = plan.start
        for rec in plan.records:
            made: dict[int, RefRecord] = {}

            def body(n: int, rec: RefRecord = rec, made: dict[int, RefRecord] = made) -> bytes:
                ref = rec.ref.model_copy(update={"uri": uri, "key": dkey, "version": n})
                made[n] = RefRecord(ref, rec.layout)
                return made[n].to_bytes()

            number = dst._create_next(dkey, start, body)
            last = made[number]
            start = number + 1
        assert last is not None
        dst._write_bytes(last.to_bytes(), ref_path(dkey))  # the check for newer versions: confirm_heads
        if dst.keep_versions is not None:
            dst._apply_retention(dkey)
        return last


def _read_sync_record(dst: BaseArtifactStore, rel: str) -> dict[str, Any]:
    try:
        doc = json.loads(dst._read_bytes(rel))
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return {}
    except ValueError:
        log.warning("ignoring the damaged sync record %s/%s", dst.uri, rel)
        return {}
    if not isinstance(doc, dict) or doc.get("format") != SYNC_FORMAT or not isinstance(doc.get("keys"), dict):
        return {}
    return doc


def _raise_first(summary: SyncSummary) -> None:
    if not summary.failed:
        return
    first = summary.failed[0]
    exc = summary.exceptions[first.key]
    if len(summary.failed) > 1:
        exc.add_note(f"{len(summary.failed) - 1} more keys failed: {', '.join(f.key for f in summary.failed[1:6])}")
    exc.summary = summary  # type: ignore[attr-defined]
    raise exc


def sync(
    src_store: BaseArtifactStore,
    dst_store: BaseArtifactStore,
    prefix: str = "",
    *,
    dst_prefix: str | None = None,
    delete: bool = False,
    dry_run: bool = False,
    versions: Versions = "latest",
    overwrite: bool = True,
    callback: Callback = DEFAULT_CALLBACK,
    raise_on_failure: bool = True,
) -> SyncSummary:
    """Make the keys of ``dst_store`` under ``dst_prefix`` match those of ``src_store`` under ``prefix``.

    Only objects the destination lacks are copied (by digest); refs keep their digest,
    kind, metadata and creation time. ``versions="all"`` copies every retained version,
    in order, that the destination does not hold yet; ``"latest"`` the head version only.
    ``dst_prefix`` (default: ``prefix``) replaces ``prefix`` at the start of each key.

    A destination key that holds a different artifact gets the source's as its newest
    version (both are kept) or, with ``overwrite=False``, is refused with
    ``SyncConflictError``. ``delete=True`` deletes destination keys under ``dst_prefix``
    that the source does not have (their history too; gc reclaims the bytes).
    ``dry_run=True`` counts what would move and changes nothing.

    Every key that cannot be copied (a source object that fails verification:
    ``IntegrityError``) is left uncommitted at the destination while the others go on;
    then the first failure is raised, with the summary as its ``summary`` attribute, or,
    with ``raise_on_failure=False``, listed in the returned summary's ``failed``.
    """
    started = time.monotonic()
    prefix = validate_prefix(prefix)
    dst_prefix = prefix if dst_prefix is None else validate_prefix(dst_prefix)
    run = _Sync(
        src_store,
        dst_store,
        prefix=prefix,
        dst_prefix=dst_prefix,
        versions=versions,
        overwrite=overwrite,
        dry_run=dry_run,
        callback=callback,
    )
    listed_at = time.time()
    src_heads = _list_heads(src_store, prefix)
    dst_heads = _list_heads(dst_store, dst_prefix)
    run.dst_keys = set(dst_heads)
    record_rel = _record_name(src_store, prefix, dst_prefix, versions)
    record = _read_sync_record(dst_store, record_rel) if src_heads else {}
    known: dict[str, Any] = record.get("keys", {})
    before = float(record.get("listed_at", 0.0))
    todo: list[str] = []
    entries: dict[str, dict[str, Any]] = {}
    for key, stat in src_heads.items():
        fp = _fingerprint(stat)
        dkey = run.dst_key_of(key)
        prev = known.get(key)
        dstat = dst_heads.get(dkey)
        if (
            isinstance(prev, dict)
            and prev.get("src") == fp
            and dstat is not None
            and prev.get("dst") == _fingerprint(dstat)
            and _trusted(fp, before)
            and _trusted(prev["dst"], before)
        ):
            run.summary.skipped += 1
            entries[key] = prev
        else:
            todo.append(key)
            entries[key] = {"src": fp}
    extra = sorted(
        k for k in dst_heads if not (k.startswith(dst_prefix) and prefix + k[len(dst_prefix) :] in src_heads)
    )
    if todo:
        if not dry_run:
            dst_store._prepare_write()
        if versions == "all":
            run.src_versions = _list_versions(src_store, prefix)
        run.dst_versions = _list_versions(dst_store, dst_prefix)  # new numbers go above tombstones
        folder = dst_prefix.rpartition("/")[0]
        if folder:  # an artifact above the listed folder would have the new keys nest in it
            above = [*ancestors(folder), folder]
            run.dst_keys.update(k for k, held in zip(above, run.map(dst_store.exists, above), strict=True) if held)
        for start in range(0, len(todo), BATCH_KEYS):
            run.run_batch(todo[start : start + BATCH_KEYS], set(dst_heads))
    if delete:
        for dkey in extra:
            if not dry_run:
                try:
                    dst_store.delete(dkey)
                except ArtifactNotFoundError:
                    continue
            run.summary.deleted += 1
    if not dry_run and (todo or (delete and extra) or not record):
        failed = {f.key for f in run.summary.failed}
        after = _list_heads(dst_store, dst_prefix) if todo else dst_heads
        keys_doc: dict[str, Any] = {}
        for key, entry in entries.items():
            dstat = after.get(run.dst_key_of(key))
            if key in failed or dstat is None:
                continue
            keys_doc[key] = {"src": entry["src"], "dst": _fingerprint(dstat)}
        doc = {
            "format": SYNC_FORMAT,
            "source": src_store.uri,
            "prefix": prefix,
            "dst_prefix": dst_prefix,
            "versions": versions,
            "listed_at": listed_at,
            "keys": keys_doc,
        }
        if src_heads or record:
            dst_store._write_bytes(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode(), record_rel)
    run.summary.seconds = time.monotonic() - started
    if raise_on_failure:
        _raise_first(run.summary)
    return run.summary


def copy_artifact(
    src_store: BaseArtifactStore,
    key: str,
    dst_store: BaseArtifactStore,
    dst_key: str | None = None,
    *,
    versions: Versions = "latest",
    overwrite: bool = True,
    callback: Callback = DEFAULT_CALLBACK,
) -> ArtifactRef:
    """Copy the artifact ``key`` of ``src_store`` to ``dst_key`` (default: ``key``) of ``dst_store``; its ref there.

    Only objects the destination lacks move, verified on the way (``IntegrityError``, and
    nothing committed, if a source object does not match its digest). The ref keeps its
    digest, kind, metadata and creation time; ``versions="all"`` copies every retained
    version, in order. A destination key holding a different artifact gets this one as
    its newest version, or with ``overwrite=False`` raises ``SyncConflictError``.
    """
    key = validate_key(key)
    dkey = validate_key(dst_key if dst_key is not None else key)
    run = _Sync(
        src_store,
        dst_store,
        prefix=key,
        dst_prefix=dkey,
        versions=versions,
        overwrite=overwrite,
        dry_run=False,
        callback=callback,
    )
    src_store._require_record(key)
    dst_store._prepare_write()
    present = dst_store._exists(ref_path(dkey))
    if not present:
        for parent in ancestors(dkey):
            if dst_store._exists(ref_path(parent)):
                run.dst_keys.add(parent)
        if dst_store._has_children(ref_path(dkey)):
            run.dst_keys.add(next(iter(_list_heads(dst_store, dkey + "/")), dkey + "/?"))
    else:
        run.dst_keys.add(dkey)
    if versions == "all":
        run.src_versions = {key: src_store._version_numbers(key, src_store._records_layout())}
    run.dst_versions = {dkey: dst_store._version_numbers(dkey)}
    run.run_batch([key], {dkey} if present else set())
    _raise_first(run.summary)
    return dst_store._require_record(dkey).ref


__all__ = ["SyncFailure", "SyncSummary", "copy_artifact", "sync"]
