"""What both object-store transports say when a call fails: one table of services, one set of messages.

The native transport (:mod:`scalable.artifacts.obstore_store`) and the fsspec one
(:mod:`scalable.artifacts.fsspec_store`) recognise failures differently (obstore's error
texts, botocore/gcsfs/azure exception types), but turn them into the same
``ScalableError`` subclasses with the same wording, built here: a missing bucket says how to
create it, refused credentials say what to check, an unreachable service names the endpoint.
No message ever carries a credential: a driver's reason is dropped to its exception type
when it repeats a secret (:func:`safe_reason`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from scalable.errors import AccessDeniedError, BucketNotFoundError, StoreUnavailableError, UnsupportedURIError

#: The service behind each scheme.
SERVICE_OF = {
    "s3": "s3",
    "s3a": "s3",
    "gs": "gcs",
    "gcs": "gcs",
    "az": "azure",
    "abfs": "azure",
    "abfss": "azure",
}
#: How a service is named in a message when no endpoint URL is known.
SERVICE_NAMES = {"s3": "AWS S3", "gcs": "Google Cloud Storage", "azure": "Azure Blob Storage"}
#: How to create a missing bucket or container, per service.
CREATE_HINTS = {
    "s3": "create it with `aws s3 mb s3://{bucket}` (or your provider's console)",
    "gcs": "create it with `gcloud storage buckets create gs://{bucket}`",
    "azure": "create it with `az storage container create --name {bucket}`",
}
#: Drivers' "no usable credentials" errors (botocore, google-auth): not a ``PermissionError``, same remedy.
NO_CREDENTIALS = frozenset({"NoCredentialsError", "PartialCredentialsError", "DefaultCredentialsError"})
#: Drivers' "this request cannot be sent" errors: a bucket name the service would never accept.
INVALID_REQUEST = frozenset({"ParamValidationError", "InvalidBucketName"})
#: Error codes of a missing bucket (S3) or container (Azure) in a service's answer.
NO_BUCKET_CODES = ("NoSuchBucket", "ContainerNotFound")

_QUERY = re.compile(r"\?\S*")
#: Values that are not secrets even when they appear among the options (flags, algorithm names).
_NOT_SECRETS = frozenset({"True", "False", "true", "false", "sha256"})


def service_of(protocol: str) -> str:
    """``"s3"``, ``"gcs"`` or ``"azure"`` for an object-store scheme; the scheme itself otherwise."""
    return SERVICE_OF.get(protocol, protocol)


def service_name(protocol: str) -> str:
    """The service's name for messages (``"AWS S3"``), or ``"proto://"`` for other schemes."""
    return SERVICE_NAMES.get(service_of(protocol), f"{protocol}://")


def strings_in(value: Any) -> Iterator[str]:
    """Every string in a nest of dicts, lists and tuples (the storage options' values)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings_in(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from strings_in(v)


def safe_reason(exc: BaseException, secrets: Iterable[Any] = (), *, limit: int = 240) -> str:
    """``Type: first line`` of ``exc`` without query strings, or only its type if it repeats a secret.

    ``secrets`` may hold strings or nests of them (storage options); strings shorter than four
    characters are not looked for.
    """
    text = (str(exc).strip().splitlines() or [""])[0]
    text = _QUERY.sub("?…", text)[:limit]
    for secret in strings_in(list(secrets)):
        if len(secret) >= 4 and secret not in _NOT_SECRETS and secret in text:
            return type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def access_denied(endpoint: str, what: str, uri: str, reason: str) -> AccessDeniedError:
    """The service refused the credentials (401/403, or no credentials at all)."""
    return AccessDeniedError(
        f"{endpoint} refused to {what} in {uri} ({reason}): check the credentials "
        "(storage options or the environment) and that they may read and write this bucket"
    )


def unavailable(
    endpoint: str, what: str, uri: str, reason: str, *, deadline: float | None = None
) -> StoreUnavailableError:
    """The service did not answer: after the retries, within ``deadline`` seconds when one bounds them."""
    within = (
        f"within the deadline ({deadline:g} s, after retries; {reason})" if deadline else f", after retries ({reason})"
    )
    return StoreUnavailableError(
        f"cannot {what} in {uri}: {endpoint} did not answer{' ' if deadline else ''}{within}; check that the service "
        "is running and reachable from this machine, then retry"
    )


def bad_bucket_name(endpoint: str, what: str, uri: str, reason: str, *, refused: bool = False) -> UnsupportedURIError:
    """A request the service refuses (or a driver will not send) because of the bucket's name."""
    how = f"refused the request ({reason})" if refused else f"cannot be asked ({reason})"
    return UnsupportedURIError(f"cannot {what} in {uri}: {endpoint} {how}; check the bucket name in the URI")


def bucket_not_found(bucket: str, uri: str, endpoint: str, protocol: str) -> BucketNotFoundError:
    """The bucket or container is not there: how to create it, or ``create=True``."""
    hint = CREATE_HINTS.get(service_of(protocol), "create it first").format(bucket=bucket)
    return BucketNotFoundError(
        f"bucket {bucket!r} of {uri} does not exist at {endpoint}: {hint}, or pass create=True to build_artifact_store"
    )


__all__ = [
    "CREATE_HINTS",
    "INVALID_REQUEST",
    "NO_BUCKET_CODES",
    "NO_CREDENTIALS",
    "SERVICE_NAMES",
    "SERVICE_OF",
    "access_denied",
    "bad_bucket_name",
    "bucket_not_found",
    "safe_reason",
    "service_name",
    "service_of",
    "strings_in",
    "unavailable",
]
