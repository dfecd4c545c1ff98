"""A server as a child process on a loopback port: the life cycle shared by the embedded
PostgreSQL and Redis, for the embedded default run and for the test servers (``tests/support``).

Each server lives in a directory of its own, ``root_dir``, with its data and its log there. The
port is chosen once, when the object is made, and kept across ``stop()``/``start()``: the service
starts a fresh object per run, while a test stops a server and expects it back at the same URL.
Servers run in a session of their own so that ^C in a terminal (or pytest) reaches us, not them;
they are stopped by ``stop()``, in order, after their clients.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

__all__ = [
    "HOST",
    "LEFTOVER_STOP_TIMEOUT_S",
    "RUN_AS_USER",
    "ServerError",
    "ServerProcess",
    "free_port",
    "process_exists",
    "redis_answers",
    "stop_leftover",
    "unprivileged_account",
]

RUN_AS_USER = "embedded_postgres"
HOST = "127.0.0.1"
LEFTOVER_STOP_TIMEOUT_S = 30.0


class ServerError(RuntimeError):
    """A server could not be found, initialised or started; the message says why."""


# -- small helpers ---------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def redis_answers(host: str, port: int, timeout: float = 0.5, password: str | None = None) -> bool:
    """True when a Redis server at host:port replies +PONG to PING (after AUTH with
    ``password`` when one is given; a server that requires one answers -NOAUTH without it)."""
    request = b"PING\r\n"
    expected = [b"+PONG"]
    if password is not None:
        secret = password.encode()
        request = b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(secret), secret) + request
        expected = [b"+OK", b"+PONG"]
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(request)
            received = b""
            while received.count(b"\r\n") < len(expected):
                chunk = sock.recv(256)
                if not chunk:
                    return False
                received += chunk
    except OSError:
        return False
    return received.split(b"\r\n")[: len(expected)] == expected


def process_exists(pid: int) -> bool:
    """True when a process with this pid exists (ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _process_alive(pid: int, marker: str) -> bool:
    """True when ``pid`` runs and its command line mentions ``marker`` (so not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return marker.encode() in cmdline


def stop_leftover(pid_file: Path, marker: str, sig: signal.Signals, timeout_s: float) -> None:
    """A server left running by a killed earlier run holds the data directory (and has no
    parent to stop it): stop it by the pid it recorded, if that pid is still that server."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    if not _process_alive(pid, marker):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _process_alive(pid, marker):
        time.sleep(0.1)
    if _process_alive(pid, marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def unprivileged_account() -> pwd.struct_passwd | None:
    """The account to run PostgreSQL as: None when we are not root (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(RUN_AS_USER)
    except KeyError:
        pass
    result = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", RUN_AS_USER],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        raise ServerError(
            f"cannot create the user {RUN_AS_USER!r} to run PostgreSQL as: "
            f"{result.stderr.decode(errors='replace').strip()}"
        )
    return pwd.getpwnam(RUN_AS_USER)


# -- the common life cycle -------------------------------------------------------------------


class ServerProcess:
    """Spawn with output to a log file, wait until ready, stop by signal (then SIGKILL)."""

    name = "server"

    def __init__(self, root_dir: Path, port: int | None, log_name: str) -> None:
        # Absolute: the server runs with root_dir as its working directory, so a relative
        # path (the default data directory is ".data") would point inside itself.
        self.root_dir = root_dir.absolute()
        self.port = port or free_port()
        self.log_file = self.root_dir / log_name
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs (for signals beyond start and stop, e.g. SIGSTOP)."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the server (again, on the same port) and wait until it answers."""
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _spawn(self, argv: list[str], timeout_s: float, **popen: Any) -> None:
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root_dir,
                # ^C goes to our process group; the server is stopped by stop(), in order.
                start_new_session=True,
                **popen,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                raise ServerError(f"{self.name} exited at start-up:\n{self.log_tail()}")
            if self._ready():
                return
            time.sleep(0.05)
        self.stop()
        raise ServerError(
            f"{self.name} did not start on port {self.port} within {timeout_s:g}s:\n"
            f"{self.log_tail()}"
        )

    def _stop(self, sig: signal.Signals, timeout_s: float) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop(self) -> None:
        raise NotImplementedError
