"""Unfinished S3 multipart uploads for the native transport, listed and aborted through botocore.

obstore aborts the uploads it gives up on, but a SIGKILLed put leaves its upload (and its
parts) on the server, and obstore has no call to list them. gc needs that listing, so the
native S3 store reaches the same bucket through botocore (installed with s3fs, a core
dependency) with the store's endpoint, region and credentials: ``ListMultipartUploads``
under the store's prefix and ``AbortMultipartUpload`` of one upload. Nothing else goes
through this client.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any

from scalable.artifacts.obstore_options import NativeConfig
from scalable.artifacts.primitives import IncompleteUpload
from scalable.artifacts.retry import Deadlines
from scalable.errors import AccessDeniedError, BucketNotFoundError, StoreUnavailableError


class MultipartUploads:
    """``list`` and ``abort`` the unfinished multipart uploads under one store's prefix."""

    def __init__(self, native: NativeConfig, bucket: str, prefix: str, endpoint: str | None, deadlines: Deadlines):
        self.native = native
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint = endpoint
        self.deadlines = deadlines
        self._client: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_client": None}  # a botocore client does not pickle; rebuilt on first use

    def client(self) -> Any:
        """The botocore S3 client, built on first use from the store's settings."""
        if self._client is None:
            import botocore.session
            from botocore import UNSIGNED
            from botocore.config import Config

            cfg = self.native.config
            s3: dict[str, str] = {}
            if self.endpoint and not cfg.get("virtual_hosted_style_request"):
                s3["addressing_style"] = "path"  # what obstore does for a custom endpoint
            config = Config(
                connect_timeout=min(5.0, self.deadlines.request),
                read_timeout=self.deadlines.request,
                retries={"max_attempts": 3, "mode": "standard"},
                signature_version=UNSIGNED if cfg.get("skip_signature") else None,
                s3=s3 or None,
            )
            kwargs: dict[str, Any] = {}
            if cfg.get("access_key_id"):
                kwargs["aws_access_key_id"] = cfg["access_key_id"]
                kwargs["aws_secret_access_key"] = cfg.get("secret_access_key")
                if cfg.get("session_token"):
                    kwargs["aws_session_token"] = cfg["session_token"]
            region = cfg.get("region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
            session = botocore.session.get_session()  # the environment's credentials when none are given
            self._client = session.create_client(
                "s3", region_name=region or "us-east-1", endpoint_url=self.endpoint, config=config, **kwargs
            )
        return self._client

    def _key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def list(self, rel_dir: str) -> list[IncompleteUpload]:
        """Every unfinished upload whose key is under ``rel_dir`` of the store (rel paths, start times)."""
        strip = len(self.prefix) + 1 if self.prefix else 0
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self._key(rel_dir.strip("/")) + "/"}
        found: list[IncompleteUpload] = []
        while True:
            page = self._request("list the unfinished multipart uploads", "list_multipart_uploads", **kwargs)
            for up in page.get("Uploads") or []:
                started = up.get("Initiated") or datetime.now(timezone.utc)
                found.append(IncompleteUpload(up["Key"][strip:], up["UploadId"], started))
            if not page.get("IsTruncated"):
                return found
            kwargs["KeyMarker"] = page.get("NextKeyMarker")
            kwargs["UploadIdMarker"] = page.get("NextUploadIdMarker")

    def abort(self, upload: IncompleteUpload) -> None:
        """Abort one upload: its parts are removed (an upload already gone is fine)."""
        try:
            self._request(
                "abort a multipart upload",
                "abort_multipart_upload",
                Bucket=self.bucket,
                Key=self._key(upload.rel),
                UploadId=upload.upload_id,
            )
        except _NoSuchUpload:
            return

    def _request(self, what: str, method: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        where = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        try:
            return getattr(self.client(), method)(**kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code == "NoSuchUpload":
                raise _NoSuchUpload from None
            if code == "NoSuchBucket":
                raise BucketNotFoundError(
                    f"cannot {what} in {where}: bucket {self.bucket!r} does not exist at {self.native.endpoint}; "
                    "check the bucket name in the URI"
                ) from None
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
                raise AccessDeniedError(
                    f"{self.native.endpoint} refused to {what} in {where} ({code}): check the credentials, and that "
                    "they may list and abort multipart uploads (s3:ListBucketMultipartUploads, s3:AbortMultipartUpload)"
                ) from None
            raise StoreUnavailableError(
                f"cannot {what} in {where}: {self.native.endpoint} answered {code or 'an error'}; retry, or remove "
                "unfinished uploads with a bucket lifecycle rule (AbortIncompleteMultipartUpload)"
            ) from None
        except BotoCoreError as exc:
            raise StoreUnavailableError(
                f"cannot {what} in {where}: {self.native.endpoint} did not answer ({type(exc).__name__}); check that "
                "the service is running and reachable from this machine, then retry"
            ) from None


class _NoSuchUpload(Exception):
    """The upload was completed or aborted meanwhile."""


__all__ = ["MultipartUploads"]
