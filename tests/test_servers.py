"""Smoke tests of the test servers themselves, with raw s3fs / gcsfs / adlfs (not scalable).

If these fail, every object-store test would fail for reasons that are not scalable's.
"""

from __future__ import annotations

import os
import threading
import uuid
from typing import Any

import pytest

from tests.servers.base import ManagedServer, ServerError, port_is_free
from tests.servers.fakegcs import FakeGcsServer

SERVER_FIXTURES = ["s3_server", "gcs_server", "azure_server"]
MiB = 1024 * 1024


@pytest.fixture(params=SERVER_FIXTURES)
def server(request: pytest.FixtureRequest) -> ManagedServer:
    return request.getfixturevalue(request.param)


def _payload(size: int) -> bytes:
    return os.urandom(size)


# --------------------------------------------------------------------------- every server


def test_write_list_read(server: ManagedServer) -> None:
    bucket = server.new_bucket()
    fs = server.filesystem()
    fs.pipe(f"{bucket}/dir/hello.txt", b"hello world")
    fs.pipe(f"{bucket}/dir/sub/other.bin", b"\x00\x01")

    assert sorted(fs.ls(f"{bucket}/dir", detail=False)) == [f"{bucket}/dir/hello.txt", f"{bucket}/dir/sub"]
    assert fs.find(bucket) == [f"{bucket}/dir/hello.txt", f"{bucket}/dir/sub/other.bin"]
    assert fs.cat(f"{bucket}/dir/hello.txt") == b"hello world"
    assert fs.info(f"{bucket}/dir/hello.txt")["size"] == 11
    # Ranged reads are served by the server (a full body would not compare equal).
    assert fs.cat_file(f"{bucket}/dir/hello.txt", start=6, end=9) == b"wor"
    with fs.open(f"{bucket}/dir/hello.txt", "rb") as f:
        f.seek(6)
        assert f.read(5) == b"world"
    assert server.url(bucket, "dir/hello.txt") == f"{server.protocol}://{bucket}/dir/hello.txt"


def test_missing_object_and_bucket(server: ManagedServer) -> None:
    fs = server.filesystem()
    bucket = server.shared_bucket()
    with pytest.raises(FileNotFoundError):
        fs.cat(f"{bucket}/no-such-object-{uuid.uuid4().hex}")
    assert not fs.exists(f"no-such-bucket-{uuid.uuid4().hex[:12]}")


def test_object_and_prefix_of_the_same_name(server: ManagedServer) -> None:
    """``a`` and ``a/b`` both exist on real object stores (fake-gcs-server's filesystem backend can't)."""
    bucket = server.shared_bucket()
    fs = server.filesystem()
    base = f"{bucket}/{uuid.uuid4().hex}"
    fs.pipe(f"{base}/a", b"file")
    fs.pipe(f"{base}/a/b", b"nested")
    assert fs.cat(f"{base}/a") == b"file"
    assert fs.cat(f"{base}/a/b") == b"nested"


def test_large_upload_in_parts(server: ManagedServer) -> None:
    """Multipart (S3), resumable (GCS) and block (Azure) uploads, written in 1 MiB pieces."""
    bucket = server.shared_bucket()
    fs = server.filesystem()
    data = _payload(11 * MiB + 123)
    path = f"{bucket}/{uuid.uuid4().hex}/big.bin"
    with fs.open(path, "wb", block_size=5 * MiB) as f:
        for offset in range(0, len(data), MiB):
            f.write(data[offset : offset + MiB])
    assert fs.info(path)["size"] == len(data)
    assert fs.cat(path) == data
    assert fs.cat_file(path, start=7 * MiB, end=7 * MiB + 100) == data[7 * MiB : 7 * MiB + 100]
    if server.protocol == "s3":
        assert fs.info(path)["ETag"].strip('"').endswith("-3")  # three parts: 5 + 5 + 1 MiB


def test_listing_cache_needs_invalidation(server: ManagedServer) -> None:
    """What another client wrote is seen after ``invalidate_cache()`` (listings are cached per instance)."""
    bucket = server.shared_bucket()
    base = f"{bucket}/{uuid.uuid4().hex}"
    reader, writer = server.filesystem(), server.filesystem()
    writer.pipe(f"{base}/one", b"1")
    assert reader.ls(base, detail=False) == [f"{base}/one"]
    writer.pipe(f"{base}/two", b"2")
    reader.invalidate_cache()
    assert reader.ls(base, detail=False) == [f"{base}/one", f"{base}/two"]
    assert reader.exists(f"{base}/two")
    # A filesystem without a listings cache never needs it.
    fresh = server.filesystem(use_listings_cache=False)
    assert fresh.ls(base, detail=False) == [f"{base}/one", f"{base}/two"]
    writer.pipe(f"{base}/three", b"3")
    assert fresh.ls(base, detail=False) == [f"{base}/one", f"{base}/three", f"{base}/two"]


def test_storage_options_work_with_fsspec_directly(server: ManagedServer) -> None:
    import fsspec

    bucket = server.shared_bucket()
    path = f"{uuid.uuid4().hex}.txt"
    with fsspec.open(server.url(bucket, path), "wb", **server.storage_options) as f:
        f.write(b"via fsspec.open")
    fs, root = fsspec.core.url_to_fs(server.url(bucket), **server.storage_options)
    assert fs.cat(f"{root}/{path}") == b"via fsspec.open"


def test_server_runs_on_its_pid(server: ManagedServer) -> None:
    assert server.is_running() and server.pid
    assert not port_is_free(int(server.endpoint_url.split(":")[2].split("/")[0]))
    assert server.startup_seconds is not None and server.startup_seconds < server.startup_timeout


# --------------------------------------------------------------------------- S3 (SeaweedFS)


def _s3fs(s3_server: Any, options: dict[str, Any]) -> Any:
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True, **options)


def test_s3_wrong_credentials_are_refused(s3_server: Any) -> None:
    bucket = s3_server.shared_bucket()
    s3_server.filesystem().pipe(f"{bucket}/secret.txt", b"s")

    wrong_secret = _s3fs(s3_server, s3_server.options_for(s3_server.access_key, "not-the-secret"))
    with pytest.raises(PermissionError, match="signature"):
        wrong_secret.ls(bucket)
    with pytest.raises(PermissionError):  # a HEAD has no error body: just "Forbidden"
        wrong_secret.cat(f"{bucket}/secret.txt")
    with pytest.raises(PermissionError):
        wrong_secret.pipe(f"{bucket}/intruder.txt", b"x")

    unknown_key = _s3fs(s3_server, s3_server.options_for("no-such-key", s3_server.secret_key))
    with pytest.raises(PermissionError, match="access key"):
        unknown_key.ls(bucket)

    anonymous = _s3fs(s3_server, {"anon": True, "client_kwargs": {"endpoint_url": s3_server.endpoint_url}})
    with pytest.raises(PermissionError):
        anonymous.cat(f"{bucket}/secret.txt")

    assert not s3_server.filesystem().exists(f"{bucket}/intruder.txt")


def test_s3_readonly_identity(s3_server: Any) -> None:
    bucket = s3_server.shared_bucket()
    s3_server.filesystem().pipe(f"{bucket}/ro.txt", b"r")
    readonly = _s3fs(s3_server, s3_server.readonly_storage_options)
    assert readonly.cat(f"{bucket}/ro.txt") == b"r"
    with pytest.raises(PermissionError):
        readonly.pipe(f"{bucket}/ro-write.txt", b"w")


def test_s3_put_into_a_missing_bucket_fails(s3_server: Any) -> None:
    with pytest.raises(FileNotFoundError):
        s3_server.filesystem().pipe(f"missing-{uuid.uuid4().hex[:12]}/x", b"x")


def test_s3_data_survives_restart_and_kill(s3_server: Any) -> None:
    bucket = s3_server.new_bucket("restart")
    s3_server.filesystem().pipe(f"{bucket}/before.txt", b"before")
    port, pid = s3_server.s3_port, s3_server.pid

    s3_server.restart()
    assert s3_server.s3_port == port and s3_server.pid != pid
    fs = s3_server.filesystem()
    assert fs.cat(f"{bucket}/before.txt") == b"before"
    fs.pipe(f"{bucket}/after-restart.txt", b"after")

    s3_server.kill()
    assert not s3_server.is_running()
    s3_server.start()
    fs = s3_server.filesystem()
    assert fs.cat(f"{bucket}/before.txt") == b"before"
    assert fs.cat(f"{bucket}/after-restart.txt") == b"after"


def test_s3_kill_mid_upload_then_bring_back(s3_server: Any) -> None:
    """The pattern for fault tests: the server dies during a multipart upload, then comes back."""
    from botocore.exceptions import EndpointConnectionError

    bucket = s3_server.shared_bucket()
    key = f"{uuid.uuid4().hex}/interrupted.bin"
    # botocore's own retries (5 attempts, backoff) under s3fs's (5): without this, ~15 s to give up.
    fs = s3_server.filesystem(config_kwargs={"retries": {"max_attempts": 1}})
    f = fs.open(f"{bucket}/{key}", "wb", block_size=5 * MiB)
    f.write(_payload(6 * MiB))
    f.flush()  # the multipart upload starts and its first part goes up
    s3_server.kill()
    # s3fs retries, then gives up with botocore's error (not an OSError).
    with pytest.raises((EndpointConnectionError, OSError)):
        f.write(_payload(6 * MiB))
        f.close()
    s3_server.start()

    client = s3_server._client()
    uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [u["Key"] for u in uploads if u["Key"] == key] == [key]  # SeaweedFS kept the unfinished upload
    # A file whose close failed must be discarded, or its __del__ tries the upload again at GC time.
    f.discard()  # aborts the multipart upload
    f.closed = True
    uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert key not in [u["Key"] for u in uploads]

    fs = s3_server.filesystem()
    assert not fs.exists(f"{bucket}/{key}")  # an unfinished multipart upload is not an object
    fs.pipe(f"{bucket}/{key}", b"second try")
    assert fs.cat(f"{bucket}/{key}") == b"second try"


# --------------------------------------------------------------------------- GCS (fake-gcs-server)


def test_gcs_uses_plain_gcsfs(gcs_server: Any) -> None:
    fs = gcs_server.filesystem()
    assert type(fs).__name__ == "GCSFileSystem", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false was set too late"


def test_gcs_restart_memory_backend_comes_back_empty(gcs_server: Any) -> None:
    """The default (memory) backend loses everything on restart: a private server, not the shared one."""
    with FakeGcsServer(binary=gcs_server.binary) as private:
        assert private.persistent is False
        bucket = private.new_bucket("restart")
        private.filesystem().pipe(f"{bucket}/x", b"x")
        private.restart()
        fs = private.filesystem()
        assert not fs.exists(bucket)
        shared = private.shared_bucket()  # made again on demand
        fs.pipe(f"{shared}/after-restart", b"ok")
        assert fs.cat(f"{shared}/after-restart") == b"ok"


def test_gcs_filesystem_backend_survives_restart(gcs_server: Any) -> None:
    with FakeGcsServer(binary=gcs_server.binary, backend="filesystem") as private:
        assert private.persistent is True
        bucket = private.new_bucket("restart")
        private.filesystem().pipe(f"{bucket}/dir/x", b"x")
        private.kill()
        private.start()
        assert private.filesystem().cat(f"{bucket}/dir/x") == b"x"
    assert not private.is_running() and not private.workdir.exists()


# --------------------------------------------------------------------------- Azure (Azurite)


def test_azure_wrong_key_is_refused(azure_server: Any) -> None:
    import adlfs
    from azure.core.exceptions import HttpResponseError

    bucket = azure_server.shared_bucket()
    azure_server.filesystem().pipe(f"{bucket}/secret.txt", b"s")
    wrong_key = "A" * 86 + "=="
    fs = adlfs.AzureBlobFileSystem(
        connection_string=azure_server.connection_string_for(wrong_key), skip_instance_cache=True
    )
    for attempt in (lambda: fs.ls(bucket), lambda: fs.cat(f"{bucket}/secret.txt")):
        with pytest.raises(HttpResponseError) as refused:  # not a PermissionError: adlfs passes it through
            attempt()
        assert refused.value.status_code == 403
    with pytest.raises(HttpResponseError):
        fs.pipe(f"{bucket}/intruder.txt", b"x")
    assert not azure_server.filesystem().exists(f"{bucket}/intruder.txt")


def test_azure_data_survives_restart(azure_server: Any) -> None:
    bucket = azure_server.new_bucket("restart")
    azure_server.filesystem().pipe(f"{bucket}/before.txt", b"before")
    port = azure_server.port
    azure_server.restart()  # SIGTERM: Azurite saves its metadata (after kill() the last seconds may be lost)
    assert azure_server.port == port
    assert azure_server.filesystem().cat(f"{bucket}/before.txt") == b"before"


# --------------------------------------------------------------------------- the machinery


def test_start_failure_is_an_error_with_the_log(tmp_path: Any) -> None:
    class Broken(ManagedServer):
        name = "broken"

        def command(self) -> list[str]:
            return ["sh", "-c", "echo 'cannot bind: address in use' >&2; exit 3"]

        def is_ready(self) -> bool:
            return False

        @property
        def endpoint_url(self) -> str:
            return "http://127.0.0.1:1"

    server = Broken(workdir=tmp_path / "broken")
    with pytest.raises(ServerError, match=r"(?s)exited with code 3.*cannot bind: address in use"):
        server.start(timeout=10)
    assert server.pid is None
    server.close()


def test_stop_kills_what_ignores_sigterm(tmp_path: Any) -> None:
    ready = threading.Event()

    class Stubborn(ManagedServer):
        name = "stubborn"
        stop_timeout = 0.5

        def command(self) -> list[str]:
            return ["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"]

        def is_ready(self) -> bool:
            ready.set()
            return True

        @property
        def endpoint_url(self) -> str:
            return "http://127.0.0.1:1"

    server = Stubborn(workdir=tmp_path / "stubborn")
    server.start(timeout=10)
    pid = server.pid
    assert ready.is_set() and pid
    server.close()
    assert server.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
