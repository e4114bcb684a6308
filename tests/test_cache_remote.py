"""The remote tier on a real S3 server (SeaweedFS): shared across machines, degrading when down, signed.

A "machine" here is a local cache directory: switching ``local_dir`` with
:func:`configure_cache` is what a second machine, with its own disk and the same remote,
looks like to the cache.
"""

from __future__ import annotations

import logging
import pickle
import struct
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scalable import build_artifact_store
from scalable.cache import add_listener, cacheable, configure_cache, entries, remove_listener, reset_cache_config
from scalable.cache.config import ENV_VARS as ENV
from scalable.cache.remote import entry_key
from tests.servers.seaweedfs import SeaweedFS


@pytest.fixture(autouse=True)
def isolated_cache(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    reset_cache_config()
    yield
    reset_cache_config()


@pytest.fixture
def remote_uri(s3_server: Any) -> str:
    """A fresh prefix in the session's shared SeaweedFS bucket."""
    return str(s3_server.url(s3_server.shared_bucket(), f"cache-tests/{uuid.uuid4().hex}"))


def machine(tmp_path: Path, name: str, remote: Any, **settings: Any) -> None:
    """Become machine ``name``: its own local cache directory, the shared remote."""
    configure_cache(local_dir=tmp_path / name, remote=remote, **settings)


def counted(runs: list[Any]) -> Any:
    @cacheable
    def simulate(n: int, seed: int = 0) -> dict[str, Any]:
        runs.append((n, seed))
        return {"n": n, "seed": seed, "values": list(range(n))}

    return simulate


def test_a_second_machine_gets_the_first_machines_result_without_running_the_body(
    tmp_path: Path, remote_uri: str, s3_server: Any
) -> None:
    runs: list[Any] = []
    simulate = counted(runs)
    options = s3_server.storage_options

    machine(tmp_path, "one", remote_uri, remote_options=options)
    assert simulate(5) == {"n": 5, "seed": 0, "values": [0, 1, 2, 3, 4]}
    assert runs == [(5, 0)]

    machine(tmp_path, "two", remote_uri, remote_options=options)
    assert simulate(5) == {"n": 5, "seed": 0, "values": [0, 1, 2, 3, 4]}
    assert runs == [(5, 0)]
    assert simulate.cache_info().remote_hits == 1

    # The remote hit filled machine two's local tier: it answers with the remote gone.
    machine(tmp_path, "two", None)
    assert simulate(5)["values"] == [0, 1, 2, 3, 4]
    assert runs == [(5, 0)]
    assert simulate.cache_info().local_hits == 1

    # The entry is a blob at cache/<key[:2]>/<key>, verified by the store.
    store = build_artifact_store(remote_uri, **options)
    key = simulate.cache_key(5)
    assert store.list_artifacts("cache/") == [f"cache/{key[:2]}/{key}"]
    assert store.info(entry_key(key)).metadata["function"] == simulate.qualified_name


def test_recompute_overwrites_the_remote_entry(tmp_path: Path, remote_uri: str, s3_server: Any) -> None:
    counter = {"n": 0}

    def stamp(x: int) -> tuple[int, int]:
        counter["n"] += 1
        return x, counter["n"]

    normal, forced = cacheable(stamp), cacheable(recompute=True)(stamp)
    machine(tmp_path, "one", remote_uri, remote_options=s3_server.storage_options)
    assert normal(1) == (1, 1)
    assert forced(1) == (1, 2)
    machine(tmp_path, "two", remote_uri, remote_options=s3_server.storage_options)
    assert normal(1) == (1, 2)
    assert counter["n"] == 2


def test_remote_only_tier(tmp_path: Path, remote_uri: str, s3_server: Any) -> None:
    runs: list[int] = []

    @cacheable(tiers="remote")
    def double(x: int) -> int:
        runs.append(x)
        return 2 * x

    machine(tmp_path, "one", remote_uri, remote_options=s3_server.storage_options)
    assert double(4) == double(4) == 8
    assert runs == [4]
    info = double.cache_info()
    assert (info.remote_hits, info.local_hits, info.local_misses) == (1, 0, 0)
    assert not (tmp_path / "one" / "values").exists()


def test_calls_stay_correct_while_the_remote_server_is_stopped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[dict[str, Any]] = []
    runs: list[Any] = []
    simulate = counted(runs)
    server = SeaweedFS()  # a private server: the session's is shared with other tests
    try:
        server.start()
        remote = server.url(server.new_bucket(), "cache")
        settings = {"remote_options": server.storage_options, "remote_timeout": 1.5, "remote_backoff": 0.2}
        machine(tmp_path, "one", remote, **settings)
        assert simulate(3)["values"] == [0, 1, 2]  # computed, written to both tiers

        server.stop()
        add_listener(events.append)
        with caplog.at_level(logging.WARNING, logger="scalable.cache"):
            assert simulate(3)["values"] == [0, 1, 2]  # a local hit: the remote is not needed
            assert simulate(4)["values"] == [0, 1, 2, 3]  # computed; the remote lookup fails
            assert simulate(4)["values"] == [0, 1, 2, 3]  # then a local hit
            machine(tmp_path, "two", remote, **settings)  # a machine with nothing local
            began = time.monotonic()
            assert simulate(3)["values"] == [0, 1, 2]  # computed: correct without the remote
            assert time.monotonic() - began < 10
        assert runs == [(3, 0), (4, 0), (3, 0)]
        assert "remote cache" in caplog.text and "failed" in caplog.text
        assert simulate.cache_info().remote_errors >= 2
        errors = [e for e in events if e["event"] == "remote_error"]
        assert errors and all(e["remote"].startswith("s3://") for e in errors)
        assert not any(server.secret_key in str(e) for e in events)

        server.start()
        store = build_artifact_store(remote, **server.storage_options)
        deadline = time.monotonic() + 30
        while True:  # until the restarted server serves reads again (and past the backoff)
            try:
                store.get_bytes(entry_key(simulate.cache_key(3)))
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        machine(tmp_path, "three", remote, **settings)
        assert simulate(3)["values"] == [0, 1, 2]  # written before the stop: a remote hit
        assert runs == [(3, 0), (4, 0), (3, 0)]
        assert simulate.cache_info().remote_hits == 1
    finally:
        remove_listener(events.append)
        reset_cache_config()
        server.close()


class Exploit:
    """Unpickling this creates a file: what a hostile entry in a shared bucket could do instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (Path.touch, (self.marker,))


def test_with_a_secret_tampered_and_unsigned_remote_entries_are_refused_and_recomputed(
    tmp_path: Path, remote_uri: str, s3_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    runs: list[Any] = []
    simulate = counted(runs)
    options = s3_server.storage_options
    store = build_artifact_store(remote_uri, **options)
    key = simulate.cache_key(6)
    secret = b"team-secret"

    machine(tmp_path, "one", remote_uri, remote_options=options, secret=secret)
    assert simulate(6)["values"] == [0, 1, 2, 3, 4, 5]
    signed = store.get_bytes(entry_key(key))
    assert signed[4] & entries.FLAG_SIGNED

    # A signed entry verifies on another machine with the same secret.
    machine(tmp_path, "two", remote_uri, remote_options=options, secret=secret)
    assert simulate(6)["values"] == [0, 1, 2, 3, 4, 5]
    assert runs == [(6, 0)]

    marker = tmp_path / "exploited"
    forged_payload = pickle.dumps({"n": 6, "seed": 0, "values": ["forged"]}, protocol=5)
    original_mac = signed[entries.HEADER_SIZE : entries.HEADER_SIZE + entries.MAC_SIZE]
    forgeries = {
        # A new payload with a correct CRC, under the original signature.
        "altered": struct.pack(">4sBI", entries.MAGIC, entries.FLAG_SIGNED, zlib.crc32(forged_payload))
        + original_mac
        + forged_payload,
        "signed with another secret": entries.pack(pickle.dumps("forged", protocol=5), key, b"other-secret"),
        "unsigned": entries.pack(pickle.dumps(Exploit(marker), protocol=5), key, None),
    }
    for n, (what, forged) in enumerate(forgeries.items(), start=3):
        store.put_bytes(forged, entry_key(key))  # someone with write access to the bucket
        machine(tmp_path, f"machine-{n}", remote_uri, remote_options=options, secret=secret)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="scalable.cache"):
            assert simulate(6)["values"] == [0, 1, 2, 3, 4, 5], what
        assert "refused" in caplog.text, what
        assert len(runs) == n - 1, what  # recomputed
        assert not marker.exists()
        # The recompute wrote a valid signed entry back.
        assert entries.verified_payload(store.get_bytes(entry_key(key)), key, secret)

    # Without a secret, remote entries are trusted as they are (docs/cache.md says why to set one).
    store.put_bytes(forgeries["unsigned"], entry_key(key))
    machine(tmp_path, "trusting", remote_uri, remote_options=options, secret=None)
    assert simulate(6) is None  # what Path.touch returned: the entry's code ran
    assert marker.exists()


def test_a_request_that_outlives_a_reported_outage_is_not_reported_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A put begun during an outage that fails after the remote answered again is part of that outage.

    Found by the reliability suite: a put hung through a server restart and timed out after
    recovery, and the one outage was warned about twice.
    """
    import threading

    from scalable.cache.remote import RemoteTier

    store = build_artifact_store(tmp_path / "remote")
    down = threading.Event()
    release = threading.Event()

    class Flaky:  # the real store, made unreachable on demand; one put hangs until released
        uri = store.uri

        def get_bytes(self, key: str) -> bytes:
            if down.is_set():
                raise ConnectionError("endpoint down")
            return store.get_bytes(key)

        def put_bytes(self, data: bytes, key: str, metadata: Any = None) -> Any:
            release.wait(10)
            raise ConnectionError("reset while the server restarted")

    tier = RemoteTier(Flaky(), backoff=0.0, timeout=None, settle=0.0)  # type: ignore[arg-type]
    hung = threading.Thread(target=tier.put, args=("k" * 64, b"entry"))
    with caplog.at_level(logging.INFO, logger="scalable.cache"):
        hung.start()
        down.set()
        assert tier.get("a" * 64)[0] == "error"  # the outage: warned once
        down.clear()
        assert tier.get("b" * 64)[0] == "miss"  # answers again
        release.set()
        hung.join(10)  # the old put fails now: same outage, no second warning
        assert tier.get("c" * 64)[0] == "miss"
        down.set()
        assert tier.get("d" * 64)[0] == "error"  # a new outage is reported
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    recoveries = [r.getMessage() for r in caplog.records if "answers again" in r.getMessage()]
    assert len(warnings) == 2 and "endpoint down" in warnings[0] and "endpoint down" in warnings[1]
    assert len(recoveries) == 1


def test_a_remote_that_flaps_while_it_comes_back_is_one_outage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The outage ends only after the remote answered for ``settle`` seconds without a failure.

    Found by the reliability suite: a restarted SeaweedFS answered a read, then hung a write
    for the whole timeout, and the one restart was warned about twice.
    """
    from scalable.cache.remote import RemoteTier

    store = build_artifact_store(tmp_path / "remote")
    down = [False]

    class Flapping:
        uri = store.uri

        def get_bytes(self, key: str) -> bytes:
            if down[0]:
                raise ConnectionError("endpoint down")
            return store.get_bytes(key)

    tier = RemoteTier(Flapping(), backoff=0.0, timeout=None, settle=0.3)  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="scalable.cache"):
        for state in (True, False, True, False):  # down, answers, down again at once, answers
            down[0] = state
            assert tier.get("a" * 64)[0] == ("error" if state else "miss")
        time.sleep(0.35)
        assert tier.get("b" * 64)[0] == "miss"  # answered for settle seconds: the outage is over
        assert tier.get("c" * 64)[0] == "miss"
        down[0] = True
        assert tier.get("d" * 64)[0] == "error"  # a new outage
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    recoveries = [r.getMessage() for r in caplog.records if "answers again" in r.getMessage()]
    assert len(warnings) == 2, warnings
    assert recoveries == [f"remote cache {store.uri} answers again after 2 failure(s)"]
