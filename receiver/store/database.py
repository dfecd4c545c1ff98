"""The base every store mixin builds on: one asyncpg pool and how a call gets a connection.

``Database.connect`` opens the pool and brings the schema up to date; ``_tx`` hands out a
connection inside a transaction. Every call translates connection failures into
``StoreUnavailable`` (see errors.py). A connection goes back to the pool outside any
transaction, without asyncpg's session reset (settled.py).

The store's SQL reads the time from ``remediator_now()`` (migration 0010): the transaction's
``now()``, unless a session set ``remediator.clock``. ``connect(clock=...)`` sets it on every
connection the pool hands out, which is how a rule test plays a timeline on a simulated clock;
the service passes no clock.

Behind a transaction pooler (PgBouncer ``pool_mode = transaction``, ``connect(transaction_pooled=
True)``) each transaction may run on another server connection, so nothing the store does may
outlive a transaction: asyncpg's prepared-statement cache is off (``connect_options``), the
migration lock is a transaction lock (migrate.py), the claim's planner settings are its
function's SET clauses (migration 0018: in force while it runs), and the worker's LISTEN uses
a connection of its own, direct to PostgreSQL (``database.direct_url``).
The audit reads (``verify_audit``, ``export_audit``) stream through server-side cursors, which
asyncpg prepares as named statements even without the cache; behind a transaction pooler such
a statement stays on the server connection, so the audit commands use the direct connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any, Self

import asyncpg

from receiver.store.bounded import BoundedPool, HeldConnection, bounded_connection
from receiver.store.errors import StoreUnavailable, translate
from receiver.store.group import GroupCommit
from receiver.store.history_sql import HISTORY_CALL, batch_arguments
from receiver.store.migrate import applied_versions, migrate
from receiver.store.pool_capacity import check_capacity, connections_per_process
from receiver.store.pooler_probe import probe_pooler
from receiver.store.session_name import store_session_settings
from receiver.store.settled import SettledConnection, settle
from receiver.store.stored_times import register_times

__all__ = ["WORK_CHANNEL", "Database", "connect_options"]

# The one channel the workers LISTEN on: intake NOTIFYs it for new alert events, and the job
# queue for jobs that are due, so one listening connection wakes the worker for all its work.
WORK_CHANNEL = "remediator_work"


def connect_options(*, transaction_pooled: bool) -> dict[str, Any]:
    """Keyword arguments for ``asyncpg.connect`` or ``create_pool``: none for a direct
    connection; behind a transaction pooler, no prepared-statement cache.

    asyncpg names and caches a prepared statement per query on its connection; a transaction
    pooler runs the next transaction on another server connection, where the statement does not
    exist ("prepared statement __asyncpg_stmt_2__ does not exist"), or hands the one it made to
    another client, whose own statement of that name then clashes ("already exists"). PgBouncer
    1.18 does not track prepared statements. Without the cache asyncpg uses the unnamed
    statement, which costs a round trip more per statement: it is described (Parse, Describe,
    Flush: the types to encode the arguments with) and then parsed again with its execution."""
    return {"statement_cache_size": 0} if transaction_pooled else {}


Clock = Callable[[], datetime]


async def _init(conn: Any) -> None:
    """Pool ``init`` hook: timestamptz read through ``stored_times`` (a time an edit put
    outside Python's years is read, marked, rather than failing the read)."""
    await register_times(conn)


async def _init_warm(conn: Any) -> None:
    """Pool ``init`` hook of ``connect(warm=True)``: ``_init``, then ``_warm``."""
    await _init(conn)
    await _warm(conn)


async def _warm(conn: Any) -> None:
    """(``connect(warm=True)``, ``_init_warm``): make the history read's plan on each new
    connection, before an alert needs it. A connection's first history read compiles
    engine_histories and makes its one generic plan (``HISTORY_PLAN_SETTINGS``): 20 to 40 ms on
    a 2-core host against 1 ms after, most of what made the service's first alerts after a
    start 3 to 4 times slower than those after them (the storm round, stop 38). A read of no
    episode: it returns nothing. Before the first migration the function does not exist yet:
    those connections make the plan on their first read, as before. Looked up first rather
    than called and its error ignored: the server logs every failed statement as an ERROR,
    which an operator reading a fresh store's first start would take for a fault."""
    if await conn.fetchval(_HISTORY_DEFINED):
        await conn.fetch(HISTORY_CALL, *batch_arguments([]))


# By name, whatever its arguments (to_regproc says NULL for an overloaded name too).
_HISTORY_DEFINED = """SELECT EXISTS (SELECT FROM pg_proc
                   WHERE proname = 'engine_histories' AND pg_function_is_visible(oid))"""


def _clock_setup(clock: Clock) -> Callable[[Any], Any]:
    """Pool ``setup`` hook: the session's ``remediator.clock`` is ``clock()`` at every acquire,
    so each statement of a call sees the simulated time of the moment it began."""

    async def setup(conn: Any) -> None:
        await conn.execute("SELECT set_config('remediator.clock', $1, false)", clock().isoformat())

    return setup


class Database:
    """An asyncpg pool and the DSN it was opened with. Create with ``await connect(dsn)``."""

    def __init__(self, pool: Any, dsn: str) -> None:
        self._pool = pool
        self.dsn = dsn
        # Whether a writer may keep a connection between its calls (``held_connection``): not
        # when the pool sets session state at each acquire (a simulated clock), nor for a
        # bounded view, whose pool is no asyncpg pool.
        self._keeps_connections = True
        # The worker's runs, several to a transaction while the worker is busy (group.py).
        self._grouped = GroupCommit(pool)

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
        clock: Clock | None = None,
        transaction_pooled: bool = False,
        warm: bool = False,
        check_pooler: bool = False,
        processes: int = 1,
        listen_through: bool = True,
    ) -> Self:
        """Open the pool and bring the schema up to date. StoreUnavailable if unreachable.

        ``clock`` (an aware datetime each call) replaces the database's clock in the store's
        SQL, for a simulation (``remediator test``); it costs a round trip per acquire.
        ``warm``: each connection the pool opens makes the history read's plan at once
        (``_warm``), so that its first alert does not (``serve``; pointless behind a transaction
        pooler, where the next transaction may be on another server connection).
        ``transaction_pooled``: ``dsn`` is a transaction pooler (``connect_options``); a
        ``clock`` is session state, which a pooler does not keep: ValueError.
        ``check_pooler`` (not ``transaction_pooled``, ``serve``): before the pool opens, when
        ``dsn`` is a pooler's, open at once every connection ``processes`` processes of this
        pool hold at most (``max_size``, and the worker's LISTEN when ``listen_through``: it
        connects to ``dsn`` too) and raise PoolTooSmall when some of them get no server
        connection (a session pooler's pool used up, pool_capacity.py); then, before
        migrating, look for a transaction pooler's sign (pooler_probe.py) and raise
        PoolerNotNamed when it shows."""
        if transaction_pooled and clock is not None:
            raise ValueError(
                "a simulated clock is session state: connect directly, not through a pooler"
            )
        with translate():
            if check_pooler and not transaction_pooled:
                await check_capacity(
                    dsn,
                    per_process=connections_per_process(max_size, listen_through=listen_through),
                    processes=processes,
                    connect_timeout_s=connect_timeout_s,
                )
            pool = await asyncpg.create_pool(
                dsn,
                server_settings=store_session_settings(dsn),
                min_size=min_size,
                max_size=max_size,
                timeout=connect_timeout_s,
                command_timeout=command_timeout_s,
                # No session reset, only a rollback after an interrupted statement (settled.py).
                connection_class=SettledConnection,
                reset=settle,
                setup=None if clock is None else _clock_setup(clock),
                init=_init_warm if warm and not transaction_pooled else _init,
                **connect_options(transaction_pooled=transaction_pooled),
            )
        store = cls(pool, dsn)
        store._keeps_connections = clock is None
        try:
            with translate():
                if check_pooler and not transaction_pooled:
                    await probe_pooler(pool)
                if run_migrations:
                    async with pool.acquire() as conn:
                        await migrate(conn)
        except BaseException:
            await pool.close()
            raise
        return store

    async def close(self, timeout_s: float | None = None) -> bool:
        """Close the pool, waiting for the connections in use to be released; True once done.

        ``timeout_s``: at most that many seconds, then the pool is terminated (every connection
        aborted, a statement still waiting on one cut off) and False says so. A connection
        may never be released: a statement cancelled on it waits for the server to
        acknowledge the cancellation (asyncpg), which behind PgBouncer a server that went away
        never does, nor a frozen one."""
        if timeout_s is None:
            await self._pool.close()
            return True
        closing = asyncio.ensure_future(self._pool.close())
        try:
            await asyncio.wait({closing}, timeout=timeout_s)
        finally:
            if not closing.done():
                # terminate() aborts what the graceful close waits on; the cancellation ends it
                # (asyncpg's close terminates when cancelled, too), whenever it next runs.
                self._pool.terminate()
                closing.cancel()
        if not closing.done():
            return False
        closing.result()
        return True

    async def schema_versions(self) -> list[int]:
        """The migrations applied to this database, ascending; empty when its schema was never
        created (``migrate`` or ``serve`` has not run on it). StoreUnavailable."""
        with translate():
            return await applied_versions(self._pool)

    async def ping(self, timeout_s: float = 5.0) -> None:
        """Round-trip to the server; raises StoreUnavailable when it does not answer within
        ``timeout_s`` seconds (a server that is down, or one that is frozen)."""
        async with self._within(timeout_s) as conn:
            await conn.fetchval("SELECT 1")

    def bounded(self, timeout_s: float) -> Self:
        """This store with every call bounded by ``timeout_s`` seconds, waiting for a
        connection included: StoreUnavailable at the deadline (``bounded.BoundedPool``). The
        same pool (closing the view closes it); the original is unchanged. For callers that
        must answer in time whatever PostgreSQL does: the HTTP routes."""
        view = copy.copy(self)
        view._pool = BoundedPool(self._pool, timeout_s)
        view._keeps_connections = False
        view._grouped = GroupCommit(view._pool)
        return view

    def _within(self, timeout_s: float) -> contextlib.AbstractAsyncContextManager[Any]:
        """A pool connection for at most ``timeout_s`` seconds (``bounded_connection``)."""
        return bounded_connection(self._pool, timeout_s)

    def held_connection(self) -> HeldConnection:
        """A connection for a writer to keep between its calls (``bounded.HeldConnection``),
        for the store methods that take one (``insert_event_groups``); the writer releases it
        when done, before the store closes."""
        return HeldConnection(self._pool, keep=self._keeps_connections)

    @contextlib.asynccontextmanager
    async def _tx(self, **options: Any) -> AsyncIterator[Any]:
        """A connection in a transaction, with connection failures as StoreUnavailable.

        A BEGIN with options that PostgreSQL refuses as "already in a transaction" (SQLSTATE
        25001) means the pool handed out a connection inside a transaction asyncpg did not
        know of (settled.py): that connection is closed and the call is StoreUnavailable (a
        503, to retry), not a bug in the caller."""
        with translate():
            async with self._pool.acquire() as conn:
                began = False
                try:
                    async with conn.transaction(**options):
                        began = True
                        yield conn
                except asyncpg.ActiveSQLTransactionError as exc:
                    if began:
                        raise
                    conn.terminate()
                    raise StoreUnavailable(
                        "a pool connection was handed out inside a transaction; it was closed"
                    ) from exc

    async def notify(self, channel: str, payload: str) -> None:
        """NOTIFY ``channel`` with ``payload`` through the pool, committed (the worker's check
        that its LISTEN connection hears what the store sends). StoreUnavailable."""
        async with self._tx() as conn:
            await conn.execute("SELECT pg_notify($1, $2)", channel, payload)

    async def server_now(self) -> datetime:
        """The store's clock (``remediator_now()``), which leases and deadlines are measured
        against."""
        with translate():
            value: datetime = await self._pool.fetchval("SELECT remediator_now()")
        return value
