"""The base every store mixin builds on: one asyncpg pool and how a call gets a connection.

``Database.connect`` opens the pool and brings the schema up to date; ``_tx`` hands out a
connection inside a transaction. Every call translates connection failures into
``StoreUnavailable`` (see errors.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, Self

import asyncpg

from receiver.store.errors import translate
from receiver.store.migrate import migrate

__all__ = ["WORK_CHANNEL", "Database"]

# The one channel the workers LISTEN on: intake NOTIFYs it for new alert events, and the job
# queue for jobs that are due, so one listening connection wakes the worker for all its work.
WORK_CHANNEL = "remediator_work"


async def _keep_session(conn: Any) -> None:
    """Pool release hook: nothing to reset.

    asyncpg's default runs ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` on
    every release, a round trip that cost as much as the work itself on the intake and worker
    paths. Pool connections here never keep session state: no SET, no cursors, LISTEN lives on
    the worker's own connection, and the migration lock is released explicitly. asyncpg still
    rolls back a transaction left open before the connection is reused.
    """


class Database:
    """An asyncpg pool and the DSN it was opened with. Create with ``await connect(dsn)``."""

    def __init__(self, pool: Any, dsn: str) -> None:
        self._pool = pool
        self.dsn = dsn

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        min_size: int = 2,
        max_size: int = 10,
        connect_timeout_s: float = 5.0,
        command_timeout_s: float | None = 30.0,
        run_migrations: bool = True,
    ) -> Self:
        """Open the pool and bring the schema up to date. StoreUnavailable if unreachable."""
        with translate():
            pool = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                timeout=connect_timeout_s,
                command_timeout=command_timeout_s,
                reset=_keep_session,
            )
        store = cls(pool, dsn)
        if run_migrations:
            try:
                with translate():
                    async with pool.acquire() as conn:
                        await migrate(conn)
            except BaseException:
                await pool.close()
                raise
        return store

    async def close(self) -> None:
        """Close the pool, waiting for the connections in use to be released."""
        await self._pool.close()

    async def ping(self) -> None:
        """Round-trip to the server; raises StoreUnavailable when it does not answer."""
        with translate():
            await self._pool.fetchval("SELECT 1")

    @contextlib.asynccontextmanager
    async def _tx(self, **options: Any) -> AsyncIterator[Any]:
        """A connection in a transaction, with connection failures as StoreUnavailable."""
        with translate():
            async with self._pool.acquire() as conn, conn.transaction(**options):
                yield conn

    async def server_now(self) -> datetime:
        """The database clock, which leases and deadlines are measured against."""
        with translate():
            value: datetime = await self._pool.fetchval("SELECT now()")
        return value
