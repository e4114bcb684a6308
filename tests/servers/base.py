"""What every test server shares: free ports, a child process with a log file, readiness, stop by pid.

A server is a :class:`ManagedServer` subclass that says which command to run and how to tell it is
ready. The base class starts that command on 127.0.0.1 in a new session (so its pid is also its
process-group id), sends its output to a log file in the server's own temp dir, waits until it
answers, and stops it by that pid: SIGTERM first, SIGKILL when it does not exit in time. Nothing
here ever looks a process up by name.

``kill()`` and ``restart()`` exist for fault tests: ``kill()`` SIGKILLs the server (as a crash
would), ``start()`` brings it back on the same ports with the same data dir, and ``restart()``
does both in one call (gracefully by default).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
#: The project root (``tests/servers/base.py`` -> two levels up).
PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: Set to 1 to keep each server's temp dir (data and log) after the session, for debugging.
KEEP_ENV = "SCALABLE_TEST_SERVERS_KEEP"


class ServerUnavailable(RuntimeError):
    """The server's binary is not installed and cannot be installed here: the fixture skips."""


class ServerError(RuntimeError):
    """The binary is there but the server did not start or answer: the fixture errors."""


# --------------------------------------------------------------------------- free ports

_rng = random.SystemRandom()  # not the global RNG: tests (hypothesis, seeds) must not make ports collide
_allocated: set[int] = set()
_port_lock = threading.Lock()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _candidate_range(span: int) -> tuple[int, int]:
    """Ports below the kernel's ephemeral range (outgoing connections never take them), if room."""
    low, _ = _ephemeral_range()
    first, last = 20000, low - 1 - span
    if last - first < 2000:  # odd ephemeral range: fall back to the whole unprivileged range
        first, last = 10000, 65535 - span
    return first, last


def port_is_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def find_free_port(also_free_offsets: Sequence[int] = ()) -> int:
    """A port on 127.0.0.1 that is free now, as is ``port + offset`` for each offset.

    Ports handed out in this process are remembered and never handed out twice, so several servers
    started in one session cannot be given the same port even before they bind it.
    """
    span = max(also_free_offsets, default=0)
    first, last = _candidate_range(span)
    for _ in range(1000):
        port = _rng.randint(first, last)
        wanted = [port, *(port + offset for offset in also_free_offsets)]
        with _port_lock:
            if any(p in _allocated for p in wanted):
                continue
            if all(port_is_free(p) for p in wanted):
                _allocated.update(wanted)
                return port
    raise ServerError(f"no free port found in {first}..{last} (offsets {list(also_free_offsets)})")


def unique_name(prefix: str = "test") -> str:
    """A bucket/container name valid on S3, GCS and Azure (lowercase, digits, hyphens, 3-63 chars)."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def http_status(url: str, timeout: float = 1.0) -> int | None:
    """The HTTP status of a GET to ``url`` (any status counts), or None when nothing answers.

    Proxies from the environment are ignored: a test server is always on the loopback address.
    """
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return None


# --------------------------------------------------------------------------- live servers, for the fallbacks

_live: set[ManagedServer] = set()
_fallbacks_installed = False


def _kill_all_live() -> None:
    """Last resort (atexit, SIGTERM): SIGKILL every server still running and delete its temp dir."""
    for server in list(_live):
        with contextlib.suppress(Exception):
            server.kill()
            server.remove_workdir()


def _on_sigterm(signum: int, frame: Any) -> None:
    _kill_all_live()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_fallbacks() -> None:
    """atexit (and SIGTERM, if nobody else handles it) kill whatever a finalizer did not stop."""
    global _fallbacks_installed
    if _fallbacks_installed:
        return
    _fallbacks_installed = True
    atexit.register(_kill_all_live)
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                signal.signal(signal.SIGTERM, _on_sigterm)


# --------------------------------------------------------------------------- the managed server


class ManagedServer:
    """One server process. Subclasses define :meth:`command` and :meth:`is_ready`, and the client side.

    Every subclass also exposes ``endpoint_url``, its credentials, ``storage_options`` (kwargs for
    the fsspec filesystem of ``protocol``), :meth:`make_bucket` and :meth:`url`.
    """

    #: Short name, used in the temp dir, the log file and messages.
    name = "server"
    #: The fsspec protocol whose filesystem ``storage_options`` is for.
    protocol = ""
    #: Seconds to wait for readiness on start.
    startup_timeout = 60.0
    #: Seconds to wait after SIGTERM before SIGKILL.
    stop_timeout = 15.0
    #: Whether objects survive ``restart()`` / ``kill()`` + ``start()``.
    persistent = True
    #: The bucket that :meth:`shared_bucket` creates (and re-creates after a non-persistent restart).
    shared_bucket_name = "scalable-shared"

    def __init__(self, workdir: Path | None = None) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix=f"scalable-{self.name}-")) if workdir is None else Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._closed = False
        #: Seconds the last successful start took, from spawning the process to ready.
        self.startup_seconds: float | None = None
        #: Seconds of every successful start (the first one, then restarts).
        self.start_history: list[float] = []
        #: The pid of every process started (the last one is the current server).
        self.pids: list[int] = []

    # -- to define in subclasses --------------------------------------------------------------

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def is_ready(self) -> bool:
        """True once the server serves requests; may raise (the error is shown on a timeout)."""
        raise NotImplementedError

    @property
    def endpoint_url(self) -> str:
        raise NotImplementedError

    @property
    def storage_options(self) -> dict[str, Any]:
        raise NotImplementedError

    # -- the process ------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float | None = None) -> ManagedServer:
        """Start the server (same ports, same data dir as before) and wait until it is ready."""
        if self._closed:
            raise ServerError(f"{self.name}: start() after close()")
        if self.is_running():
            return self
        timeout = self.startup_timeout if timeout is None else timeout
        cmd = self.command()
        _install_fallbacks()
        began = time.monotonic()
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== {time.strftime('%H:%M:%S')} start: {shlex.join(cmd)}\n".encode())
            log.flush()
            try:
                self._proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.workdir,
                    env=self.environment(),
                    start_new_session=True,  # pid == process-group id; Ctrl-C in the terminal does not hit it
                )
            except OSError as exc:
                raise ServerError(f"{self.name}: cannot run {shlex.join(cmd)}: {exc}") from exc
        _live.add(self)
        self.pids.append(self._proc.pid)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.kill()
            raise
        self.startup_seconds = time.monotonic() - began
        self.start_history.append(self.startup_seconds)
        return self

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        last_error: BaseException | None = None
        while True:
            code = self._proc.poll()
            if code is not None:
                raise ServerError(f"{self.name} exited with code {code} while starting\n{self.describe()}")
            try:
                if self.is_ready():
                    return
            except Exception as exc:
                last_error = exc
            if time.monotonic() >= deadline:
                raise ServerError(
                    f"{self.name} not ready after {timeout:.0f}s (last probe error: {last_error!r})\n{self.describe()}"
                )
            time.sleep(0.1)

    def _signal_group(self, sig: int) -> None:
        """Send ``sig`` to the server's process group, whose id is the pid we started.

        Only called while that pid is not yet reaped (alive or a zombie), so the id cannot have been
        reused by another process.
        """
        if self._proc is None or self._proc.returncode is not None:
            return
        try:
            os.killpg(self._proc.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:  # not expected for our own child; fall back to the pid alone
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._proc.pid, sig)

    def _wait_exited(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the server to exit, without reaping it (its pid stays ours)."""
        assert self._proc is not None
        if not hasattr(os, "waitid"):
            try:
                self._proc.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while True:
            try:
                if os.waitid(os.P_PID, self._proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                    return True
            except ChildProcessError:  # already reaped
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def _reap(self) -> None:
        """SIGKILL whatever is left in the group, reap the server, forget it."""
        assert self._proc is not None
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(30)
        self._proc = None
        _live.discard(self)

    def stop(self, timeout: float | None = None) -> None:
        """Stop gracefully: SIGTERM, then SIGKILL after ``timeout`` seconds. Data stays in the data dir."""
        if self._proc is None:
            return
        timeout = self.stop_timeout if timeout is None else timeout
        self._signal_group(signal.SIGTERM)
        self._wait_exited(timeout)
        self._reap()

    def kill(self) -> None:
        """SIGKILL the server now, as a crash would. ``start()`` brings it back on the same ports."""
        if self._proc is None:
            return
        self._reap()

    def restart(self, *, kill: bool = False, timeout: float | None = None) -> ManagedServer:
        """Stop (or, with ``kill=True``, SIGKILL) and start again on the same ports and data dir."""
        if kill:
            self.kill()
        else:
            self.stop()
        return self.start(timeout)

    def close(self) -> None:
        """Stop the server and delete its temp dir (kept when ``SCALABLE_TEST_SERVERS_KEEP=1``)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.stop()
        finally:
            self.remove_workdir()

    def remove_workdir(self) -> None:
        """Delete the temp dir (data and log) unless ``SCALABLE_TEST_SERVERS_KEEP=1``."""
        if os.environ.get(KEEP_ENV, "") in ("", "0"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ManagedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- diagnostics ----------------------------------------------------------------------------

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_bytes().decode("utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def describe(self, lines: int = 60) -> str:
        return (
            f"command: {shlex.join(self.command())}\n"
            f"log: {self.log_path}\n"
            f"----- last {lines} lines of the log -----\n{self.log_tail(lines)}"
        )

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.is_running() else "stopped"
        return f"<{type(self).__name__} {self.endpoint_url} {state}>"

    # -- the client side ---------------------------------------------------------------------------

    def filesystem(self, **overrides: Any) -> Any:
        """A new fsspec filesystem on this server (never a cached instance, so no stale listings)."""
        import fsspec

        options = {**self.storage_options, **overrides}
        options.setdefault("skip_instance_cache", True)
        return fsspec.filesystem(self.protocol, **options)

    def url(self, bucket: str, path: str = "") -> str:
        """``protocol://bucket/path`` (``protocol://bucket`` when ``path`` is empty)."""
        path = path.lstrip("/")
        return f"{self.protocol}://{bucket}/{path}" if path else f"{self.protocol}://{bucket}"

    def make_bucket(self, name: str | None = None, *, exist_ok: bool = True) -> str:
        """Create the bucket/container ``name`` (a unique one when None) and return its name."""
        name = unique_name() if name is None else name
        fs = self.filesystem()
        if fs.exists(name):
            if exist_ok:
                return name
            raise FileExistsError(f"{self.url(name)} exists")
        fs.mkdir(name)
        return name

    def new_bucket(self, prefix: str = "test") -> str:
        """A fresh, empty bucket with a unique name."""
        return self.make_bucket(unique_name(prefix), exist_ok=False)

    def shared_bucket(self) -> str:
        """One bucket for the whole session (tests use unique prefixes in it); created on demand."""
        return self.make_bucket(self.shared_bucket_name)
