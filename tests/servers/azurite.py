"""Azure Blob: Azurite's blob service, from npm, installed into ``.test-servers/node/``.

``bash scripts/install-test-servers.sh`` installs it; when it is missing and npm is there, the
fixture runs that script once itself. Azurite is run as ``node <azurite>/dist/src/blob/main.js``,
so neither a global install nor ``node_modules/.bin`` on PATH is needed.

Traps:

* azurite >= 3.36 needs node >= 21; the install script pins 3.35.0, the last one for node 20.
* ``--skipApiVersionCheck``: recent azure-storage-blob sends an API version newer than Azurite
  knows, and Azurite refuses it without this flag. ``--loose`` ignores headers it does not support.
  ``--disableTelemetry`` keeps it off the network.
* Connect with the connection string (``BlobEndpoint=http://127.0.0.1:<port>/devstoreaccount1``).
  adlfs's ``account_host=`` does not work for Azurite ("Unable to determine account name for shared
  key credential").
* Azurite keeps its metadata in LokiJS files that it saves every few seconds and on SIGTERM: after
  ``stop()``/``restart()`` everything is there, but after ``kill()`` the last seconds of writes
  (containers, blobs) may be gone.
* A wrong account key is refused with ``azure.core.exceptions.HttpResponseError`` (status 403,
  AuthorizationFailure) from ls, cat and pipe alike: adlfs does not turn it into PermissionError.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.servers.base import HOST, PROJECT_ROOT, ManagedServer, ServerUnavailable, find_free_port, http_status

BLOB_ENV = "SCALABLE_TEST_AZURITE_BLOB"
NODE_ENV = "SCALABLE_TEST_NODE"
NO_INSTALL_ENV = "SCALABLE_TEST_SERVERS_NO_INSTALL"
INSTALL_SCRIPT = PROJECT_ROOT / "scripts" / "install-test-servers.sh"
NODE_PREFIX = PROJECT_ROOT / ".test-servers" / "node"
BLOB_MAIN = Path("node_modules") / "azurite" / "dist" / "src" / "blob" / "main.js"

#: The well-known Azurite development account (public, documented by Microsoft).
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _find_blob_main() -> Path | None:
    explicit = os.environ.get(BLOB_ENV)
    if explicit:
        return Path(explicit).resolve()
    local = NODE_PREFIX / BLOB_MAIN
    if local.is_file():
        return local
    on_path = shutil.which("azurite-blob")
    if on_path:
        return Path(on_path).resolve()  # node_modules/.bin/azurite-blob -> .../dist/src/blob/main.js
    return None


def _run_install_script() -> str:
    """Run ``scripts/install-test-servers.sh`` once; return the tail of its output for messages."""
    try:
        done = subprocess.run(
            ["bash", str(INSTALL_SCRIPT)],
            cwd=PROJECT_ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"running {INSTALL_SCRIPT} failed: {exc}"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return f"{INSTALL_SCRIPT.name} exited {done.returncode}: " + " | ".join(lines[-8:])


def find_azurite() -> tuple[str, Path]:
    """(node, azurite blob main.js), installing Azurite with the project's script when it is missing."""
    node = os.environ.get(NODE_ENV) or shutil.which("node")
    if not node:
        raise ServerUnavailable("node not found: Azurite needs Node.js (apt-get install nodejs npm)")
    main = _find_blob_main()
    install_note = ""
    if main is None and os.environ.get(NO_INSTALL_ENV, "") in ("", "0") and INSTALL_SCRIPT.is_file():
        install_note = "; tried to install it: " + _run_install_script()
        main = _find_blob_main()
    if main is None or not main.is_file():
        raise ServerUnavailable(
            f"Azurite not installed (expected {NODE_PREFIX / BLOB_MAIN}; run `bash scripts/install-test-servers.sh`,"
            f" or point ${BLOB_ENV} at azurite's blob main.js){install_note}"
        )
    return node, main


class Azurite(ManagedServer):
    """Azurite's blob service on 127.0.0.1, data in a temp dir (kept across restarts)."""

    name = "azurite"
    protocol = "az"
    startup_timeout = 60.0
    stop_timeout = 10.0

    def __init__(self, node: str | None = None, blob_main: Path | None = None, workdir: Path | None = None) -> None:
        if node is None or blob_main is None:
            found_node, found_main = find_azurite()
            node, blob_main = node or found_node, blob_main or found_main
        self.node, self.blob_main = node, Path(blob_main)
        super().__init__(workdir)
        self.data_dir = self.workdir / "data"
        self.data_dir.mkdir(exist_ok=True)
        self.port = find_free_port()
        self.account_name = ACCOUNT_NAME
        self.account_key = ACCOUNT_KEY

    def command(self) -> list[str]:
        return [
            self.node,
            str(self.blob_main),
            "--blobHost",
            HOST,
            "--blobPort",
            str(self.port),
            "--location",
            str(self.data_dir),
            "--skipApiVersionCheck",
            "--loose",
            "--disableTelemetry",
        ]

    @property
    def endpoint_url(self) -> str:
        """The blob endpoint, account included (Azurite uses path-style URLs)."""
        return f"http://{HOST}:{self.port}/{self.account_name}"

    def connection_string_for(self, account_key: str) -> str:
        """A connection string with any key (e.g. a wrong one, in a test that expects a refusal)."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account_name};AccountKey={account_key};"
            f"BlobEndpoint={self.endpoint_url};"
        )

    @property
    def connection_string(self) -> str:
        return self.connection_string_for(self.account_key)

    @property
    def storage_options(self) -> dict[str, Any]:
        """kwargs for ``adlfs.AzureBlobFileSystem`` / ``fsspec.filesystem("az", ...)``: a new dict each time."""
        return {"connection_string": self.connection_string}

    def is_ready(self) -> bool:
        # Any HTTP answer will do (an unsigned request gets 403): the blob service is listening.
        return http_status(f"{self.endpoint_url}?comp=list") is not None
