"""The remote tier: entries as blobs in any artifact store, shared by every machine that reads it.

An entry for key ``k`` is the blob ``cache/<k[:2]>/<k>`` of the store at
``SCALABLE_CACHE_REMOTE`` (the store verifies its SHA-256 on every read). With a secret,
entries are signed when written and refused when read unsigned or altered (see
:mod:`scalable.cache.entries`): a refusal is a miss, logged and recorded as an event.

The remote is never allowed to break a call. Any exception from the store (unreachable,
refused credentials, a missing bucket, a driver that is not installed) is logged once
per burst of failures, counted, recorded as a ``remote_error`` event, and answered as a
miss; after a failure the tier rests for ``backoff`` seconds (doubling while failures go
on, up to 10x) so a dead remote costs one timeout, not one per call. An outage ends
when the remote has answered for ``settle`` seconds with no failure: a server that
flaps while it comes back (answers a read, then hangs a write) is one outage, reported
once, and so is a request begun during the outage that fails after it.

Each request runs on a thread of its own and is awaited at most ``timeout`` seconds: a
store's own retries against a dead endpoint can take half a minute (s3fs, botocore and
the store each retry), and a cache must not make a call wait that long. A read that
times out is a miss; a write that times out is left to finish in the background.

Reads go through the machine's local mirror (:mod:`scalable.cache.mirrored`): a hit costs
one ref read when the mirror holds the entry's digest already, and an entry this machine
fetched before is still served, from the mirror, while the remote is down or resting.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from scalable.artifacts.base import ArtifactStore
from scalable.artifacts.mirror import Mirror
from scalable.artifacts.observe import reads_unobserved
from scalable.cache import entries, events
from scalable.cache.mirrored import MirroredEntries
from scalable.errors import ArtifactNotFoundError, IntegrityError

log = logging.getLogger("scalable.cache")

PREFIX = "cache"
T = TypeVar("T")


def entry_key(key: str) -> str:
    """Where the entry of cache key ``key`` lives in the remote store."""
    return f"{PREFIX}/{key[:2]}/{key}"


def _unobserved_get(store: ArtifactStore, key: str) -> bytes:
    """A cache entry's bytes; not reported as a task's input (it is the cache's, not the task's)."""
    with reads_unobserved():
        return store.get_bytes(key)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


class RemoteTier:
    """Entries in ``store``, signed with ``secret`` when one is set.

    ``mirror``: read entries through this local mirror (``True``: the default one, as
    ``store.fetch`` uses; ``False``: read them directly, and serve nothing in an outage).
    """

    def __init__(
        self,
        store: ArtifactStore,
        secret: bytes | None = None,
        backoff: float = 30.0,
        timeout: float | None = 10.0,
        settle: float | None = None,
        mirror: Mirror | bool = True,
    ) -> None:
        self.store = store
        self._mirror_choice = mirror
        self._mirrored_entries: MirroredEntries | None = None
        self.secret = secret
        self.backoff = max(0.0, backoff)
        self.timeout = timeout if timeout is None or timeout > 0 else None
        #: How long the remote must answer without a failure before an outage counts as over
        #: (default: longer than one request may take, so a request hung in it fails first).
        self.settle = max(0.0, settle) if settle is not None else (self.timeout or 10.0) + 2.0
        self._failures = 0
        self._resting_until = 0.0
        #: The reported outage still open (warned, not yet answered for ``settle`` seconds).
        self._reported = False
        #: When the remote first answered again in the open outage (``None``: not yet).
        self._answering_since: float | None = None
        self._failed_in_outage = 0
        #: When the last reported outage ended: a request begun before it that fails late (a
        #: timeout that outlived the outage) belongs to that outage and is not reported again.
        self._recovered_at = float("-inf")
        self._lock = threading.Lock()

    @property
    def uri(self) -> str:
        """The store's URI, without credentials."""
        return str(self.store.uri)

    def resting(self) -> bool:
        """True while the tier rests after a failure (lookups and writes are skipped)."""
        return self._failures > 0 and time.monotonic() < self._resting_until

    def get(self, key: str) -> tuple[str, bytes | None, memoryview | None]:
        """``("hit", entry bytes, payload)``, or ``("miss" | "refused" | "error" | "resting", None, None)``.

        A hit's bytes have passed the store's SHA-256 check and, with a secret, the entry's
        signature.
        """
        if self.resting():
            data = self._offline(key)
            if data is None:
                return "resting", None, None
        else:
            started = time.monotonic()
            try:
                data = self._within_timeout(lambda: self._read(key))
            except ArtifactNotFoundError:
                self._succeeded()
                return "miss", None, None
            except IntegrityError as exc:
                self._succeeded()
                self.refuse(key, f"stored bytes do not match their digest ({exc})")
                return "refused", None, None
            except Exception as exc:
                self._failed("get", exc, started)
                data = self._offline(key)
                if data is None:
                    return "error", None, None
            else:
                self._succeeded()
        try:
            payload = entries.verified_payload(data, key, self.secret)
        except entries.EntryError as exc:
            self.refuse(key, str(exc))
            return "refused", None, None
        return "hit", data, payload

    def _mirrored(self) -> MirroredEntries | None:
        """The entries read through the local mirror, or ``None`` (no mirror, or a store that cannot be mirrored)."""
        if self._mirrored_entries is not None or self._mirror_choice is False:
            return self._mirrored_entries
        if not all(hasattr(self.store, name) for name in ("info", "get", "get_bytes")):
            return None
        if isinstance(self._mirror_choice, Mirror):
            mirror = self._mirror_choice
        else:
            from scalable.artifacts.mirror import default_mirror

            try:
                mirror = default_mirror()
            except Exception as exc:  # a bad mirror setting must not break the cache: read directly
                log.warning("remote cache %s: no local mirror (%s); reading entries directly", self.uri, exc)
                self._mirror_choice = False
                return None
        self._mirrored_entries = MirroredEntries(mirror, self.uri)
        return self._mirrored_entries

    def _read(self, key: str) -> bytes:
        mirrored = self._mirrored()
        if mirrored is None:
            return _unobserved_get(self.store, entry_key(key))
        with reads_unobserved():
            return mirrored.read(self.store, entry_key(key), key)

    def _offline(self, key: str) -> bytes | None:
        """An entry this machine fetched before, from the local mirror, while the remote cannot answer."""
        mirrored = self._mirrored()
        data = mirrored.read_offline(key) if mirrored is not None else None
        if data is not None:
            log.debug("remote cache %s: served %s from the local mirror while the remote is down", self.uri, key)
        return data

    def put(self, key: str, data: bytes, metadata: dict[str, Any] | None = None) -> bool:
        """Store an entry; False if the remote failed or rests (logged, never raised)."""
        if self.resting():
            return False
        started = time.monotonic()
        try:
            self._within_timeout(lambda: self.store.put_bytes(data, entry_key(key), metadata=metadata))
        except Exception as exc:
            self._failed("put", exc, started)
            return False
        self._succeeded()
        return True

    def _within_timeout(self, request: Callable[[], T]) -> T:
        if self.timeout is None:
            return request()
        done = threading.Event()
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["value"] = request()
            except BaseException as exc:
                outcome["error"] = exc
            finally:
                done.set()

        # A daemon thread per request: one stuck on a dead endpoint never delays the exit.
        threading.Thread(target=run, name="scalable-cache-remote", daemon=True).start()
        if not done.wait(self.timeout):
            raise TimeoutError(f"no answer within {self.timeout:g} s (SCALABLE_CACHE_REMOTE_TIMEOUT)")
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]  # type: ignore[no-any-return]

    def refuse(self, key: str, reason: str) -> None:
        """Log and record an entry that will not be used."""
        log.warning("remote cache %s: refused the entry of %s: %s; computing instead", self.uri, key, reason)
        events.emit("refused", remote=self.uri, key=key, reason=reason)

    def _failed(self, operation: str, exc: BaseException, started: float) -> None:
        with self._lock:
            self._failures += 1
            self._answering_since = None
            first = not self._reported and started >= self._recovered_at
            self._reported = self._reported or first
            wait = min(self.backoff * 2 ** (self._failures - 1), self.backoff * 10)
            self._resting_until = time.monotonic() + wait
        error = _describe(exc)
        if first:  # one warning and one event per burst of failures, not one per call or per retry
            log.warning(
                "remote cache %s failed (%s: %s); calls go on with the local tier and by computing, "
                "and the remote is tried again in %.3g s",
                self.uri,
                operation,
                error,
                wait,
            )
            events.emit("remote_error", remote=self.uri, operation=operation, error=error, retry_in=wait)
        else:
            log.debug("remote cache %s failed again (%s: %s); next try in %.3g s", self.uri, operation, error, wait)

    def _succeeded(self) -> None:
        if not (self._failures or self._reported):
            return  # the common case, without the lock
        now = time.monotonic()
        with self._lock:
            self._failed_in_outage += self._failures
            self._failures = 0
            if not self._reported:  # late failures of an outage already over: nothing to report
                self._failed_in_outage = 0
                return
            if self._answering_since is None:
                self._answering_since = now
            if now - self._answering_since < self.settle:
                return
            failures, self._failed_in_outage = self._failed_in_outage, 0
            self._reported, self._answering_since, self._recovered_at = False, None, now
        log.info("remote cache %s answers again after %d failure(s)", self.uri, failures)
        events.emit("remote_ok", remote=self.uri, failures=failures)


__all__ = ["PREFIX", "RemoteTier", "entry_key"]
