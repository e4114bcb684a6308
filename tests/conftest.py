"""Fixtures shared by the suite: one ``store`` fixture per backend, real servers for object stores."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# Tests must not read or write the user's digest cache in ~/.cache.
os.environ.setdefault("SCALABLE_DIGEST_CACHE", "off")
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
# Nor the user's local mirror: one throwaway mirror per test run (tests that need their own set it).
if "SCALABLE_MIRROR_DIR" not in os.environ:
    import tempfile

    os.environ["SCALABLE_MIRROR_DIR"] = tempfile.mkdtemp(prefix="scalable-test-mirror-")

from scalable import build_artifact_store
from scalable.artifacts.store import BaseArtifactStore

pytest_plugins = ["tests.servers.plugin", "tests.secret_scan"]

#: Every backend the contract suite runs against. Object stores need their test server;
#: ``s3`` and ``azure`` are the native (obstore) transport, ``*-fsspec`` the fsspec one.
BACKENDS = ["local", "memory", "s3", "s3-fsspec", "gcs", "azure", "azure-fsspec"]

_SERVER_FIXTURE = {"s3": "s3_server", "gcs": "gcs_server", "azure": "azure_server"}


def backend_transport(backend: str) -> tuple[str, dict[str, str]]:
    """``"s3-fsspec"`` -> ``("s3", {"transport": "fsspec"})``; ``"s3"`` -> ``("s3", {})`` (native)."""
    name, _, transport = backend.partition("-")
    return name, ({"transport": transport} if transport else {})


def make_store_factory(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Callable[[], BaseArtifactStore]:
    """A factory of fresh, empty stores on ``backend`` (each call: a new root)."""
    if backend == "local":
        return lambda: build_artifact_store(tmp_path / f"store-{uuid.uuid4().hex[:8]}")  # type: ignore[return-value]
    if backend == "memory":
        return lambda: build_artifact_store(f"memory://scalable-tests/{uuid.uuid4().hex}")  # type: ignore[return-value]
    name, transport = backend_transport(backend)
    server = request.getfixturevalue(_SERVER_FIXTURE[name])
    bucket = server.shared_bucket()

    def factory() -> BaseArtifactStore:
        uri = server.url(bucket, uuid.uuid4().hex)
        return build_artifact_store(uri, **server.storage_options, **transport)  # type: ignore[return-value]

    return factory


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_factory(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Callable[[], BaseArtifactStore]:
    return make_store_factory(request, backend, tmp_path)


@pytest.fixture
def store(store_factory: Callable[[], BaseArtifactStore]) -> Iterator[BaseArtifactStore]:
    yield store_factory()


def make_tree(root: Path) -> Path:
    """A small tree with nested and empty folders and unicode names (its digest is pinned below)."""
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "sub" / "empty-too").mkdir()
    (root / "a.txt").write_bytes(b"alpha\n")
    (root / "sub" / "b.bin").write_bytes(bytes(range(256)) * 4)
    (root / "sub" / "deeper" / "c.csv").write_text("x,y\n1,2\n", encoding="utf-8")
    (root / "ünïcødé –名前.txt").write_text("unicode\n", encoding="utf-8")
    (root / "zero-bytes").write_bytes(b"")
    return root


#: The tree digest of ``make_tree``: equal on every backend and machine, and pinned here.
TREE_DIGEST = "sha256:7516640c154f37458965dc45ca199cc7777b5f538566158a647f3c009dacf7b3"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "tree")
