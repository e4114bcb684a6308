"""``scalable://``: pandas, dask and xarray read artifacts through the read-only fsspec view.

Stores are real: local disk and SeaweedFS for S3.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pytest
import tomllib

from scalable import IntegrityError, build_artifact_store
from scalable.artifacts.fsspec_view import ScalableFileSystem, artifact_url, store_url
from scalable.artifacts.store import BaseArtifactStore

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[BaseArtifactStore, dict[str, Any]]:
    """A fresh store and the storage options a reader must pass to reach it."""
    if request.param == "local":
        return build_artifact_store(tmp_path / "store"), {}  # type: ignore[return-value]
    server = request.getfixturevalue("s3_server")
    uri = server.url(server.shared_bucket(), uuid.uuid4().hex)
    return build_artifact_store(uri, **server.storage_options), server.storage_options  # type: ignore[return-value]


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({"member": [1, 2, 3], "final": [998.25, 1001.5, 999.0], "tag": ["a", "b", "c"]})


def test_pandas_and_dask_read_artifacts_by_their_url(
    backend: tuple[BaseArtifactStore, dict[str, Any]], frame: pd.DataFrame, tmp_path: Path
) -> None:
    store, options = backend
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    csv = store.put(tmp_path / "t.csv", "tables/run 1/out#1.csv")
    parquet = store.put(tmp_path / "t.parquet", "tables/t.parquet")
    assert csv.url == f"{store_url(store.uri)}/tables/run%201/out%231.csv"

    pd.testing.assert_frame_equal(pd.read_csv(csv.url, storage_options=options), frame)
    pd.testing.assert_frame_equal(pd.read_parquet(parquet.url, storage_options=options), frame)
    import dask.dataframe as dd

    got = dd.read_parquet(parquet.url, storage_options=options).compute()
    assert got.reset_index(drop=True).to_dict("list") == frame.to_dict("list")


@pytest.mark.parametrize("pack", [True, False])
def test_xarray_opens_a_zarr_directory_artifact(
    backend: tuple[BaseArtifactStore, dict[str, Any]], tmp_path: Path, pack: bool
) -> None:
    xr = pytest.importorskip("xarray")
    pytest.importorskip("zarr")
    store, options = backend
    ds = xr.Dataset(
        {"temperature": (("time", "site"), np.arange(12.0).reshape(4, 3))},
        coords={"time": np.arange(4), "site": ["x", "y", "z"]},
    )
    # Format 2: consolidated metadata and str coords are in its spec (no zarr warnings).
    ds.to_zarr(tmp_path / "cube.zarr", mode="w", zarr_format=2)
    ref = store.put(tmp_path / "cube.zarr", "cubes/cube.zarr", pack=pack)
    opened = xr.open_zarr(ref.url, storage_options=options)
    xr.testing.assert_identical(opened.load(), ds)
    via_open_dataset = xr.open_dataset(ref.url, engine="zarr", backend_kwargs={"storage_options": options})
    np.testing.assert_array_equal(via_open_dataset.temperature.values, ds.temperature.values)


def test_ls_info_and_cat_present_the_store_by_key(
    backend: tuple[BaseArtifactStore, dict[str, Any]], tmp_path: Path
) -> None:
    store, options = backend
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_bytes(b"0123456789")
    (tree / "sub" / "b.txt").write_bytes(b"bee")
    dir_ref = store.put(tree, "runs/r1/tree", pack=True)
    blob = store.put_bytes(b"hello", "runs/r1/note.txt")
    store.put_bytes(b"x", "top.txt")
    fs = ScalableFileSystem(store=store)

    assert fs.ls("", detail=False) == ["runs", "top.txt"]
    assert fs.ls("runs/r1", detail=False) == ["runs/r1/note.txt", "runs/r1/tree"]
    assert fs.ls("runs/r1/tree", detail=False) == ["runs/r1/tree/a.txt", "runs/r1/tree/sub"]
    info = fs.info("runs/r1/note.txt")
    assert (info["type"], info["size"], info["digest"], info["kind"]) == ("file", 5, blob.digest, "blob")
    tree_info = fs.info("runs/r1/tree")
    assert (tree_info["type"], tree_info["size"], tree_info["digest"]) == ("directory", 13, dir_ref.digest)
    assert fs.info("runs/r1/tree/sub/b.txt")["size"] == 3
    assert fs.info("runs")["type"] == "directory"
    assert fs.cat("runs/r1/tree/sub/b.txt") == b"bee"
    assert fs.cat_file("runs/r1/tree/a.txt", start=3, end=6) == b"345"  # a range of a packed member
    assert fs.isdir("runs/r1/tree/sub") and fs.isfile("runs/r1/note.txt") and not fs.exists("runs/r2")
    with pytest.raises(FileNotFoundError):
        fs.open("runs/r1/tree/missing.txt")
    with pytest.raises(IsADirectoryError):
        fs.open("runs/r1/tree")

    # The same through URLs that carry the store, as fsspec.open sees them.
    with fsspec.open(f"{store_url(store.uri)}/runs/r1/note.txt", **options) as f:
        assert f.read() == b"hello"
    url_fs, path = fsspec.url_to_fs(dir_ref.url, **options)
    assert url_fs.ls(path, detail=False) == [f"{path}/a.txt", f"{path}/sub"]


def test_a_re_put_key_shows_its_new_version(backend: tuple[BaseArtifactStore, dict[str, Any]], tmp_path: Path) -> None:
    store, _ = backend
    store.put_bytes(b"one", "k.txt")
    (tmp_path / "t1").mkdir()
    (tmp_path / "t1" / "old.txt").write_bytes(b"old")
    store.put(tmp_path / "t1", "tree")
    fresh = ScalableFileSystem(store=store, ref_ttl=0)
    cached = ScalableFileSystem(store=store, ref_ttl=3600)
    for fs in (fresh, cached):
        assert fs.cat("k.txt") == b"one" and fs.ls("tree", detail=False) == ["tree/old.txt"]
    store.put_bytes(b"second", "k.txt")
    (tmp_path / "t2").mkdir()
    (tmp_path / "t2" / "new.txt").write_bytes(b"new")
    store.put(tmp_path / "t2", "tree")
    assert fresh.info("k.txt")["size"] == 6 and fresh.cat("k.txt") == b"second"
    assert fresh.ls("tree", detail=False) == ["tree/new.txt"]
    assert cached.info("k.txt")["size"] == 3  # remembered for ref_ttl seconds
    cached.invalidate_cache()
    assert cached.info("k.txt")["size"] == 6 and cached.ls("tree", detail=False) == ["tree/new.txt"]


def test_the_view_is_read_only(backend: tuple[BaseArtifactStore, dict[str, Any]]) -> None:
    store, options = backend
    ref = store.put_bytes(b"keep", "k.txt")
    fs, path = fsspec.url_to_fs(ref.url, **options)
    with pytest.raises(PermissionError, match="read-only"):
        fs.open(path, "wb")
    with pytest.raises(PermissionError, match="read-only"):
        fs.rm(path)
    assert store.get_bytes("k.txt") == b"keep"


def test_altered_bytes_are_refused_at_the_end_of_a_read(tmp_path: Path) -> None:
    store = build_artifact_store(tmp_path / "store")
    payload = b"member,final\n" + b"1,998.25\n" * 1000
    ref = store.put_bytes(payload, "t.csv")
    # Find the stored object by its bytes, wherever the store's layout keeps it, and alter one byte.
    stored = [p for p in (tmp_path / "store").rglob("*") if p.is_file() and p.read_bytes() == payload]
    assert len(stored) == 1
    stored[0].write_bytes(payload.replace(b"998.25", b"999.25", 1))
    with pytest.raises(IntegrityError), fsspec.open(ref.url) as f:
        f.read()
    with pytest.raises(IntegrityError):
        pd.read_csv(ref.url)


def test_s3_options_come_from_the_manifest(s3_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = s3_server.url(s3_server.shared_bucket(), uuid.uuid4().hex)
    ref = build_artifact_store(uri, **s3_server.storage_options).put_bytes(b"a,b\n1,2\n", "m.csv")
    opts = s3_server.storage_options
    (tmp_path / "scalable.yaml").write_text(
        "version: 1\nproject:\n  storage_options:\n    's3://':\n"
        f"      key: {opts['key']}\n      secret: {opts['secret']}\n"
        f"      endpoint_url: {opts['client_kwargs']['endpoint_url']}\n"
    )
    monkeypatch.chdir(tmp_path)
    for name in ("SCALABLE_MANIFEST", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    ScalableFileSystem.clear_instance_cache()
    assert pd.read_csv(ref.url).to_dict("list") == {"a": [1], "b": [2]}
    ScalableFileSystem.clear_instance_cache()


def test_urls_round_trip_any_key_and_name_their_store() -> None:
    url = artifact_url("s3://bucket/prefix", "a b/c#d?e%f.csv")
    assert url == "scalable://s3%3A%2F%2Fbucket%2Fprefix/a%20b/c%23d%3Fe%25f.csv"
    fs = ScalableFileSystem()
    assert fs._split(url)[2] == "a b/c#d?e%f.csv"
    for bad in ("scalable:///k.csv", "scalable://k.csv", "scalable://relative%2Fstore/k.csv"):
        with pytest.raises(FileNotFoundError, match="starts with its store's URI"):
            fs.info(bad)


def test_fsspec_finds_the_protocol_through_the_entry_point(tmp_path: Path) -> None:
    # The entry point as pyproject declares it, installed as pip would, in a process that never imports scalable.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    target = project["project"]["entry-points"]["fsspec.specs"]["scalable"]
    assert target == "scalable.artifacts.fsspec_view:ScalableFileSystem"
    site = tmp_path / "site"
    dist = site / "scalable_probe-0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: scalable-probe\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text(f"[fsspec.specs]\nscalable = {target}\n")
    code = textwrap.dedent(
        """
        import sys
        import fsspec
        from fsspec.registry import known_implementations
        assert "scalable" not in sys.modules, "scalable was imported before fsspec looked it up"
        assert "scalable" in known_implementations
        cls = fsspec.get_filesystem_class("scalable")
        print(cls.__module__, cls.__name__)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["scalable.artifacts.fsspec_view", "ScalableFileSystem"]
