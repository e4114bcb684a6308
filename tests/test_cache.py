"""``@cacheable`` on one machine: hits and misses, the wrapper's surface, bad input, eviction, races.

Remote-tier behaviour (two machines, a stopped server, tampered entries) is in
``test_cache_remote.py``; keys and their golden vectors are in ``test_cache_keys.py``.
"""

from __future__ import annotations

import inspect
import logging
import multiprocessing
import os
import pickle
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scalable.cache import (
    CacheDirectoryError,
    CallInfo,
    UncacheableResultWarning,
    add_listener,
    cacheable,
    configure_cache,
    remove_listener,
    reset_cache_config,
)
from scalable.cache.config import ENV_VARS as ENV


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test starts with no cache variables and its own local cache directory."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    reset_cache_config()
    configure_cache(local_dir=tmp_path / "cache")
    yield tmp_path / "cache"
    reset_cache_config()


def counted(runs: list[Any]) -> Any:
    """A fresh cached function (its own counters) that records each run of its body in ``runs``."""

    @cacheable
    def add(x: int, y: int = 2) -> dict[str, int]:
        runs.append((x, y))
        return {"x": x, "y": y, "sum": x + y}

    return add


# --------------------------------------------------------------------------- hits, misses, the wrapper


def test_second_call_is_a_hit_and_does_not_run_the_body() -> None:
    runs: list[Any] = []
    add = counted(runs)
    assert add(1) == {"x": 1, "y": 2, "sum": 3}
    assert add(1) == {"x": 1, "y": 2, "sum": 3}
    assert add(1, 2) == add(x=1, y=2) == add(1, y=2)
    assert runs == [(1, 2)]
    assert add(2) == {"x": 2, "y": 2, "sum": 4}
    assert runs == [(1, 2), (2, 2)]
    info = add.cache_info()
    assert (info.hits, info.misses, info.local_hits, info.local_misses) == (4, 2, 4, 2)
    assert info.remote_hits == info.remote_misses == info.remote_errors == 0


def test_none_is_a_value_like_any_other() -> None:
    runs: list[int] = []

    @cacheable
    def nothing(x: int) -> None:
        runs.append(x)

    assert nothing(1) is None
    assert nothing(1) is None
    assert runs == [1]


def test_exceptions_propagate_and_are_not_cached() -> None:
    runs: list[int] = []

    @cacheable
    def fails(x: int) -> int:
        runs.append(x)
        raise ValueError("boom")

    for _ in range(2):
        with pytest.raises(ValueError, match="boom"):
            fails(1)
    assert runs == [1, 1]


def documented(a: int, b: str = "x", *, c: float = 1.0) -> str:
    """Join the arguments."""
    return f"{a}{b}{c}"


def test_the_wrapper_keeps_name_docstring_and_signature() -> None:
    cached = cacheable(documented)
    assert cached.__name__ == "documented"
    assert cached.__qualname__ == "documented"
    assert cached.__doc__ == "Join the arguments."
    assert str(inspect.signature(cached)) == str(inspect.signature(documented))
    assert cached.uncached is documented
    assert cached(1) == "1x1.0"


@cacheable(version="1")
def module_level_square(x: int) -> int:
    """Importable, so pickled by reference."""
    return x * x


def test_pickles_by_reference_when_importable() -> None:
    assert pickle.loads(pickle.dumps(module_level_square)) is module_level_square
    assert pickle.loads(pickle.dumps(module_level_square.uncached)) is module_level_square.uncached


def test_pickles_by_value_with_cloudpickle_when_not_importable() -> None:
    cloudpickle = pytest.importorskip("cloudpickle")
    runs: list[Any] = []
    add = counted(runs)  # defined in a function: not importable, as in a notebook
    assert add(5) == {"x": 5, "y": 2, "sum": 7}
    clone = cloudpickle.loads(cloudpickle.dumps(add))
    assert clone is not add
    assert clone.cache_key(5) == add.cache_key(5)
    assert clone(5) == {"x": 5, "y": 2, "sum": 7}
    assert clone.cache_info().local_hits == 1 and clone.cache_info().misses == 0


class Model:
    def __init__(self, scale: int) -> None:
        self.scale = scale
        self.runs = 0

    @cacheable(ignore=["self"])
    def predict(self, x: int) -> int:
        self.runs += 1
        return x * 10


def test_works_as_a_method() -> None:
    first, second = Model(1), Model(2)
    assert first.predict(3) == 30
    assert second.predict(3) == 30  # self is ignored: same key
    assert (first.runs, second.runs) == (1, 0)


def test_cache_clear_drops_the_functions_local_entries_and_counters() -> None:
    runs: list[Any] = []
    add = counted(runs)
    add(1)
    add(2)
    assert add.cache_clear() == 2
    assert add.cache_info().hits == add.cache_info().misses == 0
    add(1)
    assert runs == [(1, 2), (2, 2), (1, 2)]


def test_call_with_info_says_where_the_result_came_from() -> None:
    add = counted([])
    value, info = add.call_with_info(4)
    assert value["sum"] == 6
    assert isinstance(info, CallInfo) and info.outcome == "computed" and not info.hit
    assert info.key == add.cache_key(4) and info.function.endswith("counted.<locals>.add")
    _, info = add.call_with_info(4)
    assert info.outcome == "local" and info.hit and info.seconds >= 0


def test_listeners_receive_one_event_per_call() -> None:
    seen: list[dict[str, Any]] = []
    add_listener(seen.append)
    try:
        add = counted([])
        add(1)
        add(1)
    finally:
        remove_listener(seen.append)
    add(1)  # no longer listening
    calls = [e for e in seen if e["event"] == "call"]
    assert [e["outcome"] for e in calls] == ["computed", "local"]
    assert all(e["key"] == add.cache_key(1) and "time" in e for e in calls)


def test_recompute_runs_the_body_every_time_and_overwrites_the_entry() -> None:
    counter = {"n": 0}

    def stamp(x: int) -> tuple[int, int]:
        counter["n"] += 1
        return x, counter["n"]

    normal = cacheable(stamp)
    forced = cacheable(recompute=True)(stamp)
    assert normal.cache_key(1) == forced.cache_key(1)
    assert normal(1) == (1, 1)
    assert forced(1) == (1, 2)
    assert forced(1) == (1, 3)
    assert normal(1) == (1, 3)  # the normal function reads what recompute wrote
    assert counter["n"] == 3


def test_path_arguments_count_by_content(tmp_path: Path) -> None:
    runs: list[str] = []

    @cacheable
    def size(path: Path) -> int:
        runs.append(path.name)
        return len(path.read_bytes())

    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"12345")
    b.write_bytes(b"12345")
    assert size(a) == size(b) == 5
    assert runs == ["a.bin"]
    b.write_bytes(b"123")
    assert size(b) == 3
    assert runs == ["a.bin", "b.bin"]


# --------------------------------------------------------------------------- bad input


class Unpicklable:
    def __reduce__(self) -> Any:
        raise TypeError("cannot pickle an Unpicklable")


def test_a_result_that_cannot_be_pickled_is_returned_with_one_warning_and_not_cached(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs: list[int] = []

    @cacheable
    def make(x: int) -> Unpicklable:
        runs.append(x)
        return Unpicklable()

    with pytest.warns(UncacheableResultWarning, match="cannot be pickled"):
        assert isinstance(make(1), Unpicklable)
    with caplog.at_level(logging.WARNING, logger="scalable.cache"), warnings.catch_warnings():
        warnings.simplefilter("error")  # a second warning would fail here
        assert isinstance(make(1), Unpicklable)
    assert runs == [1, 1]
    assert make.cache_info().misses == 2


def test_an_unwritable_cache_directory_fails_at_first_use_naming_path_and_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    reset_cache_config()
    monkeypatch.setenv("SCALABLE_CACHE_DIR", str(blocker / "cache"))

    @cacheable
    def f(x: int) -> int:
        return x

    with pytest.raises(CacheDirectoryError) as caught:
        f(1)
    message = str(caught.value)
    assert str(blocker / "cache") in message
    assert "SCALABLE_CACHE_DIR" in message
    assert isinstance(caught.value, PermissionError)


def test_a_corrupted_local_entry_is_a_miss_and_a_recompute(caplog: pytest.LogCaptureFixture) -> None:
    runs: list[Any] = []
    add = counted(runs)
    add(1)
    local = add._runtime.local
    key = add.cache_key(1)
    local.cache.set(key, b"SCE1 this is not an entry")
    with caplog.at_level(logging.WARNING, logger="scalable.cache"):
        assert add(1) == {"x": 1, "y": 2, "sum": 3}
    assert runs == [(1, 2), (1, 2)]
    assert "unreadable" in caplog.text
    assert add(1) == {"x": 1, "y": 2, "sum": 3}  # the recompute repaired the entry
    assert runs == [(1, 2), (1, 2)]


def test_a_damaged_large_entry_on_disk_is_a_miss(isolated_cache: Path) -> None:
    runs: list[int] = []

    @cacheable
    def big(x: int) -> bytes:
        runs.append(x)
        return bytes([x]) * 200_000  # stored by diskcache as a file of its own

    assert big(7) == bytes([7]) * 200_000
    files = [p for p in (isolated_cache / "values").rglob("*.val")]
    assert len(files) == 1
    data = bytearray(files[0].read_bytes())
    data[-10] ^= 0xFF  # one flipped byte in the pickled bytes
    files[0].write_bytes(bytes(data))
    assert big(7) == bytes([7]) * 200_000
    assert runs == [7, 7]


def test_the_local_tier_evicts_the_least_recently_used_entry_past_its_size_limit(isolated_cache: Path) -> None:
    configure_cache(size_limit=1024 * 1024)
    runs: list[str] = []

    @cacheable
    def blob(name: str) -> bytes:
        runs.append(name)
        return name.encode() * (256 * 1024 // len(name))

    for name in ("aaaa", "bbbb", "cccc"):
        blob(name)
    blob("aaaa")  # a hit: aaaa is now more recently used than bbbb
    blob("dddd")  # past 1 MiB: the least recently used (bbbb) goes
    assert runs == ["aaaa", "bbbb", "cccc", "dddd"]
    for name in ("aaaa", "cccc", "dddd"):
        blob(name)
    assert runs == ["aaaa", "bbbb", "cccc", "dddd"]
    blob("bbbb")
    assert runs[-1] == "bbbb"
    assert blob._runtime.local.volume() <= 1024 * 1024


def test_environment_variables_are_read_at_first_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reset_cache_config()

    @cacheable
    def f(x: int) -> int:
        return x + 1

    monkeypatch.setenv("SCALABLE_CACHE_DIR", str(tmp_path / "from-env"))
    monkeypatch.setenv("SCALABLE_CACHE_SIZE_LIMIT", "3MiB")
    monkeypatch.setenv("SCALABLE_CACHE_REMOTE", str(tmp_path / "remote-store"))
    assert f(1) == 2
    settings = f._runtime.settings
    assert settings.local_dir == tmp_path / "from-env"
    assert settings.size_limit == 3 * 1024 * 1024
    assert (tmp_path / "from-env" / "values").is_dir()
    # A local directory is an artifact store URI too: the entry is there, under cache/<key[:2]>/<key>.
    from scalable import build_artifact_store

    key = f.cache_key(1)
    assert build_artifact_store(tmp_path / "remote-store").exists(f"cache/{key[:2]}/{key}")
    # configure_cache overrides the variables; as_defaults ranks below them.
    configure_cache(local_dir=tmp_path / "explicit")
    f(1)
    assert f._runtime.settings.local_dir == tmp_path / "explicit"
    reset_cache_config()
    configure_cache(local_dir=tmp_path / "manifest", as_defaults=True)
    f(1)
    assert f._runtime.settings.local_dir == tmp_path / "from-env"


def test_bad_settings_say_which_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    reset_cache_config()
    monkeypatch.setenv("SCALABLE_CACHE_SIZE_LIMIT", "lots")

    @cacheable
    def f(x: int) -> int:
        return x

    with pytest.raises(ValueError, match="SCALABLE_CACHE_SIZE_LIMIT"):
        f(1)


def test_tiers_must_be_local_or_remote() -> None:
    with pytest.raises(ValueError, match="tiers"):
        cacheable(tiers="disk")(documented)
    with pytest.raises(TypeError, match="async"):

        @cacheable
        async def coro() -> None: ...


# --------------------------------------------------------------------------- concurrency


def test_threads_racing_on_one_key_compute_once() -> None:
    runs: list[int] = []
    barrier = threading.Barrier(8)

    @cacheable
    def slow(x: int) -> int:
        runs.append(x)
        time.sleep(0.3)
        return x * 2

    results: list[int] = []

    def call() -> None:
        barrier.wait()
        results.append(slow(21))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [42] * 8
    assert runs == [21]


def test_a_waiter_computes_anyway_after_the_lock_timeout(caplog: pytest.LogCaptureFixture) -> None:
    runs: list[int] = []
    started = threading.Event()

    def slow(x: int) -> int:
        runs.append(x)
        started.set()
        time.sleep(1.0)
        return x

    patient = cacheable(slow)
    hasty = cacheable(lock_timeout=0.1)(slow)
    holder = threading.Thread(target=patient, args=(5,))
    holder.start()
    started.wait(5)
    with caplog.at_level(logging.WARNING, logger="scalable.cache"):
        assert hasty(5) == 5
    holder.join()
    assert runs == [5, 5]
    assert "waited" in caplog.text


RACE_RUNS_FILE = "runs.log"


@cacheable(ignore=["runs_file"])
def race_body(x: int, runs_file: str) -> int:
    """Sleeps so that the racers overlap; appends one line per run of the body."""
    with open(runs_file, "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(0.5)
    return x * x


def race_worker(cache_dir: str, runs_file: str, barrier: Any, results: Any) -> None:
    configure_cache(local_dir=cache_dir)
    barrier.wait()
    results.put(race_body(12, runs_file))


def test_four_processes_racing_on_one_key_run_the_body_once(isolated_cache: Path, tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    results = ctx.Queue()
    runs_file = tmp_path / RACE_RUNS_FILE
    workers = [
        ctx.Process(target=race_worker, args=(str(isolated_cache), str(runs_file), barrier, results)) for _ in range(4)
    ]
    for w in workers:
        w.start()
    values = [results.get(timeout=60) for _ in workers]
    for w in workers:
        w.join(30)
        assert w.exitcode == 0
    assert values == [144] * 4
    assert len(runs_file.read_text().splitlines()) == 1
    # And this process now hits what they computed.
    assert race_body(12, str(runs_file)) == 144
    assert len(runs_file.read_text().splitlines()) == 1


def fork_worker(runs_file: str, results: Any) -> None:
    results.put((race_body(3, runs_file), race_body(13, runs_file)))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
def test_a_forked_child_shares_the_parents_cache(tmp_path: Path) -> None:
    runs_file = str(tmp_path / RACE_RUNS_FILE)
    assert race_body(3, runs_file) == 9  # the parent opens its tiers before the fork
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    child = ctx.Process(target=fork_worker, args=(runs_file, results))
    child.start()
    assert results.get(timeout=60) == (9, 169)  # 3: a hit on the parent's entry; 13: computed
    child.join(30)
    assert child.exitcode == 0
    assert race_body(13, runs_file) == 169  # the child's entry, read by the parent
    assert len(Path(runs_file).read_text().splitlines()) == 2
