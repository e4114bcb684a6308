"""Helpers of the corruption, hostile-input, secrets and faults tests: raw access to a store's files.

A damage is written *around* scalable, at the object path the store docstring names
(``.scalable/refs/<key>``, ``.scalable/objects/<key>/<version>``): with ``pathlib`` for a local
store and with s3fs straight to the server for S3, as a failing disk or another tool would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from scalable import build_artifact_store
from scalable.artifacts.store import BaseArtifactStore, RefRecord

#: The canary the secrets tests inject (in URIs, storage options and the environment); the
#: secret-scan plugin fails any test whose output or run records contain it.
CANARY_KEY = "AKIACANARYKEY7Q2ZX9"
CANARY_SECRET = "canary-secret-5f0c1e9a-do-not-leak"


@dataclass
class RawStore:
    """A store and a way to read, write and remove its files without going through it."""

    store: BaseArtifactStore
    read: Callable[[str], bytes]
    write: Callable[[str, bytes], None]
    remove: Callable[[str], None]
    #: The store URI the CLI is given, and the environment it needs to reach the store.
    cli_uri: str
    cli_env: dict[str, str]

    def record(self, key: str) -> RefRecord:
        """The ref record of ``key`` as committed."""
        return RefRecord.from_bytes(self.read(f".scalable/refs/{key}"), key, self.store.uri)


def local_raw(root: Path) -> RawStore:
    store = build_artifact_store(root)
    assert isinstance(store, BaseArtifactStore)

    def write(rel: str, data: bytes) -> None:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)

    return RawStore(
        store,
        read=lambda rel: (root / rel).read_bytes(),
        write=write,
        remove=lambda rel: (root / rel).unlink(),
        cli_uri=str(root),
        cli_env={},
    )


def s3_raw(server: Any, transport: str | None = None) -> RawStore:
    bucket = server.shared_bucket()
    prefix = f"corrupt-{uuid.uuid4().hex[:10]}"
    extra = {"transport": transport} if transport else {}
    store = build_artifact_store(server.url(bucket, prefix), **server.storage_options, **extra)
    assert isinstance(store, BaseArtifactStore)
    fs = server.filesystem()

    def where(rel: str) -> str:
        return f"{bucket}/{prefix}/{rel}"

    env = {
        "AWS_ENDPOINT_URL": server.endpoint_url,
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
        "AWS_DEFAULT_REGION": server.region,
    }
    return RawStore(
        store,
        read=lambda rel: fs.cat_file(where(rel)),
        write=lambda rel, data: fs.pipe_file(where(rel), data),
        remove=lambda rel: fs.rm_file(where(rel)),
        cli_uri=server.url(bucket, prefix),
        cli_env=env,
    )


def make_raw(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> RawStore:
    """A fresh, empty store on ``backend`` ("local", "s3" or "s3-fsspec") with raw access to its files."""
    if backend == "local":
        return local_raw(tmp_path / f"store-{uuid.uuid4().hex[:8]}")
    return s3_raw(request.getfixturevalue("s3_server"), "fsspec" if backend == "s3-fsspec" else None)


def run_cli(
    args: list[str], env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m scalable ARGS`` as a real subprocess (output captured as text)."""
    full_env = {**os.environ, "SCALABLE_DIGEST_CACHE": "off", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "scalable", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextmanager
def env_vars(**values: str) -> Any:
    """Set environment variables for the block, restoring the previous values after it."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
