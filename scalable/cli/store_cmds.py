"""Store commands: ``put``, ``get``, ``ls``, ``info``, ``rm`` and ``verify`` on ``STORE#KEY`` URIs.

Each is a thin layer over the :class:`~scalable.artifacts.base.ArtifactStore` API; the URI
syntax and the way stores are opened are in :mod:`scalable.cli.locate`. A malformed URI is
found while the arguments are parsed (a usage error, exit 2); a missing key, a damaged
artifact or an unreachable store is a failure (exit 1), reported in one line.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from scalable.cli.options import (
    EXIT_FAILURE,
    ArtifactArg,
    Json,
    Quiet,
    check_uri,
    confirm_or_exit,
    human_size,
    plural,
    short_digest,
)
from scalable.cli.output import Output

if TYPE_CHECKING:
    from fsspec.callbacks import Callback

    from scalable.artifacts.ref import ArtifactRef
    from scalable.artifacts.store import BaseArtifactStore

KINDS = ("file", "dir", "blob")


def _check_kind(value: str | None) -> str | None:
    if value is not None and value not in KINDS:
        raise typer.BadParameter(f"{value!r} is not a kind: use --kind file, --kind dir or --kind blob")
    return value


def _check_meta(values: list[str] | None) -> list[str]:
    for item in values or []:
        name, eq, _ = item.partition("=")
        if not eq or not name.strip():
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE: write --meta owner=alice")
    return list(values or [])


def _bar_callback(advance: Any) -> Callback:
    """An fsspec callback that moves a :meth:`Output.progress` bar (fsspec is imported only here)."""
    from scalable.cli.progress import BarCallback

    return BarCallback(advance)


@contextmanager
def _transfer(out: Output, description: str) -> Iterator[Callback]:
    with out.progress(description, total=None) as advance:
        yield _bar_callback(advance)


@contextmanager
def _key_must_exist(store: BaseArtifactStore, key: str, uri: str) -> Iterator[None]:
    """Reword a missing key for the command line (the store's message names the Python API)."""
    from scalable.cli.locate import artifact_not_found, parse_artifact_uri
    from scalable.errors import ArtifactNotFoundError

    try:
        yield
    except ArtifactNotFoundError:
        if store.exists(key):
            raise
        raise artifact_not_found(store, key, parse_artifact_uri(uri)[0] if "#" in uri else store.uri) from None


def _ref_doc(ref: ArtifactRef, store: BaseArtifactStore) -> dict[str, Any]:
    return {**ref.to_dict(), "store": store.uri}


def _print_ref(out: Output, ref: ArtifactRef) -> None:
    out.print(f"uri      {ref.uri}", markup=False)
    out.print(f"key      {ref.key}", markup=False)
    out.print(f"kind     {ref.kind.value}", markup=False)
    out.print(f"digest   {ref.digest}", markup=False)
    size = human_size(ref.size_bytes)
    exact = f" ({ref.size_bytes} bytes)" if size != f"{ref.size_bytes} bytes" else ""
    out.print(f"size     {size}{exact}", markup=False)
    out.print(f"created  {ref.created_at.isoformat(timespec='seconds')}", markup=False)
    if ref.version is not None:
        out.print(f"version  {ref.version}", markup=False)


def put(
    src: Annotated[Path, typer.Argument(metavar="SRC", help="A local file or directory.", show_default=False)],
    uri: ArtifactArg,
    kind: Annotated[
        str | None,
        typer.Option(
            "--kind", metavar="KIND", callback=_check_kind, help="Store as file, dir or blob (default: from SRC)."
        ),
    ] = None,
    meta: Annotated[
        list[str] | None,
        typer.Option("--meta", metavar="KEY=VALUE", callback=_check_meta, help="Metadata (repeatable)."),
    ] = None,
    pack: Annotated[
        bool, typer.Option("--pack", help="Store a directory as one object (its files concatenated).")
    ] = False,
    mode: Annotated[
        str,
        typer.Option(
            "--mode",
            metavar="MODE",
            help="How objects are made from SRC: auto (clone if the filesystem can, else copy), copy, "
            "reflink (copy-on-write clone), hardlink (SRC becomes read-only and is the stored file) "
            "or move (SRC is removed once stored).",
        ),
    ] = "auto",
    json_mode: Json = False,
    quiet: Quiet = False,
) -> None:
    """Store a local file or directory as the artifact URI and print its ref (uri, digest, size).

    With --quiet only the digest is printed.
    """
    out = Output(quiet=quiet, json_mode=json_mode)
    from scalable.cli.locate import open_store

    _check_kind_fits(src, kind)
    store, key = open_store(uri, need_key=True, create=True)
    metadata = dict(item.split("=", 1) for item in meta or [])
    with _transfer(out, f"put {key}") as callback:
        ref = store.put(src, key, kind=kind, metadata=metadata, pack=pack, callback=callback, mode=mode)  # type: ignore[arg-type]
    if json_mode:
        out.json(_ref_doc(ref, store))
    elif quiet:
        out.result(ref.digest)
    else:
        _print_ref(out, ref)


def get(
    uri: ArtifactArg,
    dest: Annotated[
        str,
        typer.Argument(
            help="The path the artifact will have; a path ending in / means inside that folder (DEST/NAME).",
            metavar="DEST",
            show_default=False,
        ),
    ],
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Replace what is at DEST (once the new copy is whole and verified).")
    ] = False,
    merge: Annotated[
        bool,
        typer.Option(
            "--merge", help="Add a directory artifact's files to an existing folder; differing files need --force too."
        ),
    ] = False,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Do not check the digest.")] = False,
    json_mode: Json = False,
    quiet: Quiet = False,
) -> None:
    """Copy the artifact URI to DEST, verified against its digest.

    Nothing at DEST is removed or replaced unless --force is given: an existing file, or a
    folder that is not empty, is refused (exit 1) and left as it was. With --merge a directory
    artifact is added to an existing folder, keeping the files it does not name. A file that
    already holds the artifact's bytes is left as it is.
    """
    from scalable.cli.locate import open_store, split_version_text

    out = Output(quiet=quiet, json_mode=json_mode)
    text, version = split_version_text(uri)
    store, key = open_store(text, need_key=True)
    with _key_must_exist(store, key, uri), _transfer(out, f"get {key}") as callback:
        path = store.get(
            key, dest, verify=not no_verify, overwrite=force, merge=merge, callback=callback, version=version
        )
        ref = store.info(key, version=version)
    if json_mode:
        out.json({"path": str(path), "verified": not no_verify, "ref": _ref_doc(ref, store)})
        return
    checked = "digest verified" if not no_verify else "not verified"
    out.print(f"wrote {path} ({ref.kind.value}, {human_size(ref.size_bytes)}, {checked})", markup=False)


def ls(
    uri: Annotated[
        str,
        typer.Argument(
            metavar="STORE[#PREFIX]",
            callback=check_uri,
            help="STORE, STORE#PREFIX, or #PREFIX for the default store (default: the default store).",
            show_default=False,
        ),
    ] = "#",
    long: Annotated[bool, typer.Option("--long", "-l", help="Add kind, size, digest and creation time.")] = False,
    json_mode: Json = False,
) -> None:
    """List the keys of the artifacts in a store, or under a key prefix."""
    from scalable.cli.locate import open_store

    out = Output(json_mode=json_mode)
    store, prefix = open_store(uri, need_key=False)
    if json_mode:
        out.json([ref.to_dict() for ref in store.iter_refs(prefix)])
        return
    if not long:
        for key in store.list_artifacts(prefix):
            out.result(key)
        return
    rows = [
        (
            ref.key,
            ref.kind.value,
            human_size(ref.size_bytes),
            short_digest(ref.digest),
            ref.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
        for ref in store.iter_refs(prefix)
    ]
    if rows:
        width = max(len(r[0]) for r in rows)
        size_width = max(len(r[2]) for r in rows)
        for key, kind, size, digest, created in rows:
            out.result(f"{key:<{width}}  {kind:<4}  {size:>{size_width}}  {digest}  {created}")


def info(uri: ArtifactArg, json_mode: Json = False) -> None:
    """Show the ref of the artifact URI: kind, digest, size, creation time and metadata."""
    from scalable.cli.locate import open_store, split_version_text

    out = Output(json_mode=json_mode)
    text, version = split_version_text(uri)
    store, key = open_store(text, need_key=True)
    with _key_must_exist(store, key, uri):
        ref = store.info(key, version=version)
    if json_mode:
        out.json(_ref_doc(ref, store))
        return
    _print_ref(out, ref)
    for name, value in sorted(ref.metadata.items()):
        out.print(f"meta     {name}={value}", markup=False)


def rm(
    uri: ArtifactArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json_mode: Json = False,
    quiet: Quiet = False,
) -> None:
    """Delete the artifact URI (its ref, then its bytes). Asks first, unless --yes."""
    from scalable.cli.locate import open_store

    out = Output(quiet=quiet, json_mode=json_mode)
    store, key = open_store(uri, need_key=True)
    with _key_must_exist(store, key, uri):
        ref = store.info(key)
        confirm_or_exit(out, f"delete {key} ({human_size(ref.size_bytes)}) from {store.uri}?", yes)
        store.delete(key)
    if json_mode:
        out.json({"deleted": _ref_doc(ref, store)})
    else:
        out.print(f"deleted {key} from {store.uri}", markup=False)


def verify(
    uri: Annotated[
        str,
        typer.Argument(
            metavar="STORE[#PREFIX]",
            callback=check_uri,
            help="STORE, STORE#PREFIX, STORE#KEY, or #PREFIX (default: the default store).",
            show_default=False,
        ),
    ] = "#",
    all_versions: Annotated[
        bool,
        typer.Option("--all-versions", help="Check every retained version of each key, not only the latest."),
    ] = False,
    json_mode: Json = False,
    quiet: Quiet = False,
) -> None:
    """Re-hash every artifact under URI against its digest; list the bad ones and exit 1 if any.

    Each distinct stored object is read once, however many keys and versions name it.
    """
    from scalable.cli.locate import open_store
    from scalable.errors import ArtifactNotFoundError, IntegrityError

    out = Output(quiet=quiet, json_mode=json_mode)
    store, prefix = open_store(uri, need_key=False)
    targets = _verify_targets(store, prefix, all_versions)
    verified: set[str] = set()  # objects found intact in this run: not read again
    good: list[str] = []
    bad: list[dict[str, str]] = []
    with out.progress(f"verify {plural(len(targets), 'artifact')}", total=None) as advance:
        for key, version, label in targets:
            try:
                ref = store.verify(key, version=version, verified=verified)
            except IntegrityError as exc:
                bad.append({"key": label, "error": " ".join(str(exc).split())})
                continue
            except ArtifactNotFoundError as exc:
                if not store.exists(key):  # deleted since the listing: nothing to check
                    continue
                bad.append({"key": label, "error": f"stored data missing: {' '.join(str(exc).split())}"})
                continue
            good.append(label)
            advance(ref.size_bytes)
    where = f"{store.uri}" + (f" under {prefix!r}" if prefix else "")
    checked = len(good) + len(bad)
    if json_mode:
        out.json(
            {
                "store": store.uri,
                "prefix": prefix,
                "checked": checked,
                "objects": len(verified),
                "ok": good,
                "bad": bad,
            }
        )
    else:
        for item in bad:
            out.result(f"BAD {item['key']}: {item['error']}")
        what = "artifact version" if all_versions else "artifact"
        out.print(
            f"checked {plural(checked, what)} in {where}: {len(good)} ok, {len(bad)} bad",
            markup=False,
        )
    if bad:
        if not json_mode:
            out.error(
                f"{len(bad)} of {plural(checked, 'artifact')} failed verification: "
                "put them again from their sources, or remove them with scalable rm"
            )
        raise typer.Exit(EXIT_FAILURE)


def _verify_targets(store: BaseArtifactStore, prefix: str, all_versions: bool) -> list[tuple[str, int | None, str]]:
    """What verify checks: ``(key, version, label)``, the label ``KEY`` or, for an older version, ``KEY@N``."""
    if not all_versions:
        return [(key, None, key) for key in store.list_artifacts(prefix)]
    refs = list(store.iter_versions(prefix))
    newest: dict[str, int] = {}
    for ref in refs:
        newest[ref.key] = max(newest.get(ref.key, 0), ref.version or 0)
    return [
        (ref.key, ref.version, ref.key if ref.version == newest[ref.key] else f"{ref.key}@{ref.version}")
        for ref in refs
    ]


def _check_kind_fits(src: Path, kind: str | None) -> None:
    """The store's kind checks, in the command's words (``--kind file``, not ``kind='file'``)."""
    from scalable.errors import ArtifactKindError

    if kind is None or not src.exists():
        return
    if src.is_dir() and kind != "dir":
        raise ArtifactKindError(f"{src} is a directory but --kind {kind} was given: use --kind dir or leave it out")
    if not src.is_dir() and kind == "dir":
        raise ArtifactKindError(f"{src} is a file but --kind dir was given: use --kind file or leave it out")


#: The commands this module adds to ``scalable`` (see :mod:`scalable.cli.commands`).
COMMANDS = {"put": put, "get": get, "ls": ls, "info": info, "rm": rm, "verify": verify}

# Kept importable from here for code written against earlier versions.
__all__ = [
    "COMMANDS",
    "check_uri",
    "confirm_or_exit",
    "get",
    "human_size",
    "info",
    "ls",
    "put",
    "rm",
    "short_digest",
    "verify",
]
