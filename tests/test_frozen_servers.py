"""Servers that stop answering, on every backend and both transports: every call has a deadline.

A server frozen with SIGSTOP accepts connections (the kernel does) but never answers. Each
call (``put``, ``get_bytes``, ``info``) must fail with ``StoreUnavailableError`` within the
store's documented bound (``Deadlines.operation`` plus one ``stall`` timeout, plus slack for
a loaded machine) instead of hanging on the drivers' retries; once the server resumes, the key
is whole: its old version or its new one, never a mix. A server restarted within seconds
fails no put. Each test runs a server of its own, started and stopped by pid.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from scalable import StoreUnavailableError, build_artifact_store
from scalable.artifacts.retry import Deadlines
from tests.servers.base import ManagedServer, ServerUnavailable
from tests.test_s3_transfers import file_digest

#: backend -> (server name, transport)
BACKENDS = {
    "s3-native": ("s3", "native"),
    "s3-fsspec": ("s3", "fsspec"),
    "gcs-fsspec": ("gcs", "fsspec"),
    "azure-native": ("azure", "native"),
    "azure-fsspec": ("azure", "fsspec"),
}
QUICK = Deadlines(request=2, stall=3, operation=4)
#: What a loaded two-core machine may add to the bound (thread wake-ups, the last backoff wait).
SLACK = 5.0


def _new_server(name: str) -> ManagedServer:
    if name == "s3":
        from tests.servers.seaweedfs import SeaweedFS

        return SeaweedFS()
    if name == "gcs":
        from tests.servers.fakegcs import FakeGcsServer

        return FakeGcsServer(backend="filesystem")  # its data outlives a restart
    from tests.servers.azurite import Azurite

    return Azurite()


@pytest.fixture(params=list(BACKENDS))
def own(request: pytest.FixtureRequest) -> Iterator[tuple[ManagedServer, str]]:
    """A server of this test's own (to freeze or restart) and the transport to reach it with."""
    name, transport = BACKENDS[request.param]
    try:
        server = _new_server(name)
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    try:
        server.start()
        yield server, transport
    finally:
        if server.is_running() and server.pid is not None:
            os.killpg(server.pid, signal.SIGCONT)  # never leave it stopped: close() must be able to end it
        server.close()


def _store(server: ManagedServer, transport: str, prefix: str, **options: Any) -> Any:
    bucket = server.make_bucket("frozen")
    return build_artifact_store(server.url(bucket, prefix), transport=transport, **server.storage_options, **options)


def test_a_frozen_server_fails_each_call_within_its_deadline(own: tuple[ManagedServer, str], tmp_path: Path) -> None:
    server, transport = own
    prefix = uuid.uuid4().hex
    store = _store(server, transport, prefix, deadlines=QUICK)
    before = store.put_bytes(b"old version", "k")
    src = tmp_path / "new.bin"
    src.write_bytes(os.urandom(64 * 1024))
    calls: dict[str, Callable[[], Any]] = {
        "put": lambda: store.put(src, "k"),
        "get_bytes": lambda: store.get_bytes("k"),
        "info": lambda: store.info("k"),
    }
    assert server.pid is not None
    os.killpg(server.pid, signal.SIGSTOP)
    try:
        for what, call in calls.items():
            began = time.monotonic()
            with pytest.raises(StoreUnavailableError, match="did not answer within the deadline") as info:
                call()
            took = time.monotonic() - began
            bound = QUICK.operation + QUICK.stall + SLACK
            assert took <= bound, f"{what} took {took:.1f} s, more than {bound:g} s"
            assert server.endpoint_url in str(info.value)
    finally:
        os.killpg(server.pid, signal.SIGCONT)
    # Resumed: requests queued while it was frozen may still land, but the key is whole.
    fresh = _store(server, transport, prefix)
    ref = fresh.info("k")
    assert ref.digest in (before.digest, file_digest(src))
    expected = b"old version" if ref.digest == before.digest else src.read_bytes()
    assert fresh.get_bytes("k") == expected
    assert fresh.verify("k") == ref
    assert fresh.put(src, "k").digest == file_digest(src)
    assert fresh.get_bytes("k") == src.read_bytes()


def test_a_put_rides_out_a_server_restarted_within_seconds(own: tuple[ManagedServer, str], tmp_path: Path) -> None:
    server, transport = own
    store = _store(server, transport, uuid.uuid4().hex)  # the default deadlines
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(256 * 1024))
    store.put_bytes(b"warm", "warm")  # bucket checked, connections pooled
    server.stop()
    outcome: list[BaseException | None] = []

    def put() -> None:
        try:
            store.put(src, "during-outage.bin")
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    down = time.monotonic()
    worker = threading.Thread(target=put)
    worker.start()
    time.sleep(5)  # the put fails and retries while the server is down
    server.start()
    outage = time.monotonic() - down
    worker.join(60)
    assert not worker.is_alive() and outcome == [None], f"{outcome} after an outage of {outage:.1f} s"
    assert outage <= 10 + SLACK
    assert store.get_bytes("during-outage.bin") == src.read_bytes()
