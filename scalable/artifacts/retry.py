"""Bounded retries with exponential backoff and full jitter, and the errors worth retrying.

Drivers (botocore, gcsfs, adlfs) retry some failures themselves; this layer retries what
they give up on or do not cover (5xx answers, throttling, reset connections) a bounded
number of times, then lets the error surface for translation into a ``ScalableError``.

The native (obstore) transport turns its driver's retries off, so this is its only retry
layer; it also bounds every operation in time with :class:`Deadlines`: each request has
a timeout, and retries stop once an operation's deadline has passed.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from scalable.errors import UnsupportedURIError

log = logging.getLogger("scalable.artifacts")

T = TypeVar("T")

_TRANSIENT_ERRNOS = {
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.EPIPE,
    errno.ETIMEDOUT,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
}
_TRANSIENT_WORDS = (
    "slowdown",
    "slow down",
    "reduce your request rate",
    "throttl",
    "too many requests",
    "serviceunavailable",
    "service unavailable",
    "internalerror",
    "internal error",
    "bad gateway",
    "gateway timeout",
    "connection reset",
    "connection aborted",
    "server disconnected",
    "could not connect",
    "cannot connect",
    "connection refused",
    "timed out",
    "timeout",
)
_CONNECTION_TYPE_NAMES = (
    "EndpointConnectionError",
    "ConnectionClosedError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ClientConnectorError",
    "ClientOSError",
    "ServerDisconnectedError",
    "ServerTimeoutError",
    "ServiceRequestError",
    "ServiceResponseError",
    "FSTimeoutError",
    "IncompleteReadError",
    "ResponseStreamingError",
    "ClientPayloadError",
)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def is_connection_error(exc: BaseException) -> bool:
    """The service could not be reached (refused, reset, unreachable, timed out)."""
    for e in _chain(exc):
        if isinstance(e, (ConnectionError, TimeoutError, asyncio.TimeoutError)):
            return True
        if isinstance(e, OSError) and e.errno in _TRANSIENT_ERRNOS:
            return True
        if any(cls.__name__ in _CONNECTION_TYPE_NAMES for cls in type(e).__mro__):
            return True
    return False


def http_status(exc: BaseException) -> int | None:
    """The HTTP status a driver attached to ``exc`` (botocore, aiohttp, gcsfs, azure), if any."""
    for e in _chain(exc):
        response = getattr(e, "response", None)
        if isinstance(response, dict):
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if isinstance(status, int):
                return status
        for attr in ("status", "status_code", "code"):
            value = getattr(e, attr, None)
            if isinstance(value, int) and 100 <= value <= 599:
                return value
    return None


#: Failures to connect at all: the drivers (botocore, gcsfs, the Azure SDK) have already retried
#: these with backoff of their own before they surface, so retrying again only multiplies the wait.
_CONNECT_FAILURE_NAMES = (
    "EndpointConnectionError",
    "ClientConnectorError",
    "ServiceRequestError",
    "ConnectTimeoutError",
)


def is_connect_failure(exc: BaseException) -> bool:
    """The service could not be connected to at all (as opposed to a connection lost mid-request)."""
    for e in _chain(exc):
        if isinstance(e, ConnectionRefusedError):
            return True
        if any(cls.__name__ in _CONNECT_FAILURE_NAMES for cls in type(e).__mro__):
            return True
    return False


def should_retry(exc: BaseException) -> bool:
    """Transient, and not a connect failure the driver already retried."""
    return is_transient(exc) and not is_connect_failure(exc)


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: connection trouble, a 5xx answer, or throttling (429, SlowDown)."""
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
        return False
    if is_connection_error(exc):
        return True
    status = http_status(exc)
    if status is not None:
        return status >= 500 or status in (408, 429)
    text = " ".join(str(e).lower() for e in _chain(exc))
    return any(word in text for word in _TRANSIENT_WORDS)


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all; waits grow as ``base * 2**n`` up to ``cap``, fully jittered."""

    attempts: int = 4
    base: float = 0.2
    cap: float = 5.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap, self.base * 2**attempt))


DEFAULT_POLICY = RetryPolicy()

#: The native transport's policy: it is the only retry layer, so it rides out a server that is
#: down for several seconds (waits of at most 2 s, until the operation's deadline).
NATIVE_POLICY = RetryPolicy(attempts=40, base=0.25, cap=2.0)


@dataclass(frozen=True)
class Deadlines:
    """How long an operation of the native transport may take, in seconds.

    ``request``: one lookup or small request (HEAD, LIST, a small PUT, DELETE) gives up after
    this long. ``stall``: one transfer request (a part, a range) gives up when no byte moved for
    this long. ``operation``: retries of a failing operation stop once this long has passed since
    it first failed, so an unreachable or frozen server surfaces as ``StoreUnavailableError``
    within ``operation`` seconds plus at most one ``request`` (or ``stall``) timeout,
    while a server that is back within that time never fails the call.
    """

    request: float = 10.0
    stall: float = 30.0
    operation: float = 30.0

    def __post_init__(self) -> None:
        for name in ("request", "stall", "operation"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"deadline {name!r} must be a positive number of seconds, not {value!r}")


DEFAULT_DEADLINES = Deadlines()

DEADLINES_ENV = "SCALABLE_DEADLINES"


def deadlines_from_env() -> Deadlines:
    """``SCALABLE_DEADLINES`` (``request=5,stall=20,operation=15``; any subset) over the defaults."""
    text = os.environ.get(DEADLINES_ENV, "").strip()
    if not text:
        return DEFAULT_DEADLINES
    values: dict[str, float] = {}
    try:
        for item in filter(None, (part.strip() for part in text.replace(";", ",").split(","))):
            name, sep, value = item.partition("=")
            if not sep or name.strip() not in ("request", "stall", "operation"):
                raise ValueError(item)
            values[name.strip()] = float(value)
        return Deadlines(**{**_as_dict(DEFAULT_DEADLINES), **values})
    except (ValueError, TypeError):
        raise UnsupportedURIError(
            f"{DEADLINES_ENV}={text!r} is not a list of deadlines: write e.g. request=5,stall=20,operation=15 "
            "(seconds, each positive; any of the three)"
        ) from None


def _as_dict(deadlines: Deadlines) -> dict[str, float]:
    return {"request": deadlines.request, "stall": deadlines.stall, "operation": deadlines.operation}


def resolve_deadlines(deadlines: Deadlines | dict[str, float] | None) -> Deadlines:
    """A store's deadlines: as given (a ``Deadlines`` or a dict of some of its fields), else the environment's."""
    if deadlines is None:
        return deadlines_from_env()
    if isinstance(deadlines, Deadlines):
        return deadlines
    if isinstance(deadlines, dict):
        unknown = set(deadlines) - {"request", "stall", "operation"}
        if unknown:
            raise UnsupportedURIError(
                f"deadlines has no {', '.join(sorted(unknown))}: give request, stall and/or operation (seconds)"
            )
        try:
            return Deadlines(**{**_as_dict(deadlines_from_env()), **{k: float(v) for k, v in deadlines.items()}})
        except (ValueError, TypeError) as exc:
            raise UnsupportedURIError(f"deadlines {deadlines!r}: {exc}") from None
    raise UnsupportedURIError(f"deadlines must be a Deadlines or a dict of seconds, not {type(deadlines).__name__}")


def retry_call(
    fn: Callable[[], T],
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
    what: str = "request",
    transient: Callable[[BaseException], bool] = should_retry,
    deadline: float | None = None,
) -> T:
    """Call ``fn`` until it succeeds, a non-transient error occurs, or attempts run out.

    With ``deadline`` (seconds), no retry starts once that long has passed since the start of
    the first attempt that failed, however many attempts are left.
    """
    first_failure: float | None = None
    for attempt in range(policy.attempts):
        started = time.monotonic()
        try:
            return fn()
        except Exception as exc:
            if attempt == policy.attempts - 1 or not transient(exc):
                raise
            wait = policy.delay(attempt)
            first_failure = started if first_failure is None else first_failure
            if deadline is not None and time.monotonic() + wait - first_failure > deadline:
                raise
            log.info("%s failed (%s); retry %d of %d in %.2fs", what, exc, attempt + 1, policy.attempts - 1, wait)
            time.sleep(wait)
    raise AssertionError("unreachable")


async def retry_call_async(
    fn: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
    what: str = "request",
    transient: Callable[[BaseException], bool] = should_retry,
    deadline: float | None = None,
) -> T:
    """:func:`retry_call` for a request awaited on an event loop: the same policy, deadline and log line."""
    first_failure: float | None = None
    for attempt in range(policy.attempts):
        started = time.monotonic()
        try:
            return await fn()
        except Exception as exc:
            if attempt == policy.attempts - 1 or not transient(exc):
                raise
            wait = policy.delay(attempt)
            first_failure = started if first_failure is None else first_failure
            if deadline is not None and time.monotonic() + wait - first_failure > deadline:
                raise
            log.info("%s failed (%s); retry %d of %d in %.2fs", what, exc, attempt + 1, policy.attempts - 1, wait)
            await asyncio.sleep(wait)
    raise AssertionError("unreachable")


__all__ = [
    "DEADLINES_ENV",
    "DEFAULT_DEADLINES",
    "DEFAULT_POLICY",
    "NATIVE_POLICY",
    "Deadlines",
    "RetryPolicy",
    "deadlines_from_env",
    "http_status",
    "is_connect_failure",
    "is_connection_error",
    "is_transient",
    "resolve_deadlines",
    "retry_call",
    "retry_call_async",
    "should_retry",
]
