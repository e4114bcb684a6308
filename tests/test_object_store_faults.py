"""Object stores when things go wrong: unreachable, missing bucket, wrong credentials, flaky answers."""

from __future__ import annotations

import uuid

import pytest

from scalable import (
    AccessDeniedError,
    BucketNotFoundError,
    StoreUnavailableError,
    UnsupportedURIError,
    build_artifact_store,
)
from scalable.artifacts.retry import Deadlines, RetryPolicy, is_transient, should_retry
from tests.servers.base import find_free_port

FAST = RetryPolicy(attempts=2, base=0.01, cap=0.02)
SECRET = "do-not-leak-this-secret"
#: Both transports of s3:// and az://: the native one (obstore) and fsspec's (s3fs, adlfs).
TRANSPORTS = ["native", "fsspec"]
#: Options that make each transport give up quickly on a server that is not there.
QUICK = {
    "native": {"deadlines": Deadlines(request=1, stall=2, operation=2)},
    "fsspec": {"config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1}},
}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_unreachable_s3_is_store_unavailable_and_names_the_endpoint(transport: str) -> None:
    port = find_free_port()  # nothing listens there
    endpoint = f"http://127.0.0.1:{port}"
    store = build_artifact_store(
        "s3://bucket/prefix",
        key="AKIDEXAMPLE",
        secret=SECRET,
        client_kwargs={"endpoint_url": endpoint, "region_name": "us-east-1"},
        retry_policy=FAST,
        transport=transport,
        **QUICK[transport],
    )
    for call in (lambda: store.put_bytes(b"x", "k"), lambda: store.exists("k"), lambda: store.list_artifacts()):
        with pytest.raises(StoreUnavailableError) as info:
            call()
        message = str(info.value)
        assert endpoint in message and "did not answer" in message
        assert SECRET not in message and "AKIDEXAMPLE" not in message
        assert info.value.__cause__ is None and info.value.__suppress_context__  # no stack of botocore internals


OBJECT_BACKENDS = ["s3", "s3-fsspec", "gcs", "azure", "azure-fsspec"]


def _server_and_options(request: pytest.FixtureRequest, backend: str) -> tuple[object, dict[str, object]]:
    name, _, transport = backend.partition("-")
    server = request.getfixturevalue(f"{name}_server")
    return server, {**server.storage_options, **({"transport": transport} if transport else {})}


@pytest.mark.parametrize("backend", OBJECT_BACKENDS)
def test_missing_bucket_says_how_to_create_it(request: pytest.FixtureRequest, backend: str) -> None:
    server, options = _server_and_options(request, backend)
    bucket = f"missing-{uuid.uuid4().hex[:12]}"
    store = build_artifact_store(server.url(bucket, "prefix"), **options)
    for call in (lambda: store.put_bytes(b"x", "k"), lambda: store.exists("k"), lambda: store.list_artifacts()):
        with pytest.raises(BucketNotFoundError, match=rf"bucket '{bucket}' .* does not exist.*create=True"):
            call()
    created = build_artifact_store(server.url(bucket, "prefix"), create=True, **options)
    assert created.put_bytes(b"x", "k").size_bytes == 1
    assert created.get_bytes("k") == b"x"


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("bucket", ["[bad", "has space"])
def test_a_bucket_name_s3_would_never_accept_is_a_uri_error(s3_server, bucket: str, transport: str) -> None:
    store = build_artifact_store(f"s3://{bucket}/prefix", transport=transport, **s3_server.storage_options)
    with pytest.raises(UnsupportedURIError, match="check the bucket name"):
        store.exists("k")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_wrong_s3_credentials(s3_server, transport: str) -> None:
    bucket = s3_server.shared_bucket()
    options = s3_server.options_for(s3_server.access_key, SECRET)
    store = build_artifact_store(s3_server.url(bucket, uuid.uuid4().hex), transport=transport, **options)
    with pytest.raises(AccessDeniedError, match="check the credentials") as info:
        store.put_bytes(b"x", "k")
    assert SECRET not in str(info.value) and isinstance(info.value, PermissionError)
    assert info.value.__suppress_context__


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_wrong_azure_credentials(azure_server, transport: str) -> None:
    bucket = azure_server.shared_bucket()
    wrong_key = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleQ=="
    store = build_artifact_store(
        azure_server.url(bucket, uuid.uuid4().hex),
        connection_string=azure_server.connection_string_for(wrong_key),
        transport=transport,
    )
    with pytest.raises(AccessDeniedError, match="check the credentials") as info:
        store.put_bytes(b"x", "k")
    assert wrong_key not in str(info.value)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_read_only_credentials_cannot_write(s3_server, transport: str) -> None:
    bucket = s3_server.shared_bucket()
    store = build_artifact_store(
        s3_server.url(bucket, uuid.uuid4().hex), transport=transport, **s3_server.readonly_storage_options
    )
    with pytest.raises(AccessDeniedError):
        store.put_bytes(b"x", "k")


class Flaky(Exception):
    """A 503 as botocore reports it."""

    def __init__(self) -> None:
        super().__init__("An error occurred (ServiceUnavailable): please retry")
        self.response = {"ResponseMetadata": {"HTTPStatusCode": 503}}


def test_transient_errors_are_retried_then_succeed(s3_server, monkeypatch: pytest.MonkeyPatch) -> None:
    store = build_artifact_store(
        s3_server.url(s3_server.shared_bucket(), uuid.uuid4().hex),
        retry_policy=RetryPolicy(attempts=4, base=0.01, cap=0.02),
        transport="fsspec",
        **s3_server.storage_options,
    )
    store.put_bytes(b"payload", "k")
    real = store.fs.cat_file
    calls = []

    def flaky(path, *args, **kwargs):
        calls.append(path)
        if len(calls) <= 2:
            raise Flaky()
        return real(path, *args, **kwargs)

    monkeypatch.setattr(store.fs, "cat_file", flaky)
    assert store.get_bytes("k") == b"payload"
    assert len(calls) >= 3


def test_retries_are_bounded(s3_server, monkeypatch: pytest.MonkeyPatch) -> None:
    store = build_artifact_store(
        s3_server.url(s3_server.shared_bucket(), uuid.uuid4().hex),
        retry_policy=FAST,
        transport="fsspec",
        **s3_server.storage_options,
    )
    store.put_bytes(b"payload", "k")
    calls = []

    def always_503(path, *args, **kwargs):
        calls.append(path)
        raise Flaky()

    monkeypatch.setattr(store.fs, "cat_file", always_503)
    with pytest.raises(StoreUnavailableError, match="did not answer within the deadline"):
        store.info("k")
    assert len(calls) == 2


def _native_503() -> Exception:
    """A 503 as obstore reports it."""
    from obstore.exceptions import GenericError

    return GenericError(
        "Generic S3 error: Error performing GET http://127.0.0.1:1/b/k in 1ms - Server returned non-2xx "
        "status code: 503 Service Unavailable: <Error><Code>SlowDown</Code></Error>"
    )


def test_native_transient_errors_are_retried_then_succeed(s3_server, monkeypatch: pytest.MonkeyPatch) -> None:
    import obstore

    store = build_artifact_store(
        s3_server.url(s3_server.shared_bucket(), uuid.uuid4().hex),
        retry_policy=RetryPolicy(attempts=4, base=0.01, cap=0.02),
        **s3_server.storage_options,
    )
    store.put_bytes(b"payload", "k")
    real = obstore.get
    calls = []

    def flaky(st, path, *args, **kwargs):
        calls.append(path)
        if len(calls) <= 2:
            raise _native_503()
        return real(st, path, *args, **kwargs)

    monkeypatch.setattr(obstore, "get", flaky)
    assert store.get_bytes("k") == b"payload"
    assert len(calls) >= 3 and calls[0] == calls[1] == calls[2]  # one read, retried twice


def test_native_retries_are_bounded(s3_server, monkeypatch: pytest.MonkeyPatch) -> None:
    import obstore

    store = build_artifact_store(
        s3_server.url(s3_server.shared_bucket(), uuid.uuid4().hex), retry_policy=FAST, **s3_server.storage_options
    )
    store.put_bytes(b"payload", "k")
    calls = []

    def always_503(st, path, *args, **kwargs):
        calls.append(path)
        raise _native_503()

    monkeypatch.setattr(obstore, "get", always_503)
    with pytest.raises(StoreUnavailableError, match="did not answer within the deadline") as info:
        store.get_bytes("k")
    assert len(calls) == 2 and "503" in str(info.value)


def test_transient_classification() -> None:
    assert is_transient(Flaky())
    assert is_transient(ConnectionResetError())
    assert not is_transient(FileNotFoundError("k"))
    assert not is_transient(PermissionError("denied"))
    assert not is_transient(ValueError("bad argument"))
    refused = ConnectionRefusedError(111, "Connection refused")
    assert is_transient(refused) and not should_retry(refused)  # the driver already retried it


@pytest.mark.parametrize("backend", OBJECT_BACKENDS)
def test_listing_caches_never_go_stale(request: pytest.FixtureRequest, backend: str) -> None:
    """Even with fsspec's listing cache switched on, a store sees its own and others' commits."""
    server, options = _server_and_options(request, backend)
    url = server.url(server.shared_bucket(), uuid.uuid4().hex)
    writer = build_artifact_store(url, use_listings_cache=True, **options)
    reader = build_artifact_store(url, use_listings_cache=True, skip_instance_cache=True, **options)
    assert writer.list_artifacts() == [] and reader.list_artifacts() == []
    writer.put_bytes(b"1", "a/one")
    assert writer.list_artifacts() == ["a/one"] and reader.list_artifacts() == ["a/one"]
    writer.put_bytes(b"2", "a/two")
    assert reader.exists("a/two") and reader.list_artifacts("a/") == ["a/one", "a/two"]
    writer.delete("a/one")
    assert not reader.exists("a/one") and reader.list_artifacts() == ["a/two"]


def test_a_retried_upload_reports_the_file_size_once(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fsspec.callbacks import Callback

    store = build_artifact_store(
        f"memory://retry-progress/{uuid.uuid4().hex}", retry_policy=RetryPolicy(attempts=3, base=0.01, cap=0.02)
    )
    src = tmp_path / "f.bin"
    size = 40 * 1024 * 1024  # several chunks: the failed attempt reports progress before it fails
    src.write_bytes(b"x" * size)
    real_open = store.fs.open
    opened = []

    class FailingFile:
        """Takes some bytes, then the connection drops."""

        def __init__(self, f):
            self._f = f
            self._writes = 0

        def write(self, data):
            self._writes += 1
            if self._writes == 3:
                raise Flaky()
            return self._f.write(data)

        def __getattr__(self, name):
            return getattr(self._f, name)

    def open_once_failing(path, mode="rb", **kwargs):
        f = real_open(path, mode, **kwargs)
        if "w" in mode and not opened:
            opened.append(path)
            return FailingFile(f)
        return f

    monkeypatch.setattr(store.fs, "open", open_once_failing)

    class Total(Callback):
        def __init__(self):
            super().__init__()
            self.total = 0

        def relative_update(self, inc=1):
            self.total += inc

    progress = Total()
    ref = store.put(src, "k", callback=progress)
    assert opened and ref.size_bytes == size
    assert progress.total == size


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_deadlines_come_from_the_argument_else_the_environment(
    s3_server, transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = s3_server.url(s3_server.shared_bucket(), uuid.uuid4().hex)
    monkeypatch.setenv("SCALABLE_DEADLINES", "stall=7, operation=9")
    store = build_artifact_store(url, transport=transport, **s3_server.storage_options)
    assert store.deadlines == Deadlines(request=10, stall=7, operation=9)
    given = build_artifact_store(url, transport=transport, deadlines={"request": 3}, **s3_server.storage_options)
    assert given.deadlines == Deadlines(request=3, stall=7, operation=9)
    monkeypatch.setenv("SCALABLE_DEADLINES", "stall=soon")
    with pytest.raises(UnsupportedURIError, match="SCALABLE_DEADLINES='stall=soon' is not a list of deadlines"):
        build_artifact_store(url, transport=transport, **s3_server.storage_options)


def test_the_fsspec_drivers_try_once_unless_told_otherwise(s3_server, gcs_server, azure_server) -> None:
    """scalable owns the retries: each driver's own are set to one attempt; a user's own setting stays."""
    s3 = build_artifact_store(
        s3_server.url(s3_server.shared_bucket(), "p"), transport="fsspec", **s3_server.storage_options
    )
    assert s3.fs.config_kwargs["retries"]["total_max_attempts"] == 1 and s3.fs.retries == 1
    assert s3.fs.config_kwargs["read_timeout"] == s3.deadlines.stall
    mine = build_artifact_store(
        s3_server.url(s3_server.shared_bucket(), "p"),
        transport="fsspec",
        config_kwargs={"retries": {"max_attempts": 3}},
        **s3_server.storage_options,
    )
    assert mine.fs.config_kwargs["retries"] == {"max_attempts": 3} and mine.fs.retries == 5
    gcs = build_artifact_store(gcs_server.url(gcs_server.shared_bucket(), "p"), **gcs_server.storage_options)
    assert gcs.fs.requests_timeout.sock_read == gcs.deadlines.stall
    az = build_artifact_store(
        azure_server.url(azure_server.shared_bucket(), "p"), transport="fsspec", **azure_server.storage_options
    )
    assert az.fs.service_client._config.retry_policy.total_retries == 0


@pytest.mark.parametrize(("code", "error", "tries"), [(503, StoreUnavailableError, 2), (401, AccessDeniedError, 1)])
def test_gcsfs_requests_are_tried_once_each_by_gcsfs(
    gcs_server, monkeypatch: pytest.MonkeyPatch, code: int, error: type, tries: int
) -> None:
    """gcsfs would retry each of these six times with waits up to 32 s; here scalable's policy decides."""
    import gcsfs
    from gcsfs.retry import HttpError

    calls = []

    async def answers(self, *args, **kwargs):
        calls.append(args[:2])
        raise HttpError({"code": code, "message": "Invalid Credentials" if code == 401 else "Service Unavailable"})

    monkeypatch.setattr(gcsfs.GCSFileSystem._request, "__wrapped__", answers)
    store = build_artifact_store(
        gcs_server.url(gcs_server.shared_bucket(), uuid.uuid4().hex),
        retry_policy=FAST,
        skip_instance_cache=True,
        **gcs_server.storage_options,
    )
    with pytest.raises(error) as info:
        store.exists("k")
    assert tries <= len(calls) <= 2 * tries, calls  # gcsfs's info may ask twice (the bucket, then a listing)
    assert gcs_server.endpoint_url in str(info.value)
