"""No connection comes out of the store's pool inside a transaction (``receiver.store.settled``).

A statement asyncpg has not prepared on its connection yet is sent in two steps (Parse and
Describe, then Bind, Execute and Sync); cut off between the two, by a cancellation or by
arguments that fail to encode, it left PostgreSQL in the implicit transaction the first step
opened while asyncpg believed the connection idle. The next caller's ``BEGIN ISOLATION LEVEL
REPEATABLE READ`` then failed with "SET TRANSACTION ISOLATION LEVEL must be called before any
query": a 500 on ``GET /api/v1/report`` (seen once on ``remediator serve``).

Each check is what the report's read does: a repeatable-read, read-only transaction
(``Database._tx``) on the pool's one connection.
"""

from __future__ import annotations

import asyncio
import itertools
import select
from collections.abc import AsyncIterator

import asyncpg
import pytest

from receiver.store.database import Database
from receiver.store.errors import StoreUnavailable
from receiver.store.settled import settle

pytestmark = pytest.mark.postgres

_texts = itertools.count()


def _new_text(arguments: str = "") -> str:
    """A statement text the connection has never prepared: asyncpg sends it in two steps."""
    return f"SELECT {next(_texts)}{arguments}"


@pytest.fixture(params=[False, True], ids=["statement-cache", "transaction-pooled"])
async def database(request: pytest.FixtureRequest, database_url: str) -> AsyncIterator[Database]:
    # One connection, so the check is handed the connection the statement was cut off on.
    # Without the statement cache (behind a transaction pooler) every statement is sent in
    # two steps, not only the first of its text.
    db = await Database.connect(
        database_url,
        min_size=1,
        max_size=1,
        run_migrations=False,
        transaction_pooled=request.param,
    )
    try:
        yield db
    finally:
        await db.close()


async def _snapshot_read(db: Database) -> None:
    async with db._tx(isolation="repeatable_read", readonly=True) as conn:
        assert await conn.fetchval("SELECT 1") == 1


async def test_arguments_that_do_not_encode_leave_no_transaction_open(database: Database) -> None:
    with pytest.raises(asyncpg.DataError):
        # asyncpg prepares the text, then fails to encode "x" as an int before the Sync.
        await database._pool.fetchval(_new_text(" + $1::int"), "x")
    await _snapshot_read(database)


async def test_a_statement_cancelled_at_any_turn_leaves_no_transaction_open(
    database: Database,
) -> None:
    # The statement is cancelled k turns of the event loop after the answer to its first step
    # is waiting on the socket, for every k until the statement ends first: the cut lands
    # before that answer is read, between reading it and sending the second step (the turn
    # a disconnecting client or a deadline hit in serve), and after the statement ended.
    for turns in itertools.count():
        async with database._pool.acquire() as conn:
            sock = conn._con._transport.get_extra_info("socket")
            statement = asyncio.ensure_future(conn.fetchval(_new_text()))
            await asyncio.sleep(0)  # the statement's task sends its first step
            # Blocks the loop until PostgreSQL's answer can be read, so that the turn it is
            # read in, and every turn after, is known.
            assert select.select([sock], [], [], 30)[0], "PostgreSQL did not answer"
            for _ in range(turns):
                await asyncio.sleep(0)  # one turn of the event loop
            finished_first = statement.done()
            statement.cancel()
            await asyncio.wait({statement})
        try:
            await _snapshot_read(database)
        except Exception as exc:
            pytest.fail(f"cancelled after {turns} turns, the next transaction failed: {exc!r}")
        if finished_first:
            break
        assert turns < 1000, "the statement never ended"


async def test_a_connection_handed_out_inside_a_transaction_is_unavailable_and_closed(
    database: Database,
) -> None:
    # A Parse without a Sync that nothing marked: asyncpg's own prepare, past the pool's
    # connection class, stands for any other way a connection might come back so.
    async with database._pool.acquire() as conn:
        await asyncpg.Connection.prepare(conn._con, _new_text())
        pid = conn.get_server_pid()
    with pytest.raises(StoreUnavailable, match="inside a transaction"):
        await _snapshot_read(database)
    # That connection is gone; the pool's next one is whole.
    async with database._pool.acquire() as conn:
        assert conn.get_server_pid() != pid
    await _snapshot_read(database)


async def test_a_statement_the_server_refused_is_not_rolled_back_again(
    database: Database,
) -> None:
    # PostgreSQL's error answer ends the statement and asyncpg syncs after it, so no
    # transaction is left: a ROLLBACK at release drew "WARNING: there is no transaction in
    # progress" in the server's log (and to the client) after every failed statement.
    said: list[str] = []
    async with database._pool.acquire() as conn:
        raw = conn._con

        def heard(_: object, message: asyncpg.PostgresLogMessage) -> None:
            said.append(f"{message.severity}: {message.message}")

        raw.add_log_listener(heard)
        try:
            # Refused when it runs (after both steps), and when it is parsed (the first).
            with pytest.raises(asyncpg.DivisionByZeroError):
                await conn.fetchval(_new_text(" / $1::int"), 0)
            await settle(raw)  # the pool's reset hook, as the release runs it
            with pytest.raises(asyncpg.PostgresSyntaxError):
                await conn.fetchval(_new_text(" FROM FROM $1::int"), 0)
            await settle(raw)
            assert await conn.fetchval("SELECT 1") == 1  # every notice before this one is read
        finally:
            raw.remove_log_listener(heard)
    assert not [s for s in said if "no transaction in progress" in s], said
    await _snapshot_read(database)
