"""``build_artifact_store``: paths and URIs to stores, and the errors for ones it cannot build."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import fsspec
import pytest

from scalable import (
    FsspecArtifactStore,
    LocalArtifactStore,
    UnsupportedURIError,
    build_artifact_store,
    register_artifact_store,
)
from scalable.artifacts import factory


def test_documented_usage_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    Path("output.csv").write_text("a,b\n1,2\n")
    # -- the README's lines, verbatim --
    store = build_artifact_store("./artifacts")
    ref = store.put("output.csv", "runs/run-001/output.csv")
    print(ref.uri, ref.digest, ref.size_bytes)
    # --
    out = capsys.readouterr().out.split()
    assert out[0] == (tmp_path / "artifacts" / "runs/run-001/output.csv").as_uri()
    assert out[1].startswith("sha256:") and out[2] == "8"
    assert isinstance(store, LocalArtifactStore) and store.root == tmp_path / "artifacts"


@pytest.mark.parametrize("form", ["relative", "absolute", "file-uri", "home", "pathlike"])
def test_local_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    target = tmp_path / "s"
    uri = {
        "relative": "s",
        "absolute": str(target),
        "file-uri": target.as_uri(),
        "home": "~/s",
        "pathlike": target,
    }[form]
    store = build_artifact_store(uri)
    assert isinstance(store, LocalArtifactStore) and store.root == target
    assert store.uri == target.as_uri()


def test_memory_and_storage_options_reach_the_filesystem() -> None:
    store = build_artifact_store("memory://bucket/prefix")
    assert isinstance(store, FsspecArtifactStore) and store.uri == "memory://bucket/prefix"
    s3 = build_artifact_store(
        "s3://bucket/prefix",
        endpoint_url="http://127.0.0.1:1",
        key="AK",
        secret="SK",
        max_concurrency=3,
        transport="fsspec",
    )
    assert isinstance(s3, FsspecArtifactStore)
    assert s3.fs.endpoint_url == "http://127.0.0.1:1" and s3.fs.key == "AK"
    assert s3.max_concurrency == 3
    assert s3.uri == "s3://bucket/prefix"


def test_s3_store_options_reach_the_store_not_s3fs() -> None:
    from scalable.artifacts.s3 import S3ArtifactStore

    for transport in ("native", "fsspec"):
        store = build_artifact_store(
            "s3://bucket/x",
            endpoint_url="http://127.0.0.1:1",
            part_size=8 * 1024 * 1024,
            multipart_threshold=1 << 25,
            transport=transport,
        )
        assert isinstance(store, S3ArtifactStore) == (transport == "fsspec")
        assert store.part_size == 8 * 1024 * 1024 and store.multipart_threshold == 1 << 25
        assert "part_size" not in store.storage_options


@pytest.mark.parametrize("scheme", ["s3", "s3a", "az", "abfs", "abfss"])
def test_s3_and_azure_use_the_native_transport_unless_told(scheme: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from scalable.artifacts.obstore_store import ObstoreArtifactStore

    monkeypatch.delenv("SCALABLE_TRANSPORT", raising=False)
    options = (
        {"key": "AK", "secret": "SK", "endpoint_url": "http://127.0.0.1:1"}
        if scheme.startswith("s3")
        else {"account_name": "acct", "account_key": "a2V5"}
    )
    assert isinstance(build_artifact_store(f"{scheme}://bucket/x", **options), ObstoreArtifactStore)
    assert isinstance(build_artifact_store(f"{scheme}://bucket/x", transport="fsspec", **options), FsspecArtifactStore)
    monkeypatch.setenv("SCALABLE_TRANSPORT", "fsspec")
    assert isinstance(build_artifact_store(f"{scheme}://bucket/x", **options), FsspecArtifactStore)
    # The argument wins over the environment.
    assert isinstance(build_artifact_store(f"{scheme}://bucket/x", transport="native", **options), ObstoreArtifactStore)


def test_other_schemes_ignore_the_transport(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SCALABLE_TRANSPORT", "native")
    assert isinstance(build_artifact_store("memory://bucket/t", transport="native"), FsspecArtifactStore)
    assert isinstance(build_artifact_store(tmp_path / "s", transport="fsspec"), LocalArtifactStore)


def test_an_unknown_transport_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UnsupportedURIError, match="transport='rust' .* is not a transport: use 'native'"):
        build_artifact_store("s3://bucket/x", transport="rust")
    monkeypatch.setenv("SCALABLE_TRANSPORT", "boto")
    with pytest.raises(UnsupportedURIError, match=r"\$SCALABLE_TRANSPORT='boto'"):
        build_artifact_store("s3://bucket/x")


@pytest.mark.parametrize(
    ("uri", "options", "named"),
    [
        ("s3://bucket/x", {"requester_pays": True}, "requester_pays"),
        ("s3://bucket/x", {"config_kwargs": {"retries": {"max_attempts": 1}}}, "config_kwargs"),
        ("s3://bucket/x", {"client_kwargs": {"verify": False}}, "client_kwargs['verify']"),
        ("az://container/x", {"account_name": "a", "account_key": "a2V5", "blocksize": 1 << 20}, "blocksize"),
    ],
)
def test_an_option_the_native_transport_cannot_honour_names_it(uri: str, options: dict, named: str) -> None:
    with pytest.raises(UnsupportedURIError) as info:
        build_artifact_store(uri, **options)
    message = str(info.value)
    assert named in message and "transport='fsspec'" in message
    assert isinstance(build_artifact_store(uri, transport="fsspec", **options), FsspecArtifactStore)


def test_native_options_translate_what_s3fs_and_adlfs_take() -> None:
    from scalable.artifacts.obstore_options import azure_config, s3_config

    client = {"endpoint_url": "http://h:1", "region_name": "r"}
    s3 = s3_config("b", {"key": "AK", "secret": "SK", "token": "T", "client_kwargs": client})
    assert s3.config["access_key_id"] == "AK" and s3.config["secret_access_key"] == "SK"
    assert s3.config["session_token"] == "T" and s3.config["region"] == "r" and s3.config["endpoint"] == "http://h:1"
    assert s3.endpoint == "http://h:1"
    assert s3_config("b", {"anon": True}).config["skip_signature"] is True
    with pytest.raises(UnsupportedURIError, match="key without secret"):
        s3_config("b", {"key": "AK"})
    conn = "DefaultEndpointsProtocol=http;AccountName=acct;AccountKey=a2V5PT0=;BlobEndpoint=http://h:2/acct;"
    az = azure_config("c", {"connection_string": conn})
    assert az.config["account_name"] == "acct" and az.config["account_key"] == "a2V5PT0="
    assert az.config["endpoint"] == "http://h:2/acct" and az.endpoint == "http://h:2/acct"
    cloud = azure_config("c", {"connection_string": "AccountName=acct;AccountKey=k;EndpointSuffix=core.windows.net"})
    assert cloud.config["endpoint"] == "https://acct.blob.core.windows.net"
    assert azure_config("c", {"account_name": "acct", "sas_token": "?sv=1&sig=x"}).config["sas_key"] == "sv=1&sig=x"


def test_secrets_in_uris_are_not_kept() -> None:
    store = build_artifact_store("memory://user:hunter2@bucket/x")
    assert "hunter2" not in store.uri and "hunter2" not in repr(store)


def test_unknown_scheme() -> None:
    with pytest.raises(UnsupportedURIError, match="unknown URI scheme 'nosuch'") as info:
        build_artifact_store("nosuch://bucket/x")
    assert isinstance(info.value, ValueError)


def test_scheme_without_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    fsspec.register_implementation("fakeaz", "no_such_module_anywhere.FS", clobber=True, errtxt="missing driver")
    monkeypatch.setitem(factory.EXTRAS, "fakeaz", "azure")
    with pytest.raises(UnsupportedURIError, match=r"pip install 'scalable\[azure\]'"):
        build_artifact_store("fakeaz://container/x")


def test_registered_scheme_and_entry_points(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    made = []

    def make(uri: str, **options: object) -> LocalArtifactStore:
        made.append((uri, options))
        return LocalArtifactStore(tmp_path / "plugin")

    monkeypatch.setattr(factory, "_registry", {})
    register_artifact_store("mine", make)
    store = build_artifact_store("mine://x", flavour="y")
    assert made == [("mine://x", {"flavour": "y"})] and isinstance(store, LocalArtifactStore)


def test_entry_point_group_is_loaded(tmp_path: Path) -> None:
    # A real installed distribution advertising a scheme in the entry-point group.
    dist = tmp_path / "site" / "scalable_plugin_demo-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: scalable-plugin-demo\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[scalable.artifact_stores]\ndemo = scalable_plugin_demo:make\n")
    (tmp_path / "site" / "scalable_plugin_demo.py").write_text(
        "from scalable import LocalArtifactStore\n"
        "def make(uri, **options):\n"
        "    return LocalArtifactStore(uri.split('://', 1)[1])\n"
    )
    code = textwrap.dedent(
        f"""
        import sys; sys.path.insert(0, {str(tmp_path / "site")!r})
        from scalable import build_artifact_store
        store = build_artifact_store("demo://{tmp_path / "via-plugin"}")
        print(type(store).__name__, store.root)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["LocalArtifactStore", str(tmp_path / "via-plugin")]


def test_local_store_rejects_storage_options(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedURIError, match="takes no storage options"):
        build_artifact_store(tmp_path / "s", endpoint_url="x")


def test_remote_file_uri_host_rejected() -> None:
    with pytest.raises(UnsupportedURIError, match="names host"):
        build_artifact_store("file://otherhost/data")


def test_bad_uri_values() -> None:
    with pytest.raises(UnsupportedURIError):
        build_artifact_store("")


def test_real_crash_between_bytes_and_ref(tmp_path: Path) -> None:
    """A process killed after writing the bytes and before the ref leaves the old version."""
    root = tmp_path / "store"
    store = build_artifact_store(root)
    old = store.put_bytes(b"old version", "k")
    code = textwrap.dedent(
        f"""
        import os
        from scalable import build_artifact_store
        from scalable.artifacts.store import REFS
        store = build_artifact_store({str(root)!r})
        real = store._write_bytes
        def write(data, rel):
            if rel.startswith(REFS + "/"):
                os._exit(9)  # die: no cleanup, no finally blocks
            real(data, rel)
        store._write_bytes = write
        store.put_bytes(b"new version that never commits", "k")
        store.put_bytes(b"brand new", "fresh")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "SCALABLE_DIGEST_CACHE": "off"})
    assert proc.returncode == 9
    again = build_artifact_store(root)
    assert again.info("k") == old and again.get_bytes("k") == b"old version"
    assert again.list_artifacts() == ["k"]
    assert again.put_bytes(b"after the crash", "k").size_bytes == len(b"after the crash")
    assert again.get_bytes("k") == b"after the crash"


def test_the_manifest_chooses_the_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    from scalable.artifacts.obstore_store import ObstoreArtifactStore
    from scalable.manifest.load import parse_manifest

    monkeypatch.delenv("SCALABLE_TRANSPORT", raising=False)
    text = """\
version: 1
project:
  transport: fsspec
  storage_options:
    "s3://fast": {transport: native, key: AK, secret: SK, endpoint_url: "http://127.0.0.1:1"}
    "s3://": {key: AK, secret: SK, endpoint_url: "http://127.0.0.1:1"}
"""
    project = parse_manifest(text).project
    assert project.storage_options_for("s3://other/x")["transport"] == "fsspec"
    slow = build_artifact_store("s3://other/x", **project.storage_options_for("s3://other/x"))
    fast = build_artifact_store("s3://fast/x", **project.storage_options_for("s3://fast/x"))
    assert isinstance(slow, FsspecArtifactStore) and isinstance(fast, ObstoreArtifactStore)
    monkeypatch.setenv("SCALABLE_TRANSPORT", "native")  # the variable overrides project.transport
    assert "transport" not in project.storage_options_for("s3://other/x")
    assert isinstance(
        build_artifact_store("s3://other/x", **project.storage_options_for("s3://other/x")), ObstoreArtifactStore
    )
