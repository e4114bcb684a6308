"""pytest plugin: real S3, GCS and Azure Blob servers on 127.0.0.1, one of each per session.

Load it from the main conftest with ``pytest_plugins = ["tests.servers.plugin"]`` (or
``-p tests.servers.plugin``). Fixtures, all session-scoped and started on first use only:

* ``s3_server``: :class:`~tests.servers.seaweedfs.SeaweedFS`
* ``gcs_server``: :class:`~tests.servers.fakegcs.FakeGcsServer` (memory backend)
* ``azure_server``: :class:`~tests.servers.azurite.Azurite`

A fixture skips only when the server's binary is not installed and cannot be installed here
(set ``SCALABLE_TEST_SERVERS_REQUIRED=1`` to make that an error too, e.g. in CI). A binary that
is there but does not start is an error, whose message ends with the tail of the server's log.
Servers are stopped by pid when the session ends (finalizer), with an atexit and SIGTERM fallback.
"""

from __future__ import annotations

import os

# Before anything imports gcsfs: its experimental class hangs 60 s per bucket on fake-gcs-server.
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"

from collections.abc import Callable, Iterator

import pytest

from tests.servers.azurite import Azurite
from tests.servers.base import ManagedServer, ServerUnavailable
from tests.servers.fakegcs import FakeGcsServer
from tests.servers.seaweedfs import SeaweedFS

REQUIRED_ENV = "SCALABLE_TEST_SERVERS_REQUIRED"

_started: list[ManagedServer] = []


def _serve(make: Callable[[], ManagedServer]) -> Iterator[ManagedServer]:
    try:
        server = make()
    except ServerUnavailable as exc:
        if os.environ.get(REQUIRED_ENV, "") not in ("", "0"):
            raise
        pytest.skip(str(exc))
    try:
        server.start()
    except Exception:
        # start() has already killed it; its dir stays, so the log named in the error can be read.
        raise
    except BaseException:
        server.close()
        raise
    _started.append(server)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[SeaweedFS]:
    """SeaweedFS S3: ``endpoint_url``, ``access_key``/``secret_key``, ``storage_options`` for s3fs."""
    yield from _serve(SeaweedFS)  # type: ignore[misc]


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[FakeGcsServer]:
    """fake-gcs-server: ``endpoint_url``, ``storage_options`` for gcsfs (token "anon")."""
    yield from _serve(FakeGcsServer)  # type: ignore[misc]


@pytest.fixture(scope="session")
def azure_server() -> Iterator[Azurite]:
    """Azurite blob: ``endpoint_url``, ``connection_string``, ``storage_options`` for adlfs."""
    yield from _serve(Azurite)  # type: ignore[misc]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _started:
        return
    terminalreporter.section("test servers")
    for server in _started:
        starts = ", ".join(f"{seconds:.2f}s" for seconds in server.start_history)
        pids = ", ".join(str(pid) for pid in server.pids)
        terminalreporter.write_line(f"{server.name} at {server.endpoint_url}: started in {starts} (pids {pids})")
