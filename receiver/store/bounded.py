"""Store calls that answer within a deadline, whatever PostgreSQL does.

``bounded_connection(pool, timeout_s)`` is a pool connection for at most ``timeout_s`` seconds;
``BoundedPool`` is an asyncpg pool whose every call (``acquire``, ``fetch``, ``execute``, ...)
is one. ``Database.bounded`` puts one under a view of the store, so every method of the view
answers in time without a deadline of its own: the HTTP routes read and write through such a
view (``receiver.service``), which is how a frozen store is a 503 on every route within the
same bound, and a pause's audit row is given up in time (``receiver.audit_outbox``).

``HeldConnection`` is the same bound for a writer that makes many calls in a row (intake's
batch writer): it keeps its pool connection from one call to the next, and gives it back when
the writer is done or a call fails.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from receiver.store.errors import StoreUnavailable, translate

__all__ = ["BoundedPool", "HeldConnection", "bounded_connection"]


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
    with _cut_off(timeout_s) as arm:
        async with pool.acquire(timeout=timeout_s) as conn:
            timer = arm(conn)
            try:
                yield conn
            finally:
                timer.cancel()


@contextlib.contextmanager
def _cut_off(timeout_s: float) -> Iterator[Callable[[Any], asyncio.TimerHandle]]:
    """The deadline ``bounded_connection`` and ``HeldConnection.within`` share, ``timeout_s``
    seconds from now: yields ``arm(conn)``, which terminates ``conn`` at the deadline (the
    caller cancels the timer it returns when its call is done). Inside it, connection
    failures are StoreUnavailable (``translate``), and so is any failure after the deadline
    struck or of an acquire that timed out, saying the server did not answer in time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    expired = False

    def arm(conn: Any) -> asyncio.TimerHandle:
        def expire() -> None:
            nonlocal expired
            expired = True
            conn.terminate()

        return loop.call_at(deadline, expire)

    try:
        with translate():
            yield arm
    except Exception as exc:
        if expired or isinstance(exc.__cause__, TimeoutError):
            raise StoreUnavailable(f"PostgreSQL did not answer within {timeout_s:g}s") from exc
        raise


class HeldConnection:
    """One pool connection a writer keeps between its calls (``within``), each call bounded
    as ``bounded_connection``'s, until ``release``.

    Taking a connection from asyncpg's pool for each call, and giving it back, was 5 % of the
    service's main thread in the unmatched intake loop, where a call writes a few
    notifications (issue 12, stop 38): a task for the acquire's timeout, another for the
    shielded release, a proxy. Here a call on the kept connection costs a timer.

    A call that fails in any way, or runs out of time (the connection is then terminated),
    gives the connection back to the pool at once, which cleans it up as it always did (a
    cancelled statement waited for, a transaction rolled back, a closed one replaced); the
    next call takes a fresh one. So does a call that finds the kept connection closed (the
    server ended the session while the writer was between calls). Errors are those of
    ``bounded_connection``. One call at a time: a call made while another is in progress uses
    a connection of its own, as ``bounded_connection``. ``keep=False``: every call gives its
    connection back (a store whose pool sets session state at each acquire: a simulated
    clock). The writer must ``release`` when it is done, or ``release_later``:
    ``Pool.close`` waits for the connection to be given back."""

    def __init__(self, pool: Any, *, keep: bool = True) -> None:
        self._pool = pool
        self._keep = keep
        self._conn: Any = None
        self._busy = False
        self._idle: asyncio.TimerHandle | None = None
        self._releasing: set[asyncio.Future[None]] = set()

    async def release(self) -> None:
        """Give the kept connection, if any, back to the pool."""
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._pool.release(conn)

    def release_later(self, after_s: float) -> None:
        """Give the kept connection back in ``after_s`` seconds, unless a call takes it up
        again before (``within``); returns at once. For a writer with nothing to write now
        that may well have more in a moment, and that must not await on its way out."""
        if self._conn is None:
            return
        if self._idle is not None:
            self._idle.cancel()
        self._idle = asyncio.get_running_loop().call_later(after_s, self._release_idle)

    def _release_idle(self) -> None:
        self._idle = None
        if self._busy or self._conn is None:
            return
        # Taken from the writer now, not in the task: a call may start before the task runs
        # (both ready in the loop's next pass), and would take up the connection the task
        # then hands back to the pool under its statement ("connection was closed in the
        # middle of operation", a 503 for its whole batch).
        conn, self._conn = self._conn, None
        releasing = asyncio.ensure_future(self._pool.release(conn))
        self._releasing.add(releasing)
        releasing.add_done_callback(self._released)

    def _released(self, releasing: asyncio.Future[None]) -> None:
        self._releasing.discard(releasing)
        if not releasing.cancelled():
            # Retrieved so that asyncio does not log it: the pool closed meanwhile (the
            # connection went with it), and nobody is left to tell.
            releasing.exception()

    @contextlib.asynccontextmanager
    async def within(self, timeout_s: float) -> AsyncIterator[Any]:
        """The kept connection (one taken from the pool when there is none, or it is closed)
        for at most ``timeout_s`` seconds, taking one included: StoreUnavailable at the
        deadline, as ``bounded_connection``."""
        if self._busy or not self._keep:
            async with bounded_connection(self._pool, timeout_s) as conn:
                yield conn
            return
        self._busy = True
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        try:
            with _cut_off(timeout_s) as arm:
                if self._conn is not None and _gone(self._conn):
                    await self.release()
                if self._conn is None:
                    self._conn = await self._pool.acquire(timeout=timeout_s)
                timer = arm(self._conn)
                try:
                    yield self._conn
                except BaseException:
                    await self.release()
                    raise
                finally:
                    timer.cancel()
        finally:
            self._busy = False


def _gone(conn: Any) -> bool:
    """Whether a kept pool connection can no longer be used: closed, or handed back already.
    asyncpg gives a pool connection that closed (the server ended its session) back to the
    pool by itself and detaches its proxy, whose every method then raises InterfaceError
    ("released back to the pool"), ``is_closed`` included: ``_con`` is the proxy's connection,
    None once detached."""
    return getattr(conn, "_con", conn) is None or bool(conn.is_closed())


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
