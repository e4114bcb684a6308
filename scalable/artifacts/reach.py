"""A quick reachability probe of an object store's endpoint, before its driver's retries start.

Drivers retry a refused or unreachable connection with backoff of their own (botocore about
8 s, gcsfs six times with waits up to 32 s); for a service that is down or an endpoint that
is mistyped, that is a long wait for one error line. :func:`probe_store` opens one TCP
connection to the endpoint first, bounded by ``SCALABLE_CONNECT_TIMEOUT`` seconds (default
:data:`DEFAULT_CONNECT_TIMEOUT`; ``off`` skips the probe), and raises
``StoreUnavailableError`` at once when it fails. The command line probes every object store
it opens.
"""

from __future__ import annotations

import os
import socket
from typing import Any
from urllib.parse import urlsplit

from scalable.artifacts.uris import redact_uri
from scalable.errors import StoreUnavailableError

CONNECT_TIMEOUT_ENV = "SCALABLE_CONNECT_TIMEOUT"
#: Seconds one connection attempt may take before the endpoint counts as unreachable.
DEFAULT_CONNECT_TIMEOUT = 5.0

_DEFAULT_HOSTS = {
    "s3": "https://s3.amazonaws.com",
    "s3a": "https://s3.amazonaws.com",
    "gs": "https://storage.googleapis.com",
    "gcs": "https://storage.googleapis.com",
}
_ENDPOINT_ENVS = {
    "s3": ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
    "s3a": ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
    "gs": ("STORAGE_EMULATOR_HOST",),
    "gcs": ("STORAGE_EMULATOR_HOST",),
}


def connect_timeout() -> float | None:
    """``SCALABLE_CONNECT_TIMEOUT`` in seconds (``None``: probing is off)."""
    value = os.environ.get(CONNECT_TIMEOUT_ENV, "").strip().lower()
    if not value:
        return DEFAULT_CONNECT_TIMEOUT
    if value in ("off", "0", "false", "no"):
        return None
    try:
        return max(0.1, float(value))
    except ValueError:
        raise StoreUnavailableError(
            f"{CONNECT_TIMEOUT_ENV}={value!r} is not a number of seconds: write e.g. 5, or off"
        ) from None


def endpoint_of(store: Any) -> str | None:
    """The URL an fsspec store's requests go to, when it can be told (``None`` for memory:// and the like)."""
    protocol = getattr(store, "protocol", None)
    if protocol in ("http", "https"):
        root = str(getattr(store, "root_path", ""))
        return root if "://" in root else f"{protocol}://{root}"
    named = getattr(store, "endpoint", None)
    if isinstance(named, str) and named.startswith(("http://", "https://")):
        return named
    for env in _ENDPOINT_ENVS.get(protocol or "", ()):
        value = os.environ.get(env, "").strip()
        if value:
            return value if "://" in value else f"http://{value}"
    return _DEFAULT_HOSTS.get(protocol or "")


def probe(url: str, timeout: float) -> None:
    """Open and close one TCP connection to ``url``'s host and port; ``StoreUnavailableError`` if that fails."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__)
        raise StoreUnavailableError(
            f"cannot reach {redact_uri(url)} ({reason}, within {timeout:g} s): check that the service is running "
            f"and the endpoint is right, then retry; {CONNECT_TIMEOUT_ENV} sets this bound (off skips the check)"
        ) from None


def probe_store(store: Any) -> None:
    """Probe the endpoint of ``store`` (an object store) unless probing is off or its endpoint is unknown."""
    timeout = connect_timeout()
    url = endpoint_of(store)
    if timeout is not None and url:
        probe(url, timeout)


__all__ = ["CONNECT_TIMEOUT_ENV", "DEFAULT_CONNECT_TIMEOUT", "connect_timeout", "endpoint_of", "probe", "probe_store"]
