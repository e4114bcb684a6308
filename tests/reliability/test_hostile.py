"""Hostile input: random keys, URIs, manifests and cache arguments never do harm or crash.

Property-based (hypothesis): ``trials(100, 10_000)`` cases per property. What each asserts:

* keys: a key is refused (``InvalidKeyError``) or stored; nothing is ever read, written or
  deleted outside the store root, including through symlinks that already sit inside it;
* URIs: ``build_artifact_store`` on any string succeeds or raises a ``ScalableError``;
* manifests: any YAML text gives a manifest or a ``ManifestError`` (never a traceback of
  another type), and so does resolving settings from it;
* cache arguments: keys are deterministic, equal arguments give equal keys, and an argument
  that cannot be keyed raises ``UnhashableArgumentError``, never another exception.
"""

from __future__ import annotations

import copy
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from scalable import (
    InvalidKeyError,
    ManifestError,
    ScalableError,
    StoreUnavailableError,
    UnhashableArgumentError,
    build_artifact_store,
    cacheable,
    configure_cache,
)
from scalable.artifacts.keys import validate_key
from scalable.cache import cache_key, encode, reset_cache_config
from scalable.manifest import parse_manifest, resolve_settings
from tests.reliability._helpers_f import env_vars
from tests.reliability.conftest import trials

PROPERTY = settings(
    max_examples=trials(100, 10_000),
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,  # only `tally`, a process-wide sum: nothing to reset
    ],
)


class _Counter:
    """Counts examples and failures of one property for the tally."""

    def __init__(self, tally: Any, area: str) -> None:
        self.tally, self.area, self.n, self.failed = tally, area, 0, 0

    def __enter__(self) -> _Counter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.tally.add(self.area, trials=self.n, failures=1 if exc_type is not None else 0)


def _snapshot(folder: Path) -> dict[str, bytes | str]:
    """Every entry below ``folder`` (symlinks not followed): files' bytes, links' targets."""
    found: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(folder))
            if p.is_symlink():
                found[rel] = "-> " + os.readlink(p)
            elif p.is_file():
                found[rel] = p.read_bytes()
            else:
                found[rel] = "dir"
    return found


# --------------------------------------------------------------------------- keys

_SEGMENT = st.one_of(
    st.sampled_from([".", "..", "...", ".scalable", "~", "a", "b", "refs", "objects", "tmp", " ", "%2e%2e", "C:"]),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=0, max_size=6),
)
KEYS = st.one_of(
    st.lists(_SEGMENT, min_size=1, max_size=6).map("/".join),
    st.lists(_SEGMENT, min_size=1, max_size=4).map("\\".join),
    st.text(max_size=40),
    st.sampled_from(["/etc/passwd", "../outside", "a/../../outside", "a/./b", "a//b", "a/", ".scalable/refs/x"]),
)


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``arena/root`` is a store; ``arena/outside`` holds files a hostile key must never reach."""
    base = tmp_path_factory.mktemp("hostile-keys")
    (base / "outside").mkdir()
    (base / "outside" / "precious.txt").write_bytes(b"precious")
    (base / "src.txt").write_bytes(b"source bytes")
    return base


def _assert_outside_untouched(arena: Path, before: dict[str, bytes | str]) -> None:
    # The store's folder appears at its first write (none if every key so far was refused).
    assert sorted(p.name for p in arena.iterdir()) in (["outside", "root", "src.txt"], ["outside", "src.txt"])
    assert _snapshot(arena / "outside") == before


@PROPERTY
@given(key=KEYS)
@example(key="../outside/precious.txt")
@example(key=".scalable/objects/../../outside")
def test_no_key_escapes_the_store_root(arena: Path, tally: Any, key: str) -> None:
    store = build_artifact_store(arena / "root", durable=False)
    before = _snapshot(arena / "outside")
    with _Counter(tally, "hostile: keys") as count:
        count.n += 1
        try:
            validate_key(key)
        except InvalidKeyError:
            for call in (
                lambda: store.put_bytes(b"x", key),
                lambda: store.get_bytes(key),
                lambda: store.exists(key),
                lambda: store.delete(key),
                lambda: store.put(arena / "src.txt", key),
                lambda: store.get(key, arena / "outside" / "dest"),
            ):
                with pytest.raises(InvalidKeyError):
                    call()
        else:
            try:
                store.put(arena / "src.txt", key)
            except ScalableError as exc:  # e.g. a key that would nest inside an earlier example's
                assert "nest" in str(exc), exc
            else:
                assert store.get_bytes(key) == b"source bytes"
                assert key in store.list_artifacts()
                store.delete(key)
                assert not store.exists(key)
        _assert_outside_untouched(arena, before)


@pytest.mark.parametrize(
    "link, target_is",
    [
        (".scalable/versions/a", "dir"),  # the version records of key a (and of a/...)
        (".scalable/refs/x", "dir"),  # a folder of refs, as `refs/x -> /etc`
        (".scalable/refs/k", "file"),  # one ref record
        (".scalable/pending", "dir"),  # where every put writes its pending-put marker
    ],
)
def test_symlinks_inside_the_root_never_lead_outside(tmp_path: Path, tally: Any, link: str, target_is: str) -> None:
    """Regression: a symlink inside a local store's root let puts, gets and deletes reach outside it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_bytes(b"root:x:0:0")
    (outside / "k").write_bytes(b"not a record")
    root = tmp_path / "root"
    store = build_artifact_store(root, durable=False)
    store.put_bytes(b"kept", "other/kept")
    path = root / link
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():  # .scalable/pending already holds the markers of the put above
        shutil.rmtree(path)
    path.symlink_to(outside if target_is == "dir" else outside / "passwd")
    before = _snapshot(outside)
    key_under = {"a": ["a", "a/x"], "x": ["x/passwd", "x/new"], "k": ["k"], "pending": ["k"]}[link.rsplit("/", 1)[1]]
    refused = 0
    for key in key_under:
        for call in (
            lambda key=key: store.put_bytes(b"evil", key),
            lambda key=key: store.get_bytes(key),
            lambda key=key: store.get(key, tmp_path / "dest"),
            lambda key=key: store.delete(key),
            lambda key=key: store.verify(key),
        ):
            try:
                call()
            except StoreUnavailableError as exc:
                assert "symlink" in str(exc) and "outside the store" in str(exc)
                refused += 1
            except ScalableError:
                refused += 1  # e.g. no artifact at that key: nothing was read outside either
    assert refused == 5 * len(key_under)
    assert _snapshot(outside) == before
    assert not (tmp_path / "dest").exists()
    assert store.get_bytes("other/kept") == b"kept"  # the rest of the store still works
    tally.add("hostile: keys", trials=5 * len(key_under))


def test_a_symlinked_tmp_folder_is_refused_when_the_store_opens(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "root" / ".scalable").mkdir(parents=True)
    (tmp_path / "root" / ".scalable" / "tmp").symlink_to(outside)
    with pytest.raises(StoreUnavailableError, match="symlink"):
        build_artifact_store(tmp_path / "root")
    assert list(outside.iterdir()) == []


# --------------------------------------------------------------------------- URIs

#: Schemes whose fsspec driver would connect while being constructed are left out (ftp, sftp, smb, and
#: gs/gcs, whose default credentials probe the GCE metadata server for 15 s).
_SCHEMES = ["s3", "s3a", "az", "abfs", "adl", "memory", "file", "local", "http", "zip", "bogus", "S3", "S3A"]
_URI_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30).filter(
    lambda s: ".." not in s
)
URIS = st.one_of(
    st.builds(lambda scheme, rest: f"{scheme}://{rest}", st.sampled_from(_SCHEMES), _URI_TEXT),
    st.builds(lambda user, pw, rest: f"s3://{user}:{pw}@{rest}", _URI_TEXT, _URI_TEXT, _URI_TEXT),
    st.builds(lambda rest: f"s3://b/k?X-Amz-Signature={rest}&a=%", _URI_TEXT),
    _URI_TEXT.filter(lambda s: not s.startswith(("/", "~"))),
    st.sampled_from(["", ":", "://", "s3://", "s3:///", "file://", "memory://", "?", "#", "s3://[::1"]),
)


@PROPERTY
@given(uri=URIS)
@example(uri="az://")  # regression: adlfs's ValueError (no account) escaped
@example(uri="s3://[")  # regression: redact_uri raised ValueError (invalid IPv6 URL)
@example(uri="adl://x")  # regression: AttributeError from a driver that dropped its class
@example(uri="zip://")  # regression: IsADirectoryError from a driver that opens a file when built
def test_any_uri_builds_a_store_or_raises_a_scalable_error(
    tmp_path_factory: pytest.TempPathFactory, tally: Any, uri: str
) -> None:
    with _Counter(tally, "hostile: URIs") as count:
        count.n += 1
        work = tmp_path_factory.mktemp("uris", numbered=True)
        if uri.startswith(("file://", "local://")):
            uri = uri.split("://", 1)[0] + "://" + str(work) + "/" + uri.split("://", 1)[1].lstrip("/")
        cwd = os.getcwd()
        os.chdir(work)  # relative paths become stores here, not in the project
        try:
            with env_vars(HOME=str(work)):
                store = build_artifact_store(uri)
            assert store.uri
        except ScalableError:
            pass
        finally:
            os.chdir(cwd)


# --------------------------------------------------------------------------- manifests

_NAMES = [
    "version",
    "project",
    "targets",
    "overlays",
    "name",
    "default_storage",
    "local_cache",
    "cache_remote",
    "storage_options",
    "provider",
    "local",
    "slurm",
    "dask",
    "address",
    "cores",
    "memory",
    "walltime",
    "n_workers",
    "processes",
    "cluster_options",
    "s3://",
    "laptop",
    "<<",
    "*a",
    "&a",
]
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(["1", "${VAR}", "${HOME:-x}", "${", "$${X}", "16GB", "01:30:00", "local", "slurm", "~/x"]),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(_NAMES), st.text(max_size=6)), inner, max_size=5),
    ),
    max_leaves=25,
)
_DOCS = st.fixed_dictionaries(
    {},
    optional={
        "version": st.sampled_from([1, "1", 2, None, True]),
        "project": _VALUES,
        "targets": _VALUES,
        "overlays": _VALUES,
    },
)


def _mutate(text: str, cut: int, junk: str) -> str:
    at = cut % (len(text) + 1)
    return text[:at] + junk + text[at:]


MANIFEST_TEXTS = st.one_of(
    _DOCS.map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
    st.builds(
        _mutate,
        _DOCS.map(yaml.safe_dump),
        st.integers(0, 10_000),
        st.sampled_from([":", "- ", "\t", "&a ", "*a", "!!python/object:os.system ", "{", "'", "\n  ", "%YAML"]),
    ),
    _VALUES.map(lambda v: yaml.safe_dump(v, allow_unicode=True)),
    st.text(max_size=200),
)


@PROPERTY
@given(text=MANIFEST_TEXTS)
@example(text="version: 1\ntargets: {a: &x {provider: local}, b: *x}\n")
@example(text="a: &a [*a]\n")
@example(text="\x1f")  # regression: yaml's ReaderError (a control character) escaped as a traceback
@example(text="version: 1\nproject: {name: \x85\ufeff}\n")
@example(text="version: 1\nproject: {name: !!python/object/apply:os.system [echo hi]}\n")
def test_random_manifests_raise_only_manifest_errors(
    tmp_path_factory: pytest.TempPathFactory, tally: Any, text: str
) -> None:
    with _Counter(tally, "hostile: manifests") as count:
        count.n += 1
        try:
            manifest = parse_manifest(text, source="random.yaml", environ={})
        except ManifestError as exc:
            assert "random.yaml" in str(exc)
            return
        try:
            resolve_settings(manifest, environ={})
        except ScalableError:
            pass


# --------------------------------------------------------------------------- cache arguments

_HASHABLE_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=10),
    st.binary(max_size=10),
    st.complex_numbers(allow_nan=True),
    st.builds(lambda s: Path("no-such-dir-7f3a") / s.replace("/", "_").replace("\x00", ""), st.text(max_size=8)),
)
_ARGS = st.recursive(
    _HASHABLE_LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(st.one_of(st.text(max_size=5), st.integers()), inner, max_size=4),
        st.frozensets(_HASHABLE_LEAVES, max_size=4),
        st.sets(st.one_of(st.integers(), st.text(max_size=4)), max_size=4),
    ),
    max_leaves=20,
)


def _unhashables() -> list[Any]:
    return [threading.Lock(), (i for i in range(2)), open(os.devnull, "rb")]


@PROPERTY
@given(args=_ARGS, wrap=st.sampled_from(["bare", "list", "dict"]), bad=st.integers(0, 2), poison=st.booleans())
def test_cache_keys_are_deterministic_and_only_unhashable_errors_escape(
    tally: Any, args: Any, wrap: str, bad: int, poison: bool
) -> None:
    with _Counter(tally, "hostile: cache arguments") as count:
        count.n += 1
        key = cache_key("mod.f", "h", 1, {"x": args})
        assert key == cache_key("mod.f", "h", 1, {"x": copy.deepcopy(args)}) == cache_key("mod.f", "h", 1, {"x": args})
        assert len(key) == 64 and int(key, 16) >= 0
        assert encode(args) == encode(copy.deepcopy(args))
        if not poison:
            return
        unhashable = _unhashables()
        try:
            thing = unhashable[bad]
            value = {"bare": thing, "list": [args, thing], "dict": {"a": args, "b": [thing]}}[wrap]
            with pytest.raises(UnhashableArgumentError):
                cache_key("mod.f", "h", 1, {"x": value})
        finally:
            unhashable[2].close()


def test_an_unpicklable_argument_is_an_unhashable_argument_error() -> None:
    """Regression: ``cache_key``/``encode`` raised pickle's TypeError for a lock, a generator, an open file."""
    for thing in _unhashables():
        with pytest.raises(UnhashableArgumentError, match="cannot be part of a cache key"):
            cache_key("mod.f", "h", 1, {"x": [1, {"y": thing}]})
        with pytest.raises(UnhashableArgumentError):
            encode(thing)
        if hasattr(thing, "close"):
            thing.close()


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Any:
    configure_cache(local_dir=tmp_path_factory.mktemp("hostile-cache"), remote=None)
    yield
    reset_cache_config()


_CALLS: list[Any] = []


@cacheable
def _echo(value: Any, *rest: Any, **named: Any) -> int:
    _CALLS.append(1)
    return len(_CALLS)


@PROPERTY
@given(args=_ARGS, extra=st.lists(_ARGS, max_size=2), named=st.dictionaries(st.sampled_from(["p", "q"]), _ARGS))
def test_cacheable_calls_with_random_arguments_hit_on_the_second_call(
    cache_dir: Any, tally: Any, args: Any, extra: list[Any], named: dict[str, Any]
) -> None:
    with _Counter(tally, "hostile: cache arguments") as count:
        count.n += 1
        first = _echo(args, *extra, **named)
        again = _echo(copy.deepcopy(args), *copy.deepcopy(extra), **copy.deepcopy(named))
        assert again == first  # the second call is a hit: the function did not run again
        with pytest.raises(UnhashableArgumentError):
            _echo(args, threading.Lock())
