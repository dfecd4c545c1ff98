"""Store calls that answer within a deadline, whatever PostgreSQL does.

``bounded_connection(pool, timeout_s)`` is a pool connection for at most ``timeout_s`` seconds;
``BoundedPool`` is an asyncpg pool whose every call (``acquire``, ``fetch``, ``execute``, ...)
is one. ``Database.bounded`` puts one under a view of the store, so every method of the view
answers in time without a deadline of its own: the HTTP routes read and write through such a
view (``receiver.service``), which is how a frozen store is a 503 on every route within the
same bound, and a pause's audit row is given up in time (``receiver.audit_outbox``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from receiver.store.errors import StoreUnavailable, translate

__all__ = ["BoundedPool", "bounded_connection"]


@contextlib.asynccontextmanager
async def bounded_connection(pool: Any, timeout_s: float) -> AsyncIterator[Any]:
    """A connection of ``pool`` (asyncpg's) for at most ``timeout_s`` seconds, waiting for one
    included.

    At the deadline the connection is closed under the caller, whose statement then fails
    at once; StoreUnavailable says the server did not answer in time. Not a cancellation:
    asyncpg cancels a statement by asking the server (a CancelRequest on a new connection)
    and waits for it to acknowledge, up to ``command_timeout``, before the connection goes
    back to the pool; a frozen server (SIGSTOP, a stalled VM or network) never
    acknowledges, which made a 2 s readiness check answer after 32 s and a webhook after
    60 s. A statement that was running may still commit: the server reads what was sent
    before the close once it runs again (the COMMIT included, when that was what waited), and
    ends the session only then. So "unavailable" means "not known to be done": callers either
    retry what is idempotent (intake dedupes; a pause's audit record is appended once per id,
    ``AuditLog.append_once``) or retry nothing (an audit row is then written once, or not at
    all).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    expired = False
    try:
        with translate():
            async with pool.acquire(timeout=timeout_s) as conn:

                def expire() -> None:
                    nonlocal expired
                    expired = True
                    conn.terminate()

                timer = loop.call_at(deadline, expire)
                try:
                    yield conn
                finally:
                    timer.cancel()
    except Exception as exc:
        if expired or isinstance(exc.__cause__, TimeoutError):
            raise StoreUnavailable(f"PostgreSQL did not answer within {timeout_s:g}s") from exc
        raise


class BoundedPool:
    """``pool`` (an asyncpg pool) with every call bounded by ``timeout_s`` seconds
    (``bounded_connection``): StoreUnavailable at the deadline. ``acquire(timeout=t)`` takes
    the shorter of the two. Anything else (``close``, ``get_size``) is the pool's own."""

    def __init__(self, pool: Any, timeout_s: float) -> None:
        self._pool = pool
        self.timeout_s = timeout_s

    def acquire(
        self, *, timeout: float | None = None
    ) -> contextlib.AbstractAsyncContextManager[Any]:
        bound = self.timeout_s if timeout is None else min(timeout, self.timeout_s)
        return bounded_connection(self._pool, bound)

    async def fetch(self, query: str, *args: Any, **options: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetch(query, *args, **options)

    async def fetchrow(self, query: str, *args: Any, **options: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchrow(query, *args, **options)

    async def fetchval(self, query: str, *args: Any, **options: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchval(query, *args, **options)

    async def fetchmany(self, query: str, args: Any, **options: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchmany(query, args, **options)

    async def execute(self, query: str, *args: Any, **options: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.execute(query, *args, **options)

    async def executemany(self, query: str, args: Any, **options: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.executemany(query, args, **options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)
