"""Cache keys: the canonical encoding, its golden vectors, and what changes a key and what does not.

The golden vectors were computed once by the implementation and pinned here: if one of
these tests fails, keys have drifted and every user's cache would silently go cold (or,
worse, collide). Change the encoding only with a new ``KEY_FORMAT``.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import importlib.util
import inspect
import struct
import sys
import threading
import uuid
import warnings
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from scalable.artifacts.ref import ArtifactRef
from scalable.cache import UnhashableArgumentError, UnstableKeyWarning, cache_key, cacheable, encode
from scalable.cache.keys import KEY_FORMAT
from scalable.cache.source import source_hash_of_text

ZERO = "0" * 64

# --------------------------------------------------------------------------- golden vectors

#: value -> its canonical encoding (docs/cache.md gives the rules).
ENCODINGS: list[tuple[Any, bytes]] = [
    (None, b"N"),
    (True, b"T"),
    (False, b"F"),
    (0, b"i0;"),
    (42, b"i2a;"),
    (-7, b"i-7;"),
    (2**70, b"i400000000000000000;"),
    (1.5, b"f" + bytes.fromhex("3ff8000000000000")),
    (-0.0, b"f" + bytes.fromhex("8000000000000000")),
    (float("nan"), b"f" + bytes.fromhex("7ff8000000000000")),
    (1 + 2j, b"cf" + bytes.fromhex("3ff0000000000000") + b"f" + bytes.fromhex("4000000000000000")),
    ("", b"s0:"),
    ("héllo", b"s6:h\xc3\xa9llo"),
    (b"\x00\xff", b"b2:\x00\xff"),
    (bytearray(b"ab"), b"b2:ab"),
    ([1, "a"], b"l2:i1;s1:a"),
    ((1, "a"), b"t2:i1;s1:a"),
    ({"b": 1, "a": 2}, b"d2:s1:ai2;s1:bi1;"),
    ({3, 1, 2}, b"S3:i1;i2;i3;"),
    (frozenset({1}), b"S1:i1;"),
    (PurePosixPath("data/x.csv"), b"qs10:data/x.csv"),
]

#: (arguments, key) for qualname "pkg.mod:f", source hash "0" * 64, version None.
KEYS: list[tuple[dict[str, Any], str]] = [
    ({}, "bc4f98531cb45929d67b7fed7a19d4784d8fa863ee68c3ff310401a2bee08c40"),
    ({"x": None}, "c33920640cbd91738a979baaf98b3a69b9c04f382402e2d208ab53f62f983eb4"),
    ({"x": 1, "y": 2}, "3ff5d93314c0c32876ba15d6548312b2c56800be12a9fc9d2f2c9e81afa5f19a"),
    ({"y": 2, "x": 1}, "3ff5d93314c0c32876ba15d6548312b2c56800be12a9fc9d2f2c9e81afa5f19a"),
    ({"flag": True, "n": 0}, "c3c0b9d1778028b46a0f079c639b713f62734e46064f0551e40d472e151e0f7f"),
    ({"x": 1.5}, "d7f14ae4fe0426b5755786217c2448040fe15480b610dd06162a5f0318f9f5c0"),
    ({"s": "héllo wörld"}, "d10e71554cdffc6eafbca34fad926029517a91fd4aa9cbf1dc8656e22fd69159"),
    ({"b": b"\x00\x01\x02"}, "8c47221b164762b6dc42f53d4d15fbf3af96e300b66fac33c0f5500f407dc79c"),
    ({"items": [1, 2, 3], "pair": (1, "a")}, "8ae34f434daee8b7ff9e396cd02fcc28c112946112c9ee95a56887085fdf667f"),
    ({"opts": {"b": [1, {"c": None}], "a": 1.0}}, "39e7af5bf21cf98b41543516ab492aa1ed465da681a04c373477c5b2beb08af7"),
    ({"tags": {"b", "a", "c"}}, "200ff5e61333fceb6f18287531984b7d388a03dd9e1b907805d68068372aaaa5"),
    ({"big": 2**100, "neg": -1}, "481362959fdec56f147be772dc68aa6d851aa5ad0a2912a17e62f56d64651b5a"),
    ({"args": (1, 2), "kwargs": {"z": 1}}, "8a2e3c625d6dc2b366fbfa81bad97cb5e74087a4c53b3e649667f576f8a9855a"),
]

#: Source text -> source hash.
SOURCE = "def f(x, y=2):\n    return {'x': x, 'y': y}\n"
SOURCE_HASH = "cc4981f8638f2c45965ea1b0857b590dbd2872db63fefe6e38f6589851fda8e6"

#: A module with a cached function, and the key of ``f(1, y=2)`` in it (end to end:
#: qualified name, source hash, binding with defaults, encoding).
MODULE = '''
from scalable.cache import cacheable


@cacheable
def f(x, y=2):
    """Add nothing."""
    return {"x": x, "y": y}
'''
MODULE_KEY = "a1a47d10d6b9e5a64a17034ec3d29e35c2119a88de2394346cac8f26cff94416"


@pytest.mark.parametrize(("value", "expected"), ENCODINGS, ids=[repr(v) for v, _ in ENCODINGS])
def test_encoding_golden_vectors(value: Any, expected: bytes) -> None:
    assert encode(value) == expected


@pytest.mark.parametrize(("arguments", "expected"), KEYS, ids=[str(i) for i in range(len(KEYS))])
def test_key_golden_vectors(arguments: dict[str, Any], expected: str) -> None:
    assert cache_key("pkg.mod:f", ZERO, None, arguments) == expected


def test_version_and_name_are_in_the_key() -> None:
    base = cache_key("pkg.mod:f", ZERO, None, {"x": 1, "y": 2})
    assert cache_key("pkg.mod:f", ZERO, "v2", {"x": 1, "y": 2}) == (
        "5b6649401cef4d001bee7d6b5349ad31a3c513859190e2158e21ba05fb08f21e"
    )
    assert cache_key("pkg.mod:g", ZERO, None, {"x": 1, "y": 2}) == (
        "54e4e88a8c9c9cea2fe9170efc6004d82401231dfff2443a2b33ded9ba80353c"
    )
    assert cache_key("pkg.mod:f", "1" * 64, None, {"x": 1, "y": 2}) != base


def test_source_hash_golden_vector() -> None:
    assert source_hash_of_text(SOURCE) == SOURCE_HASH


def load_module(tmp_path: Path, source: str, name: str = "scalable_golden") -> Any:
    """Import ``source`` as module ``name`` from a fresh file (so each variant has its own source)."""
    folder = tmp_path / uuid.uuid4().hex
    folder.mkdir()
    path = folder / f"{name}.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_function_key_golden_vector(tmp_path: Path) -> None:
    module = load_module(tmp_path, MODULE)
    assert module.f.qualified_name == "scalable_golden:f"
    # The decorator and the docstring are not part of the source hash: it is SOURCE's.
    assert module.f.source_hash == SOURCE_HASH
    assert module.f.cache_key(1, y=2) == MODULE_KEY
    assert cache_key("scalable_golden:f", SOURCE_HASH, None, {"x": 1, "y": 2}) == MODULE_KEY


# --------------------------------------------------------------------------- a reimplementation from the docs


def reference_encode(value: Any) -> bytes:
    """The rules of docs/cache.md for plain values, written independently of scalable.cache.keys."""
    if value is None:
        return b"N"
    if value is True:
        return b"T"
    if value is False:
        return b"F"
    if isinstance(value, int):
        return b"i" + format(value, "x").encode() + b";"
    if isinstance(value, float):
        bits = struct.pack(">d", value) if value == value else bytes.fromhex("7ff8000000000000")
        return b"f" + bits
    if isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        return b"s" + str(len(data)).encode() + b":" + data
    if isinstance(value, bytes):
        return b"b" + str(len(value)).encode() + b":" + value
    if isinstance(value, list):
        return b"l" + str(len(value)).encode() + b":" + b"".join(map(reference_encode, value))
    if isinstance(value, tuple):
        return b"t" + str(len(value)).encode() + b":" + b"".join(map(reference_encode, value))
    if isinstance(value, dict):
        items = sorted((reference_encode(k), reference_encode(v)) for k, v in value.items())
        return b"d" + str(len(value)).encode() + b":" + b"".join(k + v for k, v in items)
    raise TypeError(type(value))


plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=5) | st.integers(), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(plain)
def test_encoding_matches_an_independent_reimplementation(value: Any) -> None:
    assert encode(value) == reference_encode(value)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=5), plain, max_size=4))
def test_key_matches_its_documented_definition(arguments: dict[str, Any]) -> None:
    preimage = reference_encode((KEY_FORMAT, "m:f", ZERO, None, arguments))
    assert cache_key("m:f", ZERO, None, arguments) == hashlib.sha256(preimage).hexdigest()


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=5) | st.integers(), plain, max_size=6), st.randoms())
def test_dict_order_never_matters(mapping: dict[Any, Any], rng: Any) -> None:
    items = list(mapping.items())
    rng.shuffle(items)
    assert encode(dict(items)) == encode(mapping)
    assert cache_key("m:f", ZERO, None, {"d": dict(items)}) == cache_key("m:f", ZERO, None, {"d": mapping})


def test_types_that_differ_give_different_encodings() -> None:
    values = [0, False, 0.0, "0", b"0", [0], (0,), {0}, {0: 0}, None, "", b"", [], (), {}]
    encodings = [encode(v) for v in values]
    assert len(set(encodings)) == len(values)


# --------------------------------------------------------------------------- supported argument types


class Color(enum.Enum):
    RED = 1
    BLUE = 2


@dataclasses.dataclass
class Point:
    x: int
    y: float = 0.0


class Config(BaseModel):
    name: str
    sizes: list[int] = []


def test_enums_dataclasses_and_models_encode_by_content() -> None:
    assert encode(Color.RED) == encode(Color.RED) != encode(Color.BLUE)
    assert encode(Point(1, 2.0)) == encode(Point(1, 2.0)) != encode(Point(1, 3.0))
    assert encode(Config(name="a", sizes=[1])) == encode(Config(name="a", sizes=[1]))
    assert encode(Config(name="a")) != encode(Config(name="b"))
    assert encode(Color.RED).startswith(b"e")
    assert encode(Point(1)).startswith(b"D") and encode(Config(name="a")).startswith(b"M")


def test_paths_count_by_content_not_by_name(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt"
    a.write_text("same")
    b.write_text("same")
    c.write_text("other")
    assert encode(a) == encode(b) != encode(c)
    a.write_text("changed")
    assert encode(a) != encode(b)
    missing = tmp_path / "not-yet"
    assert encode(missing) == b"pm" + encode(str(missing))


def test_directories_count_by_their_tree_digest(tmp_path: Path) -> None:
    from tests.conftest import TREE_DIGEST, make_tree

    one = make_tree(tmp_path / "one")
    two = make_tree(tmp_path / "two")
    assert encode(one) == encode(two) == b"pd" + encode(TREE_DIGEST)
    (two / "a.txt").write_text("edited\n")
    assert encode(two) != encode(one)


def test_artifact_refs_count_by_digest() -> None:
    digest = "sha256:" + "ab" * 32
    ref1 = ArtifactRef(uri="s3://b/x", key="x", kind="blob", digest=digest, size_bytes=1)
    ref2 = ArtifactRef(uri="file:///y", key="y", kind="file", digest=digest, size_bytes=1)
    assert encode(ref1) == encode(ref2) == b"R" + encode(digest)


def test_numpy_arrays_count_by_dtype_shape_and_bytes() -> None:
    np = pytest.importorskip("numpy")
    a = np.arange(6, dtype="<i4")
    assert encode(a) == b"As3:<i4t1:i6;b24:" + a.tobytes()
    assert encode(a.reshape(2, 3)) != encode(a)
    assert encode(a.astype("<i8")) != encode(a)
    assert encode(a.reshape(2, 3).T) == encode(np.ascontiguousarray(a.reshape(2, 3).T))
    assert encode(np.float64(1.5)) == b"as3:<f8b8:" + struct.pack("<d", 1.5)
    assert encode(np.array(["a", None], dtype=object)) == encode(np.array(["a", None], dtype=object))


def test_pandas_objects_count_by_content() -> None:
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    assert encode(df) == encode(df.copy())
    assert encode(df) != encode(df.assign(a=[1, 3]))
    assert encode(df) != encode(df.rename(columns={"a": "c"}))
    assert encode(df["a"]) == encode(df["a"].copy()) != encode(df["b"])
    assert encode(df.index) == encode(pd.RangeIndex(2))


def test_other_objects_hash_through_pickle_with_a_one_time_warning() -> None:
    class Opaque:
        def __init__(self, n: int) -> None:
            self.n = n

        def __reduce__(self) -> Any:
            return (int, (self.n,))

    with pytest.warns(UnstableKeyWarning, match="pickle"):
        first = encode(Opaque(1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert encode(Opaque(1)) == first  # no second warning
    assert encode(Opaque(2)) != first


def key_fn(x: Any, y: int = 2) -> None:
    """Only its signature matters here."""


def test_unhashable_arguments_raise_a_type_error_naming_them(tmp_path: Path) -> None:
    f = cacheable(key_fn)
    with open(tmp_path / "f.txt", "w") as handle:
        with pytest.raises(TypeError, match="argument 'x'"):
            f.cache_key(handle)
    with pytest.raises(UnhashableArgumentError, match="argument 'x'.*ignore=\\['x'\\]"):
        f.cache_key([threading.Lock()])
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(TypeError, match="argument 'x'"):
        f.cache_key(cyclic)


# --------------------------------------------------------------------------- binding


def signature_fn(a: int, b: int = 2, *rest: int, c: int = 3, **extra: int) -> None:
    """Every kind of parameter."""


def test_defaults_passed_explicitly_give_the_same_key() -> None:
    f = cacheable(key_fn)
    assert f.cache_key(1) == f.cache_key(1, 2) == f.cache_key(1, y=2) == f.cache_key(x=1, y=2)
    assert f.cache_key(1) != f.cache_key(1, 3)
    g = cacheable(signature_fn)
    assert g.cache_key(1) == g.cache_key(1, 2, c=3) == g.cache_key(a=1, b=2, c=3)
    assert g.cache_key(1, 2, 5) != g.cache_key(1, 2)
    assert g.cache_key(1, z=1, w=2) == g.cache_key(1, w=2, z=1)
    assert g.cache_key(1, z=1) != g.cache_key(1)


def mixed_fn(a: int, /, b: int, *, c: int = 1, d: str = "d") -> None:
    """Positional-only and keyword-only parameters."""


def reference_key(f: Any, *args: Any, **kwargs: Any) -> str:
    """What the key must be: inspect's binding with defaults applied, through cache_key."""
    bound = inspect.signature(f.uncached).bind(*args, **kwargs)
    bound.apply_defaults()
    ignored = f._options.ignore
    arguments = {name: value for name, value in bound.arguments.items() if name not in ignored}
    return cache_key(f.qualified_name, f.source_hash, f._options.version, arguments)


@pytest.mark.parametrize(
    ("fn", "ignore", "args", "kwargs"),
    [
        (key_fn, (), (1,), {}),
        (key_fn, (), (1, 5), {}),
        (key_fn, (), (), {"y": 5, "x": 1}),
        (key_fn, ("y",), (1,), {"y": 9}),
        (signature_fn, (), (1,), {}),
        (signature_fn, (), (1, 2, 3, 4), {"c": 5, "z": 6}),
        (signature_fn, ("rest",), (1, 2, 3), {"a2": 0}),
        (mixed_fn, (), (1, 2), {}),
        (mixed_fn, (), (1,), {"b": 2, "d": "x"}),
        (mixed_fn, ("c",), (1, 2), {"c": 7}),
    ],
)
def test_binding_matches_inspect(fn: Any, ignore: tuple[str, ...], args: Any, kwargs: Any) -> None:
    f = cacheable(ignore=list(ignore), version="v")(fn)
    assert f.cache_key(*args, **kwargs) == reference_key(f, *args, **kwargs)


def test_binding_errors_are_the_calls_own_type_errors() -> None:
    m = cacheable(mixed_fn)
    with pytest.raises(TypeError, match="positional"):
        m.cache_key(a=1, b=2)
    with pytest.raises(TypeError):
        m.cache_key(1, 2, 3)
    ignored_but_required = cacheable(ignore=["x"])(key_fn)
    with pytest.raises(TypeError, match="x"):
        ignored_but_required.cache_key(y=1)
    f = cacheable(key_fn)
    with pytest.raises(TypeError, match="missing a required argument|required positional"):
        f.cache_key()
    with pytest.raises(TypeError, match="multiple values"):
        f.cache_key(1, x=1)
    with pytest.raises(TypeError, match="unexpected keyword|got an unexpected"):
        f.cache_key(1, z=1)
    with pytest.raises(TypeError, match="too many"):
        f.cache_key(1, 2, 3)


def test_ignored_arguments_are_not_in_the_key() -> None:
    f = cacheable(ignore=["y"])(key_fn)
    assert f.cache_key(1, 2) == f.cache_key(1, 99)
    assert f.cache_key(1) != f.cache_key(2)
    with pytest.raises(ValueError, match="not parameters"):
        cacheable(ignore=["nope"])(key_fn)


# --------------------------------------------------------------------------- source hashes

VARIANT_BASE = """
from scalable.cache import cacheable


def tag(f):
    return f


@cacheable
def f(x, y=2):
    # the sum
    total = x + y
    return {"x": x, "total": total}
"""

VARIANT_REFORMATTED = '''
from scalable.cache import cacheable
import scalable.cache as sc


def tag(f):
    return f


@sc.cacheable(recompute=False, tiers="local")
def f(
    x,
    y = 2,
):
    """A docstring does not count."""
    total = (x
             + y)  # a different comment
    return {'x': x, 'total': total,}
'''

VARIANT_EDITED = VARIANT_BASE.replace("x + y", "x - y")
VARIANT_DECORATED = VARIANT_BASE.replace("@cacheable\n", "@cacheable\n@tag\n")
VARIANT_VERSIONED = VARIANT_BASE.replace("@cacheable\n", "@cacheable(version='2')\n")


def test_reformatting_comments_docstrings_and_cache_options_do_not_change_the_key(tmp_path: Path) -> None:
    base = load_module(tmp_path, VARIANT_BASE)
    reformatted = load_module(tmp_path, VARIANT_REFORMATTED)
    assert reformatted.f.source_hash == base.f.source_hash
    assert reformatted.f.cache_key(1) == base.f.cache_key(1)


def test_editing_the_body_a_decorator_or_the_version_changes_the_key(tmp_path: Path) -> None:
    base = load_module(tmp_path, VARIANT_BASE).f.cache_key(1)
    assert load_module(tmp_path, VARIANT_EDITED).f.cache_key(1) != base
    assert load_module(tmp_path, VARIANT_DECORATED).f.cache_key(1) != base
    assert load_module(tmp_path, VARIANT_VERSIONED).f.cache_key(1) != base


def test_functions_without_source_hash_their_bytecode() -> None:
    namespace: dict[str, Any] = {}
    exec(compile("def g(x):\n    return x + 1\n", "<no file>", "exec"), namespace)
    exec(compile("def h(x):\n    return x + 2\n", "<no file>", "exec"), namespace)
    g, h = cacheable(namespace["g"]), cacheable(namespace["h"])
    assert len(g.source_hash) == 64
    assert g.source_hash != h.source_hash
    exec(compile("def g(x):\n    return x + 1\n", "<other>", "exec"), namespace)
    assert cacheable(namespace["g"]).source_hash == g.source_hash


def test_the_module_path_is_part_of_the_qualified_name() -> None:
    f = cacheable(key_fn)
    assert f.qualified_name == f"{__name__}:key_fn"
    assert sys.modules[__name__].key_fn is key_fn
