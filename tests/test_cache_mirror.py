"""The remote cache tier reads through the local mirror: what a machine fetched once is served with the remote down.

A "machine" is a local cache directory (as in ``test_cache_remote.py``); the local mirror is
the one folder all of them share on this computer, as it is on a real one.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scalable import build_artifact_store
from scalable.artifacts.mirror import Mirror
from scalable.cache import cacheable, configure_cache, reset_cache_config
from scalable.cache.config import ENV_VARS as ENV
from scalable.cache.remote import RemoteTier, entry_key
from tests.servers.seaweedfs import SeaweedFS


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SCALABLE_MIRROR_DIR", str(tmp_path / "mirror"))
    reset_cache_config()
    yield tmp_path / "mirror"
    reset_cache_config()


@pytest.fixture
def server() -> Iterator[SeaweedFS]:
    """A private SeaweedFS: these tests stop it."""
    s = SeaweedFS()
    try:
        s.start()
        yield s
    finally:
        s.close()


def counted(runs: list[Any]) -> Any:
    @cacheable
    def simulate(n: int) -> list[int]:
        runs.append(n)
        return list(range(n))

    return simulate


def machine(tmp_path: Path, name: str, remote: str, server: SeaweedFS, **settings: Any) -> None:
    configure_cache(
        local_dir=tmp_path / name,
        remote=remote,
        remote_options=server.storage_options,
        remote_timeout=1.5,
        remote_backoff=0.2,
        **settings,
    )


def test_an_entry_fetched_before_is_served_from_the_mirror_with_the_remote_stopped(
    tmp_path: Path, server: SeaweedFS, isolated: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runs: list[int] = []
    simulate = counted(runs)
    remote = server.url(server.new_bucket(), "cache")
    machine(tmp_path, "one", remote, server)
    assert simulate(4) == [0, 1, 2, 3]  # computed, written to the remote
    machine(tmp_path, "two", remote, server)
    assert simulate(4) == [0, 1, 2, 3]  # a remote hit, read through the mirror
    assert runs == [4]
    mirrored = {e.key for e in Mirror(isolated).entries()}
    assert mirrored == {entry_key(simulate.cache_key(4))}

    server.stop()
    machine(tmp_path, "three", remote, server)  # nothing local on this "machine"
    with caplog.at_level(logging.WARNING, logger="scalable.cache"):
        began = time.monotonic()
        assert simulate(4) == [0, 1, 2, 3]  # the remote is down: served from the mirror
        assert simulate(5) == [0, 1, 2, 3, 4]  # never fetched here: computed, without raising
        assert time.monotonic() - began < 10
    assert runs == [4, 5]
    info = simulate.cache_info()
    assert info.remote_hits == 2 and info.remote_errors >= 1  # machine two's hit, then the mirror's
    assert "remote cache" in caplog.text and "failed" in caplog.text

    machine(tmp_path, "four", remote, server)  # while the tier rests after the failure: still served
    assert simulate(4) == [0, 1, 2, 3]
    assert runs == [4, 5]


def test_a_second_machine_reading_a_mirrored_entry_downloads_nothing(tmp_path: Path, server: SeaweedFS) -> None:
    runs: list[int] = []
    simulate = counted(runs)
    remote = server.url(server.new_bucket(), "cache")
    machine(tmp_path, "one", remote, server)
    simulate(3)
    machine(tmp_path, "two", remote, server)
    simulate(3)
    store = build_artifact_store(remote, **server.storage_options)
    calls: list[str] = []

    class Counting:  # the real store, counting what the tier asks of it
        uri = store.uri

        def info(self, key: str) -> Any:
            calls.append("info")
            return store.info(key)

        def get(self, key: str, path: Any, **kw: Any) -> Any:
            calls.append("get")
            return store.get(key, path, **kw)

        def get_bytes(self, key: str) -> bytes:
            calls.append("get_bytes")
            return store.get_bytes(key)

    tier = RemoteTier(Counting(), timeout=None)  # type: ignore[arg-type]
    status, data, _ = tier.get(simulate.cache_key(3))
    assert status == "hit" and data == store.get_bytes(entry_key(simulate.cache_key(3)))
    assert calls == ["info"]  # one ref read; the bytes came from the mirror


def test_with_a_secret_a_mirrored_entry_moved_to_another_key_is_refused(
    tmp_path: Path, server: SeaweedFS, isolated: Path
) -> None:
    runs: list[int] = []
    simulate = counted(runs)
    remote = server.url(server.new_bucket(), "cache")
    settings = {"secret": "s3cr3t-" + uuid.uuid4().hex}
    machine(tmp_path, "one", remote, server, **settings)
    simulate(2), simulate(3)
    machine(tmp_path, "two", remote, server, **settings)
    simulate(2), simulate(3)  # both fetched through the mirror
    assert runs == [2, 3]
    names = sorted((isolated / "cache-names").rglob(simulate.cache_key(2)))
    assert len(names) == 1
    names[0].write_text(sorted((isolated / "cache-names").rglob(simulate.cache_key(3)))[0].read_text())
    server.stop()
    machine(tmp_path, "three", remote, server, **settings)
    assert simulate(2) == [0, 1]  # the entry of 3 is signed for its own key: refused, computed
    assert simulate(3) == [0, 1, 2]  # its own key: served from the mirror
    assert runs == [2, 3, 2]
