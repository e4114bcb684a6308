"""Store commands: ``put``, ``get``, ``ls``, ``info``, ``rm`` and ``verify`` on ``STORE#KEY`` URIs.

Each is a thin layer over the :class:`~scalable.artifacts.base.ArtifactStore` API; the URI
syntax and the way stores are opened are in :mod:`scalable.cli.locate`. A malformed URI is
found while the arguments are parsed (a usage error, exit 2); a missing key, a damaged
artifact or an unreachable store is a failure (exit 1), reported in one line.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from fsspec.callbacks import Callback

from scalable.artifacts.ref import ArtifactKind, ArtifactRef
from scalable.cli.app import EXIT_FAILURE, EXIT_USAGE, app
from scalable.cli.locate import artifact_not_found, open_store, parse_artifact_uri, split_version
from scalable.cli.output import Output
from scalable.errors import ArtifactNotFoundError, IntegrityError, UnsupportedURIError

if TYPE_CHECKING:
    from scalable.artifacts.store import BaseArtifactStore


def check_uri(value: str | None) -> str | None:
    """Typer callback: a URI that cannot be parsed is a bad argument (usage error, exit 2)."""
    if value is not None:
        try:
            parse_artifact_uri(value)
        except UnsupportedURIError as exc:
            raise typer.BadParameter(str(exc)) from None
    return value


def check_artifact_uri(value: str) -> str:
    """Typer callback for commands on one artifact: the URI must parse and name a valid key (else exit 2)."""
    check_uri(value)
    from scalable.artifacts.keys import validate_key
    from scalable.errors import InvalidKeyError

    store, _, key = value.partition("#")
    if not key:
        raise typer.BadParameter(f"{value!r} names a store but no artifact: add #KEY, as in '{store}#runs/a.csv'")
    try:
        validate_key(key)
    except InvalidKeyError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


def _check_meta(values: list[str] | None) -> list[str]:
    for item in values or []:
        name, eq, _ = item.partition("=")
        if not eq or not name.strip():
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE: write --meta owner=alice")
    return list(values or [])


ArtifactArg = Annotated[str, typer.Argument(callback=check_artifact_uri, help="The artifact: STORE#KEY, or #KEY.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the result (or nothing).")]
Json = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]


def human_size(n: int) -> str:
    """A byte count for people: ``1.2 MB`` (powers of 1000, as rich prints transfer sizes)."""
    from rich.filesize import decimal

    return decimal(n)


def short_digest(digest: str) -> str:
    """``sha256:`` and the first 12 hex digits: enough to tell artifacts apart in a listing."""
    return digest[: len("sha256:") + 12]


class _BarCallback(Callback):
    """An fsspec callback that moves a :meth:`Output.progress` bar."""

    def __init__(self, advance: Any) -> None:
        super().__init__()
        self._advance = advance

    def set_size(self, size: int | None) -> None:
        self.size = size
        self._advance.set_total(size)

    def relative_update(self, inc: int = 1) -> None:
        self.value += inc
        self._advance(inc)

    def absolute_update(self, value: int) -> None:
        delta, self.value = value - self.value, value
        self._advance(delta)


@contextmanager
def _transfer(out: Output, description: str) -> Iterator[Callback]:
    with out.progress(description, total=None) as advance:
        yield _BarCallback(advance)


@contextmanager
def _key_must_exist(store: BaseArtifactStore, key: str, uri: str) -> Iterator[None]:
    """Reword a missing key for the command line (the store's message names the Python API)."""
    try:
        yield
    except ArtifactNotFoundError:
        if store.exists(key):
            raise
        raise artifact_not_found(store, key, parse_artifact_uri(uri)[0]) from None


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


@app.command()
def put(
    src: Annotated[Path, typer.Argument(help="A local file or directory.")],
    uri: ArtifactArg,
    kind: Annotated[ArtifactKind | None, typer.Option(help="Store as this kind (default: from SRC).")] = None,
    meta: Annotated[
        list[str] | None, typer.Option("--meta", callback=_check_meta, help="Metadata KEY=VALUE (repeatable).")
    ] = None,
    pack: Annotated[bool, typer.Option(help="Store a directory as one object (its files concatenated).")] = False,
    json_mode: Json = False,
    quiet: Quiet = False,
) -> None:
    """Store a local file or directory as the artifact URI and print its ref (uri, digest, size).

    With --quiet only the digest is printed.
    """
    out = Output(quiet=quiet, json_mode=json_mode)
    store, key = open_store(uri, need_key=True, create=True)
    metadata = dict(item.split("=", 1) for item in meta or [])
    with _transfer(out, f"put {key}") as callback:
        ref = store.put(src, key, kind=kind, metadata=metadata, pack=pack, callback=callback)
    if json_mode:
        out.json(_ref_doc(ref, store))
    elif quiet:
        out.result(ref.digest)
    else:
        _print_ref(out, ref)


@app.command()
def get(
    uri: ArtifactArg,
    dest: Annotated[
        str, typer.Argument(help="Where to write it; a file artifact lands inside a folder (or a path ending in /).")
    ],
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Do not check the digest.")] = False,
    json_mode: Json = False,
    quiet: Quiet = False,
) -> None:
    """Copy the artifact URI to DEST, verified against its digest."""
    out = Output(quiet=quiet, json_mode=json_mode)
    store, key = open_store(uri, need_key=True)
    key, version = split_version(key)
    target = Path(dest).expanduser()
    with _key_must_exist(store, key, uri), _transfer(out, f"get {key}") as callback:
        if dest.endswith(("/", os.sep)) and store.info(key, version=version).kind is not ArtifactKind.DIR:
            target.mkdir(parents=True, exist_ok=True)
        path = store.get(key, target, verify=not no_verify, callback=callback, version=version)
        ref = store.info(key, version=version)
    if json_mode:
        out.json({"path": str(path), "verified": not no_verify, "ref": _ref_doc(ref, store)})
        return
    checked = "digest verified" if not no_verify else "not verified"
    out.print(f"wrote {path} ({ref.kind.value}, {human_size(ref.size_bytes)}, {checked})", markup=False)


@app.command("ls")
def ls(
    uri: Annotated[
        str, typer.Argument(callback=check_uri, help="STORE, STORE#PREFIX, or #PREFIX for the default store.")
    ] = "#",
    long: Annotated[bool, typer.Option("--long", "-l", help="Add kind, size, digest and creation time.")] = False,
    json_mode: Json = False,
) -> None:
    """List the keys of the artifacts in a store, or under a key prefix."""
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


@app.command()
def info(uri: ArtifactArg, json_mode: Json = False) -> None:
    """Show the ref of the artifact URI: kind, digest, size, creation time and metadata."""
    out = Output(json_mode=json_mode)
    store, key = open_store(uri, need_key=True)
    key, version = split_version(key)
    with _key_must_exist(store, key, uri):
        ref = store.info(key, version=version)
    if json_mode:
        out.json(_ref_doc(ref, store))
        return
    _print_ref(out, ref)
    for name, value in sorted(ref.metadata.items()):
        out.print(f"meta     {name}={value}", markup=False)


def confirm_or_exit(out: Output, question: str, yes: bool) -> None:
    """Ask ``question`` on a terminal; without one, refuse unless ``--yes`` (exit 2) instead of waiting."""
    if yes:
        return
    if not sys.stdin.isatty():
        out.error(f"{question[:-1]}: stdin is not a terminal, so nothing is asked and nothing is done; pass --yes")
        raise typer.Exit(EXIT_USAGE)
    if not typer.confirm(question, default=False, err=True):
        out.error("nothing done")
        raise typer.Exit(EXIT_FAILURE)


@app.command()
def rm(
    uri: ArtifactArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json_mode: Json = False,
    quiet: Quiet = False,
) -> None:
    """Delete the artifact URI (its ref, then its bytes). Asks first, unless --yes."""
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


@app.command()
def verify(
    uri: Annotated[str, typer.Argument(callback=check_uri, help="STORE, STORE#PREFIX, STORE#KEY, or #PREFIX.")] = "#",
    json_mode: Json = False,
    quiet: Quiet = False,
) -> None:
    """Re-hash every artifact under URI against its digest; list the bad ones and exit 1 if any."""
    out = Output(quiet=quiet, json_mode=json_mode)
    store, prefix = open_store(uri, need_key=False)
    keys = store.list_artifacts(prefix)
    good: list[str] = []
    bad: list[dict[str, str]] = []
    with out.progress(f"verify {len(keys)} artifacts", total=None) as advance:
        for key in keys:
            try:
                ref = store.verify(key)
            except IntegrityError as exc:
                bad.append({"key": key, "error": " ".join(str(exc).split())})
                continue
            except ArtifactNotFoundError as exc:
                if not store.exists(key):  # deleted since the listing: nothing to check
                    continue
                bad.append({"key": key, "error": f"stored data missing: {' '.join(str(exc).split())}"})
                continue
            good.append(key)
            advance(ref.size_bytes)
    where = f"{store.uri}" + (f" under {prefix!r}" if prefix else "")
    if json_mode:
        out.json({"store": store.uri, "prefix": prefix, "checked": len(good) + len(bad), "ok": good, "bad": bad})
    else:
        for item in bad:
            out.result(f"BAD {item['key']}: {item['error']}")
        out.print(f"checked {len(good) + len(bad)} artifacts in {where}: {len(good)} ok, {len(bad)} bad", markup=False)
    if bad:
        if not json_mode:
            out.error(
                f"{len(bad)} of {len(good) + len(bad)} artifacts failed verification: "
                "put them again from their sources, or remove them with scalable rm"
            )
        raise typer.Exit(EXIT_FAILURE)


__all__ = ["check_uri", "confirm_or_exit", "get", "human_size", "info", "ls", "put", "rm", "short_digest", "verify"]
