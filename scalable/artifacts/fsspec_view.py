"""``scalable://``: a read-only fsspec filesystem that presents any artifact store by key.

pandas, xarray, dask, pyarrow and zarr open paths through fsspec, so this view lets them
read artifacts directly: ``pandas.read_csv(ref.url)``. A URL names the store and the key::

    scalable://<store URI, percent-encoded>/<key>[/<member of a directory artifact>]

for example ``scalable://s3%3A%2F%2Fbucket%2Fresults/tables/run1.csv``
(:func:`artifact_url` and :attr:`ArtifactRef.url <scalable.artifacts.ref.ArtifactRef.url>`
write them). ``ScalableFileSystem(store=...)`` binds one store instead; its paths are then
plain keys. Reads go through the store's public API and are verified as scalable verifies
them: reading a stream to its end checks its digest (``IntegrityError`` in place of
end-of-file if the bytes differ); a member of a packed directory is read by range.

Refs are remembered for ``ref_ttl`` seconds (default 5; ``0`` reads the ref on every
call), so a reader of many members (zarr) reads each ref once, not once per member; a key
re-put meanwhile shows its new version after at most that long, or at once after
``invalidate_cache()``. The bytes are always those of the version the ref names.

The inner store is built with :func:`~scalable.artifacts.factory.build_artifact_store`,
with the manifest's storage options for its URI overlaid by the options given to the
filesystem (``fsspec.open(url, endpoint_url=...)``, pandas' ``storage_options=``).
fsspec finds the protocol through the ``fsspec.specs`` entry point; importing scalable
registers it too.
"""

from __future__ import annotations

import bisect
import threading
import time
from typing import Any, BinaryIO
from urllib.parse import quote, unquote

from fsspec.spec import AbstractFileSystem
from fsspec.utils import stringify_path

from scalable.artifacts.base import ArtifactStore
from scalable.artifacts.digests import TreeEntry
from scalable.artifacts.ref import ArtifactKind, ArtifactRef
from scalable.artifacts.uris import encode_key
from scalable.errors import ArtifactNotFoundError, InvalidKeyError

PROTOCOL = "scalable"
_SAFE_IN_KEY = "/:@!$&'()*+,;=-._~"

#: Options of fsspec's own; every other option is a storage option of the inner store.
_FSSPEC_OPTIONS = ("skip_instance_cache", "use_listings_cache", "listings_expiry_time", "max_paths", "asynchronous")


def store_url(store_uri: str) -> str:
    """The ``scalable://`` URL of a store's root."""
    return f"{PROTOCOL}://{quote(store_uri, safe='')}"


def artifact_url(ref_or_store: ArtifactRef | str, key: str | None = None) -> str:
    """The ``scalable://`` URL of an artifact, from its ref or from a store URI and a key."""
    if isinstance(ref_or_store, ArtifactRef):
        ref = ref_or_store
        tail = f"/{encode_key(ref.key)}"  # ref.uri is uri_for(key): the key percent-encoded where it must be
        if not ref.uri.endswith(tail):
            raise ValueError(f"ref.uri {ref.uri!r} does not end with its key {ref.key!r}: its store is unknown")
        store_uri, key = ref.uri[: -len(tail)], ref.key
    else:
        if key is None:
            raise TypeError("artifact_url(store_uri, key) needs the key")
        store_uri = ref_or_store
    return f"{store_url(store_uri)}/{quote(key, safe=_SAFE_IN_KEY)}"


class ScalableFileSystem(AbstractFileSystem):
    """Artifacts of any store as read-only files: ``ls``, ``info`` (size, digest, kind), ``open``, ``cat``."""

    protocol = (PROTOCOL,)
    root_marker = ""

    def __init__(self, store: ArtifactStore | str | None = None, *, ref_ttl: float = 5.0, **options: Any):
        fsspec_options = {k: options.pop(k) for k in _FSSPEC_OPTIONS if k in options}
        super().__init__(**fsspec_options)
        self._options = options
        self._ttl = ref_ttl
        self._lock = threading.Lock()
        self._stores: dict[str, ArtifactStore] = {}
        # Refs read (None: no artifact there) and when: a reader of many members (zarr) then
        # costs one ref read per artifact and prefix every ``ref_ttl`` seconds, not one per member.
        self._refs: dict[tuple[str, str], tuple[ArtifactRef | None, float]] = {}
        self._trees: dict[tuple[str, str], tuple[str, list[str], dict[str, TreeEntry]]] = {}
        self._bound: ArtifactStore | None = self._build(store) if isinstance(store, str) else store

    # ------------------------------------------------------------------ paths
    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        text = stringify_path(path)
        for head in (f"{PROTOCOL}://", f"{PROTOCOL}::"):
            if text.startswith(head):
                text = text[len(head) :]
                break
        return text.strip("/")

    def unstrip_protocol(self, name: str) -> str:
        """The full URL of a path of this filesystem."""
        return f"{PROTOCOL}://{name}"

    def _build(self, uri: str) -> ArtifactStore:
        from scalable.artifacts.factory import build_artifact_store

        options = {**_manifest_options(uri), **self._options}
        return build_artifact_store(uri, **options)

    def _split(self, path: str) -> tuple[ArtifactStore, str, str]:
        """The store a path names, the path's prefix that names the store, and the key part (unquoted)."""
        path = self._strip_protocol(path)
        if self._bound is not None:
            return self._bound, "", unquote(path)
        head, _, rest = path.partition("/")
        if "://" not in unquote(head):  # a store URI (a local store's is file:///...), never a bare path
            raise FileNotFoundError(
                "a scalable:// path starts with its store's URI, percent-encoded: "
                "scalable://s3%3A%2F%2Fbucket%2Fprefix/key (see scalable.artifacts.fsspec_view.artifact_url)"
            )
        uri = unquote(head)
        with self._lock:
            store = self._stores.get(uri)
            if store is None:
                store = self._stores[uri] = self._build(uri)
        return store, head, unquote(rest)

    @staticmethod
    def _join(head: str, key: str) -> str:
        quoted = quote(key, safe=_SAFE_IN_KEY)
        return f"{head}/{quoted}" if head and quoted else (head or quoted)

    def _ref(self, store: ArtifactStore, key: str) -> ArtifactRef | None:
        now = time.monotonic()
        cached = self._refs.get((store.uri, key))
        if cached is not None and now - cached[1] < self._ttl:
            return cached[0]
        try:
            ref: ArtifactRef | None = store.info(key)
        except (ArtifactNotFoundError, InvalidKeyError):
            ref = None
        self._refs[(store.uri, key)] = (ref, now)
        if ref is not None and cached is not None and cached[0] is not None and cached[0].digest != ref.digest:
            self._trees.pop((store.uri, key), None)  # a new version: its tree is another
        return ref

    def _locate(self, store: ArtifactStore, rel: str) -> tuple[ArtifactRef, str] | None:
        """The artifact at ``rel`` or above it, and the member path below it (``""``: the artifact itself)."""
        if not rel:
            return None
        parts = rel.split("/")
        # Artifacts cannot nest, so the shortest prefix that is an artifact is the one.
        for n in range(1, len(parts) + 1):
            ref = self._ref(store, "/".join(parts[:n]))
            if ref is not None:
                member = "/".join(parts[n:])
                if member and ref.kind is not ArtifactKind.DIR:
                    return None
                return ref, member
        return None

    def _tree(self, store: ArtifactStore, ref: ArtifactRef) -> tuple[list[str], dict[str, TreeEntry]]:
        cache_key = (store.uri, ref.key)
        found = self._trees.get(cache_key)
        if found is None or found[0] != ref.digest:
            entries = store.tree(ref.key)  # type: ignore[attr-defined]
            found = (ref.digest, [e.path for e in entries], {e.path: e for e in entries})
            self._trees[cache_key] = found
        return found[1], found[2]

    def invalidate_cache(self, path: str | None = None) -> None:
        """Forget the refs and trees read so far, so the next call reads the store again."""
        self._refs.clear()
        self._trees.clear()
        super().invalidate_cache(path)

    # ------------------------------------------------------------------ the filesystem API
    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        store, head, rel = self._split(path)
        name = self._join(head, rel)
        found = self._locate(store, rel)
        if found is not None:
            ref, member = found
            if not member:
                return _ref_info(name, ref)
            _, entries = self._tree(store, ref)
            entry = entries.get(member)
            if entry is None:
                raise FileNotFoundError(f"directory artifact {ref.key!r} in {store.uri} has no member {member!r}")
            if entry.type == "dir":
                return {"name": name, "size": 0, "type": "directory"}
            return {"name": name, "size": entry.size, "type": "file", "digest": entry.digest, "kind": "member"}
        if not rel or store.list_artifacts(rel + "/"):
            return {"name": name, "size": 0, "type": "directory"}
        raise FileNotFoundError(f"no artifact or folder {rel!r} in {store.uri}")

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        store, head, rel = self._split(path)
        found = self._locate(store, rel)
        if found is not None:
            ref, member = found
            if ref.kind is not ArtifactKind.DIR:
                listing = [_ref_info(self._join(head, rel), ref)]
            else:
                listing = self._ls_members(store, head, ref, member)
        else:
            listing = self._ls_folder(store, head, rel)
            if not listing and rel:
                raise FileNotFoundError(f"no artifact or folder {rel!r} in {store.uri}")
        return listing if detail else [e["name"] for e in listing]

    def _ls_folder(self, store: ArtifactStore, head: str, rel: str) -> list[dict[str, Any]]:
        prefix = f"{rel}/" if rel else ""
        out: dict[str, dict[str, Any]] = {}
        for ref in store.iter_refs(prefix):
            child = ref.key[len(prefix) :].split("/", 1)[0]
            name = self._join(head, prefix + child)
            if prefix + child == ref.key:
                self._refs[(store.uri, ref.key)] = (ref, time.monotonic())
                out[name] = _ref_info(name, ref)
            else:
                out.setdefault(name, {"name": name, "size": 0, "type": "directory"})
        return [out[n] for n in sorted(out)]

    def _ls_members(self, store: ArtifactStore, head: str, ref: ArtifactRef, member: str) -> list[dict[str, Any]]:
        paths, entries = self._tree(store, ref)
        if member and member not in entries:
            raise FileNotFoundError(f"directory artifact {ref.key!r} in {store.uri} has no member {member!r}")
        if member and entries[member].type == "file":
            e = entries[member]
            name = self._join(head, f"{ref.key}/{member}")
            return [{"name": name, "size": e.size, "type": "file", "digest": e.digest, "kind": "member"}]
        prefix = f"{member}/" if member else ""
        out = []
        start = bisect.bisect_left(paths, prefix)
        for p in paths[start:]:
            if not p.startswith(prefix):
                break
            if "/" in p[len(prefix) :]:
                continue
            e = entries[p]
            name = self._join(head, f"{ref.key}/{p}")
            if e.type == "dir":
                out.append({"name": name, "size": 0, "type": "directory"})
            else:
                out.append({"name": name, "size": e.size, "type": "file", "digest": e.digest, "kind": "member"})
        return out

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> BinaryIO:
        if mode != "rb":
            raise PermissionError(f"scalable:// is read-only: open {path!r} with mode 'rb', write with store.put")
        store, _, rel = self._split(path)
        found = self._locate(store, rel)
        if found is None:
            raise FileNotFoundError(f"no artifact {rel!r} in {store.uri}")
        ref, member = found
        if ref.kind is ArtifactKind.DIR:
            entry = self._tree(store, ref)[1].get(member) if member else None
            if member and entry is None:
                raise FileNotFoundError(f"directory artifact {ref.key!r} in {store.uri} has no member {member!r}")
            if entry is None or entry.type == "dir":
                raise IsADirectoryError(f"{rel!r} in {store.uri} is a directory: open one of its files")
        return store.open(ref.key, member=member) if member else store.open(ref.key)  # type: ignore[call-arg]

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        with self._open(path) as f:
            if start is None and end is None:
                return f.read()  # read to the end: verified
            size = f.seek(0, 2)
            lo = 0 if start is None else (start if start >= 0 else max(0, size + start))
            hi = size if end is None else (end if end >= 0 else max(0, size + end))
            f.seek(lo)
            return f.read(max(0, hi - lo))

    def _rm(self, path: str) -> None:
        raise PermissionError("scalable:// is read-only: delete artifacts with store.delete")

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        raise PermissionError("scalable:// is read-only: artifacts are written with store.put")

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        raise PermissionError("scalable:// is read-only: artifacts are written with store.put")


def _ref_info(name: str, ref: ArtifactRef) -> dict[str, Any]:
    return {
        "name": name,
        "size": ref.size_bytes,
        "type": "directory" if ref.kind is ArtifactKind.DIR else "file",
        "digest": ref.digest,
        "kind": ref.kind.value,
        "created": ref.created_at.timestamp(),
    }


def _manifest_options(uri: str) -> dict[str, Any]:
    """The manifest's storage options for ``uri`` (none when there is no manifest)."""
    from scalable.manifest import resolve_settings

    return resolve_settings().storage_options_for(uri)


def register() -> None:
    """Make ``scalable://`` known to fsspec in this process (the entry point does it for new ones)."""
    from fsspec.registry import known_implementations, register_implementation

    if PROTOCOL not in known_implementations:
        register_implementation(PROTOCOL, f"{__name__}.ScalableFileSystem")


__all__ = ["PROTOCOL", "ScalableFileSystem", "artifact_url", "register", "store_url"]
