"""The fsspec drivers of object stores made to try each request once, with timeouts from ``Deadlines``.

Left alone, botocore (5 tries of up to 15 s), s3fs (5), gcsfs (6, waits up to 32 s) and the
Azure SDK (10, waits from 15 s) each retry, and scalable's own retries multiply theirs: a
frozen server held one call for many minutes. So for the stores it builds,
:class:`~scalable.artifacts.fsspec_store.FsspecArtifactStore` turns the drivers' retries to one
attempt and gives their HTTP clients the store's timeouts; :mod:`scalable.artifacts.retry`
then owns the retries, bounded by :attr:`Deadlines.operation`.

What is set (never an option the user gave explicitly; a user's own ``fs=`` is left alone):

* S3 (s3fs, botocore): ``config_kwargs={"retries": {"total_max_attempts": 1}, "connect_timeout": ...,
  "read_timeout": stall}`` and s3fs's own ``retries`` to 1.
* GCS (gcsfs, aiohttp): ``requests_timeout`` (connect, read = stall) and gcsfs's request retry
  decorator bypassed (its retriable errors surface at once, as ``DriverGaveUp``).
* Azure (adlfs, azure-core): ``connection_timeout``/``read_timeout``, and the client's retry
  policy set to no retries (``retry_total=0``).

The drivers take one timeout for all their requests, so a lookup of the fsspec transport
waits up to ``stall`` (not ``request``) for an answer.
"""

from __future__ import annotations

import functools
from typing import Any

from scalable.artifacts.retry import Deadlines


class DriverGaveUp(ConnectionError):
    """A driver's retriable failure, raised at once so that scalable's retry layer decides."""


class DriverRefused(PermissionError):
    """A driver's 401/403 that it would have retried (gcsfs retries "Invalid Credentials"): not transient."""


def _service(protocol: str) -> str | None:
    from scalable.artifacts.transport_errors import service_of

    service = service_of(protocol)
    return service if service in ("s3", "gcs", "azure") else None


def driver_retries_kept(protocol: str, options: dict[str, Any]) -> bool:
    """The user set the driver's own retries (botocore's ``config_kwargs["retries"]``, Azure's ``retry_total``)."""
    service = _service(protocol)
    if service == "s3":
        return "retries" in (options.get("config_kwargs") or {})
    return service == "azure" and "retry_total" in options


def connect_timeout(deadlines: Deadlines) -> float:
    """Seconds a connection may take to open: at most 5, and never more than a request may."""
    return min(5.0, deadlines.request)


def single_attempt_options(protocol: str, options: dict[str, Any], deadlines: Deadlines) -> dict[str, Any]:
    """``options`` plus what makes the driver of ``protocol`` try once and time out per ``deadlines``.

    Keys the user set are kept as they are; the dict given is not changed.
    """
    service = _service(protocol)
    out = dict(options)
    if service == "s3":
        config = dict(out.get("config_kwargs") or {})
        config.setdefault("retries", {"total_max_attempts": 1, "mode": "standard"})
        config.setdefault("connect_timeout", connect_timeout(deadlines))
        config.setdefault("read_timeout", deadlines.stall)
        out["config_kwargs"] = config
    elif service == "gcs":
        if "requests_timeout" not in out:
            import aiohttp

            out["requests_timeout"] = aiohttp.ClientTimeout(
                total=8 * deadlines.stall, sock_connect=connect_timeout(deadlines), sock_read=deadlines.stall
            )
    elif service == "azure":
        out.setdefault("connection_timeout", connect_timeout(deadlines))
        out.setdefault("read_timeout", deadlines.stall)
    return out


def single_attempt_driver(fs: Any, protocol: str, options: dict[str, Any], deadlines: Deadlines) -> None:
    """Turn the retries of an fsspec filesystem ``fs`` (built from ``options``) to one attempt, in place."""
    service = _service(protocol)
    if service == "s3":
        if not driver_retries_kept(protocol, options):
            fs.retries = 1  # s3fs's loop around each botocore call
    elif service == "gcs":
        _gcsfs_once(fs)
    elif service == "azure":
        _adlfs_once(fs, deadlines, options)


def _gcsfs_once(fs: Any) -> None:
    """gcsfs retries every request six times, fixed when its class is defined: call the undecorated one."""
    if getattr(fs, "_scalable_once", False):
        return
    request = type(fs)._request
    bare = getattr(request, "__wrapped__", None)
    if bare is None:
        return  # a gcsfs that does not wrap its requests so: nothing to undo
    try:
        from gcsfs.retry import is_retriable
    except ImportError:  # pragma: no cover - gcsfs always has it
        return

    @functools.wraps(bare)
    async def once(*args: Any, **kwargs: Any) -> Any:
        try:
            return await bare(fs, *args, **kwargs)
        except FileNotFoundError:
            raise
        except Exception as exc:
            if not is_retriable(exc):
                raise
            if getattr(exc, "code", None) in (401, 403):
                raise DriverRefused(str(exc) or type(exc).__name__) from exc
            raise DriverGaveUp(str(exc) or type(exc).__name__) from exc

    fs._request = once
    fs._scalable_once = True


def _adlfs_once(fs: Any, deadlines: Deadlines, options: dict[str, Any]) -> None:
    """The Azure SDK client of adlfs (built in ``do_connect``): its retry policy to no retries."""
    client = getattr(fs, "service_client", None)
    policy = getattr(getattr(client, "_config", None), "retry_policy", None)
    if policy is not None and not driver_retries_kept("az", options):
        for name in ("total_retries", "connect_retries", "read_retries", "status_retries"):
            if hasattr(policy, name):
                setattr(policy, name, 0)
    # Calls adlfs makes without its timeout keywords (properties, listings) use the transport's.
    transport = getattr(getattr(client, "_pipeline", None), "_transport", None)
    config = getattr(transport, "connection_config", None)
    if config is not None:
        if "connection_timeout" not in options:
            config.timeout = connect_timeout(deadlines)
        if "read_timeout" not in options:
            config.read_timeout = deadlines.stall


__all__ = ["DriverGaveUp", "DriverRefused", "driver_retries_kept", "single_attempt_driver", "single_attempt_options"]
