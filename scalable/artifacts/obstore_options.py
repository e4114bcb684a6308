"""Storage options as users pass them to fsspec, translated for obstore's S3 and Azure stores.

The native transport takes the options users already give s3fs and adlfs (``endpoint_url``,
``key``/``secret``/``token``, ``anon``, ``client_kwargs={"region_name": ...}``, Azure's
``account_name``/``account_key``/``connection_string``/``sas_token``), the ``AWS_*`` and
``AZURE_STORAGE_*`` variables, and ``~/.aws`` profiles (resolved through botocore when it is
installed). An option it cannot honour raises ``UnsupportedURIError`` naming the option and
suggesting ``transport="fsspec"``: no option is ever silently ignored, except fsspec's own
listing-cache switches, which have nothing to switch here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from scalable.artifacts.retry import Deadlines
from scalable.artifacts.uris import redact_uri
from scalable.errors import UnsupportedURIError

#: fsspec filesystem-cache switches: meaningless for a transport without a listing cache.
_FSSPEC_ONLY_HARMLESS = frozenset({"use_listings_cache", "listings_expiry_time", "max_paths", "skip_instance_cache"})

S3_OPTIONS = frozenset({"key", "secret", "token", "anon", "endpoint_url", "client_kwargs", "region", "profile"})
S3_CLIENT_KWARGS = frozenset({"endpoint_url", "region_name", "aws_access_key_id", "aws_secret_access_key"})
AZURE_OPTIONS = frozenset({"account_name", "account_key", "connection_string", "sas_token", "anon", "account_url"})


@dataclass(frozen=True)
class NativeConfig:
    """What an obstore store is built from, and where its requests go (for messages: no secrets)."""

    service: str  # "s3" or "azure"
    config: dict[str, Any]
    endpoint: str


def _unsupported(protocol: str, names: set[str] | list[str], why: str = "") -> UnsupportedURIError:
    listed = ", ".join(sorted(names))
    return UnsupportedURIError(
        f"the native {protocol}:// transport cannot honour the storage option(s) {listed}{why}: "
        "pass transport='fsspec' to build_artifact_store (or set transport: fsspec in the manifest's "
        "storage_options, or SCALABLE_TRANSPORT=fsspec) to use the fsspec driver, which takes them"
    )


def s3_config(bucket: str, options: dict[str, Any], protocol: str = "s3") -> NativeConfig:
    """Translate s3fs storage options (plus ``AWS_*`` and ``~/.aws``) into ``S3Store`` settings."""
    unknown = set(options) - S3_OPTIONS - _FSSPEC_ONLY_HARMLESS
    client_kwargs = dict(options.get("client_kwargs") or {})
    unknown |= {f"client_kwargs[{k!r}]" for k in set(client_kwargs) - S3_CLIENT_KWARGS}
    if unknown:
        raise _unsupported(protocol, unknown)
    config: dict[str, Any] = {"bucket": bucket, "checksum_algorithm": "sha256"}
    endpoint = options.get("endpoint_url") or client_kwargs.get("endpoint_url")
    if endpoint:
        config["endpoint"] = str(endpoint)
    region = options.get("region") or client_kwargs.get("region_name")
    if region:
        config["region"] = str(region)
    key = options.get("key") or client_kwargs.get("aws_access_key_id")
    secret = options.get("secret") or client_kwargs.get("aws_secret_access_key")
    if options.get("anon"):
        config["skip_signature"] = True
    elif key or secret:
        if not (key and secret):
            raise UnsupportedURIError(
                f"{protocol}:// storage options give {'key' if key else 'secret'} without "
                f"{'secret' if key else 'key'}: give both, or neither to use the environment"
            )
        config["access_key_id"] = str(key)
        config["secret_access_key"] = str(secret)
        if options.get("token"):
            config["session_token"] = str(options["token"])
    elif not os.environ.get("AWS_ACCESS_KEY_ID"):
        config.update(_profile_credentials(options.get("profile")))
    if not region and "region" not in config and not os.environ.get("AWS_REGION"):
        region_from_profile = _profile_region(options.get("profile"))
        if region_from_profile:
            config["region"] = region_from_profile
    where = str(endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "")
    return NativeConfig("s3", config, redact_uri(where) if where else "AWS S3")


def _botocore_session(profile: str | None) -> Any:
    try:
        import botocore.session
    except ImportError:
        return None
    try:
        return botocore.session.Session(profile=profile)
    except Exception:  # a profile that is not in ~/.aws: botocore's error says so when used
        return None


def _profile_credentials(profile: str | None) -> dict[str, str]:
    """Keys from ``~/.aws`` (``profile`` or ``AWS_PROFILE``), read through botocore when it is there."""
    if profile is None and not os.environ.get("AWS_PROFILE") and not _aws_files_exist():
        return {}
    session = _botocore_session(profile)
    if session is None:
        if profile:
            raise UnsupportedURIError(
                f"storage option profile={profile!r} needs botocore to read ~/.aws: "
                "pip install 'scalable[s3]', or give key and secret"
            )
        return {}
    try:
        creds = session.get_credentials()
    except Exception as exc:
        raise UnsupportedURIError(
            f"cannot read the AWS profile {profile or os.environ.get('AWS_PROFILE')!r}: {type(exc).__name__}; "
            "check ~/.aws/config and ~/.aws/credentials"
        ) from None
    if creds is None:
        return {}
    frozen = creds.get_frozen_credentials()
    out = {"access_key_id": frozen.access_key, "secret_access_key": frozen.secret_key}
    if frozen.token:
        out["session_token"] = frozen.token
    return out


def _profile_region(profile: str | None) -> str | None:
    if profile is None and not os.environ.get("AWS_PROFILE") and not _aws_files_exist():
        return None
    session = _botocore_session(profile)
    if session is None:
        return None
    try:
        region = session.get_config_variable("region")
    except Exception:
        return None
    return str(region) if region else None


def _aws_files_exist() -> bool:
    home = os.path.expanduser("~/.aws")
    config = os.environ.get("AWS_CONFIG_FILE") or os.path.join(home, "config")
    shared = os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.join(home, "credentials")
    return os.path.exists(config) or os.path.exists(shared)


def parse_connection_string(conn: str) -> dict[str, str]:
    """``AccountName=...;AccountKey=...;BlobEndpoint=...`` as a dict (values may contain ``=``)."""
    return dict(p.split("=", 1) for p in str(conn).split(";") if "=" in p)


def azure_config(container: str, options: dict[str, Any], protocol: str = "az") -> NativeConfig:
    """Translate adlfs storage options (plus ``AZURE_STORAGE_*``) into ``AzureStore`` settings."""
    unknown = set(options) - AZURE_OPTIONS - _FSSPEC_ONLY_HARMLESS
    if unknown:
        raise _unsupported(protocol, unknown)
    config: dict[str, Any] = {"container_name": container}
    conn = options.get("connection_string") or (
        None if options.get("account_name") else os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
    )
    account = options.get("account_name")
    key = options.get("account_key")
    endpoint = options.get("account_url")
    sas = options.get("sas_token")
    if conn:
        parts = parse_connection_string(conn)
        account = account or parts.get("AccountName")
        key = key or parts.get("AccountKey")
        sas = sas or parts.get("SharedAccessSignature")
        endpoint = endpoint or parts.get("BlobEndpoint")
        if not endpoint and account:
            scheme = parts.get("DefaultEndpointsProtocol", "https")
            endpoint = f"{scheme}://{account}.blob.{parts.get('EndpointSuffix', 'core.windows.net')}"
    if account:
        config["account_name"] = str(account)
    if options.get("anon"):
        config["skip_signature"] = True
    elif key:
        config["account_key"] = str(key)
    elif sas:
        config["sas_key"] = str(sas).lstrip("?")
    if endpoint:
        config["endpoint"] = str(endpoint).rstrip("/")
    where = endpoint or (f"https://{account}.blob.core.windows.net" if account else "Azure Blob Storage")
    return NativeConfig("azure", config, redact_uri(str(where)))


def client_options(endpoint: str | None, deadlines: Deadlines, *, transfer: bool) -> dict[str, Any]:
    """HTTP settings: plain http allowed for an http:// endpoint, timeouts from ``deadlines``."""
    per_request = deadlines.stall if transfer else deadlines.request
    out: dict[str, Any] = {
        "connect_timeout": timedelta(seconds=min(5.0, per_request)),
        "timeout": timedelta(seconds=per_request * (8 if transfer else 1)),
        "read_timeout": timedelta(seconds=per_request),
        "pool_idle_timeout": timedelta(seconds=50),
    }
    if endpoint and endpoint.startswith("http://"):
        out["allow_http"] = True
    return out


#: obstore's own retries off: :mod:`scalable.artifacts.retry` is the only retry layer.
NO_RETRIES: dict[str, Any] = {"max_retries": 0, "retry_timeout": timedelta(seconds=1)}


__all__ = [
    "NO_RETRIES",
    "NativeConfig",
    "azure_config",
    "client_options",
    "parse_connection_string",
    "s3_config",
]
