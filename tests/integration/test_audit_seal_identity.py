"""The audit seal of migration 0029 (one INSERT for a transaction's rows) and of 0040 (the data
queued once) make the chain the seal of 0012/0015 made, byte for byte: the same ids in the same
order, the same times, links and hashes, the same head, for rows of several statements,
savepoints and seals made before the commit, whether the rows were queued as this version
queues them or, during a rolling update, some of them as a replica before 0040 did (the data
twice); two commits at once still chain one after the other; a rollback leaves nothing.

Both seals read the time through ``clock_timestamp()`` unqualified: a stand-in in ``public``,
first on the search path, makes it a counter, so the two databases get the same times."""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import pytest

from receiver.store import Store
from receiver.store.audit import append_in_tx, audit_insert_sql
from receiver.store.canonical import audit_data
from receiver.store.migrate import load_migrations, migrate
from tests.support.old_audit_queue import old_append_in_tx, old_audit_insert_sql
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.postgres

OLD_SEAL = 28  # the last migration with the per-row seal

CLOCK = """
CREATE SEQUENCE public.fake_clock;
CREATE FUNCTION public.clock_timestamp() RETURNS timestamptz LANGUAGE sql AS
$$ SELECT '2026-12-01 00:00:00+00'::timestamptz + nextval('public.fake_clock') * interval '7 ms' $$;
"""

RUN = "3f2a0c1e-8d4b-4e5f-9a6b-7c8d9e0f1a2b"

# A run.created row as a storm writes it is over a kB of JSON: its queue row (the data twice)
# was over the TOAST threshold. Awkward text too.
BIG = {
    "alert": {"labels": {f"label_{i}": f'value {i} é 🚒 "q" \\' for i in range(30)}},
    "steps": [
        {"idx": i, "message": "not run: the max_runs guard refused the run"} for i in range(8)
    ],
    "n": [1.5, 1e16, -0.0, None, True],
}


def _event_sql(insert_sql: Callable[..., str]) -> str:
    """The rows of one event, queued in one statement as create_run does
    (receiver/store/run_creation.py), by ``insert_sql`` (``audit_insert_sql`` or its old form)."""
    return "WITH created AS (SELECT $1::uuid AS id, $2::text AS fingerprint) " + insert_sql(
        """(SELECT created.id, created.fingerprint, a.idx, a.kind, a.data
            FROM created, (VALUES (-1, 'run.created', $3::text), (2147483647, 'run.refused', $4),
                                  (2147483650, 'run.announced', $5)) AS a(idx, kind, data)
           ) AS rows""",
        kind="rows.kind",
        run_id="rows.id",
        fingerprint="rows.fingerprint",
        data="rows.data",
        order_by="rows.idx",
    )


EVENT_SQL = _event_sql(audit_insert_sql)
OLD_EVENT_SQL = _event_sql(old_audit_insert_sql)

# How a workload queues its rows: for each row or event, in turn, (append_in_tx, the event
# statement).
Queue = Iterator[tuple[Callable[..., Awaitable[None]], str]]


def _new_form() -> Queue:
    return itertools.repeat((append_in_tx, EVENT_SQL))


def _old_form() -> Queue:
    return itertools.repeat((old_append_in_tx, OLD_EVENT_SQL))


def _in_turn() -> Queue:
    """A rolling update: every other row or event queued the old way, in the same transactions
    as the new ones."""
    return itertools.cycle(((append_in_tx, EVENT_SQL), (old_append_in_tx, OLD_EVENT_SQL)))


async def _append(conn: asyncpg.Connection, queue: Queue, *args: Any) -> None:
    await next(queue)[0](conn, *args)


async def _event(conn: asyncpg.Connection, i: int, queue: Queue | None = None) -> None:
    await conn.execute(
        next(queue or _new_form())[1],
        RUN,
        f"fp-{i}\t\u2028",
        audit_data(BIG | {"event_id": i}),
        audit_data({"guard": "max_runs", "i": i}),
        audit_data({"event": "refused", "detail": f"digest {i}"}),
    )


async def _workload(conn: asyncpg.Connection, queue: Queue) -> None:
    """Several transactions of several statements each, with a seal before the commit, a
    savepoint rolled back, a seal rolled back with its savepoint, and a transaction rolled
    back after sealing."""
    async with conn.transaction():
        await _append(conn, queue, "first", None, None, {"text": 'say "hi"\n'})
        await _event(conn, 1, queue)
        await _append(conn, queue, "between", RUN, "fp", {"x": 1})
        await _event(conn, 2, queue)
    async with conn.transaction():
        await _event(conn, 3, queue)
        # Sealed now; the rows appended after it are sealed at the commit.
        await conn.execute("SET CONSTRAINTS audit_pending_seal IMMEDIATE")
        await conn.execute("SET CONSTRAINTS audit_pending_seal DEFERRED")
        await _append(conn, queue, "after-immediate", None, None, {"y": 2})
        await _event(conn, 4, queue)
    async with conn.transaction():
        await _append(conn, queue, "kept", None, None, {})
        with_savepoint = conn.transaction()
        await with_savepoint.start()
        await _event(conn, 5, queue)
        await with_savepoint.rollback()
        await _append(conn, queue, "kept-too", None, None, {})
    async with conn.transaction():
        await _event(conn, 6, queue)
        sealing = conn.transaction()
        await sealing.start()
        # The seal runs inside the savepoint, and is undone with it: sealed again at commit.
        await conn.execute("SET CONSTRAINTS audit_pending_seal IMMEDIATE")
        await sealing.rollback()
        await _append(conn, queue, "after-undone-seal", None, None, {"z": 3})
    tx = conn.transaction()
    await tx.start()
    await _event(conn, 7, queue)
    await conn.execute("SET CONSTRAINTS audit_pending_seal IMMEDIATE")
    await tx.rollback()
    async with conn.transaction():
        await _event(conn, 8, queue)


async def _chain(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT id, at, kind, run_id::text AS run_id, fingerprint, data::text AS data,
                  prev_hash, hash FROM audit_log ORDER BY id"""
    )
    return [dict(r) for r in rows]


async def _state(conn: asyncpg.Connection) -> dict[str, Any]:
    return {
        "head": dict(await conn.fetchrow("SELECT last_id, last_hash FROM audit_head")),
        "pending": await conn.fetchval("SELECT count(*) FROM audit_pending"),
        "next_id": await conn.fetchval("SELECT nextval('audit_log_id_seq')"),
    }


@pytest.fixture
async def old_seal_url(empty_database_url: str) -> str:
    """A database migrated up to the last migration with the old seal."""
    conn = await asyncpg.connect(empty_database_url)
    try:
        await migrate(conn, load_migrations()[:OLD_SEAL])
    finally:
        await conn.close()
    return empty_database_url


async def _with_fixed_clock(
    url: str, work: Callable[[asyncpg.Connection], Awaitable[None]]
) -> None:
    conn = await asyncpg.connect(url, server_settings={"search_path": "public, pg_catalog"})
    try:
        await conn.execute(CLOCK)
        await work(conn)
    finally:
        await conn.close()


@pytest.fixture
async def second_url(pg_server: PostgresServer, pg_template: str) -> AsyncIterator[str]:
    """Another new database, migrated to the end (cloned from the session's template)."""
    name = f"remediator_test_{os.urandom(6).hex()}"
    admin = await asyncpg.connect(pg_server.url())
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
        yield pg_server.url(name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_the_chain_is_the_old_seals_byte_for_byte(
    old_seal_url: str, database_url: str, second_url: str
) -> None:
    chains, states = [], []
    queues = ((old_seal_url, _old_form()), (database_url, _new_form()), (second_url, _in_turn()))
    for url, queue in queues:
        await _with_fixed_clock(url, functools.partial(_workload, queue=queue))
        conn = await asyncpg.connect(url)
        try:
            chains.append(await _chain(conn))
            states.append(await _state(conn))
        finally:
            await conn.close()
        store = await Store.connect(url, min_size=1, max_size=2)
        try:
            check = await store.verify_audit()
        finally:
            await store.close()
        assert check.ok, check
    old, new, mixed = chains
    kinds = [r["kind"] for r in new]
    assert kinds == (
        ["first", "run.created", "run.refused", "run.announced", "between"]
        + ["run.created", "run.refused", "run.announced"] * 2
        + ["after-immediate", "run.created", "run.refused", "run.announced"]
        + ["kept", "kept-too", "run.created", "run.refused", "run.announced"]
        + ["after-undone-seal", "run.created", "run.refused", "run.announced"]
    )
    assert json.loads(new[1]["data"])["event_id"] == 1
    assert new == old
    assert mixed == old
    assert states[1] == states[0]
    assert states[2] == states[0]
    assert states[1]["pending"] == 0
    assert states[1]["head"] == {"last_id": new[-1]["id"], "last_hash": new[-1]["hash"]}


async def _waiting_on_a_lock(conn: asyncpg.Connection, pids: list[int]) -> None:
    while await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1) AND wait_event_type = 'Lock'",
        pids,
    ) < len(pids):
        await asyncio.sleep(0)  # yield to the commits; the condition is the server's


async def test_two_commits_at_once_chain_one_after_the_other(
    store: Store, database_url: str
) -> None:
    holder, first, second = [await asyncpg.connect(database_url) for _ in range(3)]
    try:
        txs = [c.transaction() for c in (first, second)]
        for k, (conn, tx) in enumerate(zip((first, second), txs, strict=True)):
            await tx.start()
            for i in range(3):
                await append_in_tx(conn, f"tx{k}", None, None, {"i": i})
                await _event(conn, 10 * k + i)
        pids = [await c.fetchval("SELECT pg_backend_pid()") for c in (first, second)]
        # Both commits wait on the head, held here, and seal when it is let go.
        async with holder.transaction():
            await holder.execute("SELECT 1 FROM audit_head FOR UPDATE")
            commits = asyncio.gather(*(tx.commit() for tx in txs))
            await _waiting_on_a_lock(holder, pids)
        await commits
        rows = await _chain(holder)
    finally:
        for conn in (holder, first, second):
            await conn.close()
    # Each transaction's twelve rows in one run, in the order appended; ids without a gap.
    assert len(rows) == 24
    assert [r["id"] for r in rows] == list(range(rows[0]["id"], rows[0]["id"] + 24))
    for block in (rows[:12], rows[12:]):
        tagged = [r for r in block if r["kind"].startswith("tx")]
        assert len({r["kind"] for r in tagged}) == 1, [r["kind"] for r in rows]
        assert [json.loads(r["data"])["i"] for r in tagged] == [0, 1, 2]
    assert all(a["at"] <= b["at"] for a, b in itertools.pairwise(rows))
    check = await store.verify_audit()
    assert check.ok, check
    assert check.checked == 24


async def test_a_rollback_after_a_seal_leaves_nothing(store: Store, database_url: str) -> None:
    await store.append_audit("before")
    conn = await asyncpg.connect(database_url)
    try:
        head = await conn.fetchrow("SELECT last_id, last_hash FROM audit_head")
        tx = conn.transaction()
        await tx.start()
        await _event(conn, 1)
        await conn.execute("SET CONSTRAINTS audit_pending_seal IMMEDIATE")
        await _event(conn, 2)
        await tx.rollback()
        assert await conn.fetchval("SELECT count(*) FROM audit_pending") == 0
        assert await conn.fetchrow("SELECT last_id, last_hash FROM audit_head") == head
        # The next transaction on the same session seals all its rows.
        async with conn.transaction():
            await _event(conn, 3)
        kinds = [r["kind"] for r in await conn.fetch("SELECT kind FROM audit_log ORDER BY id")]
        assert await conn.fetchval("SELECT count(*) FROM audit_pending") == 0
    finally:
        await conn.close()
    assert kinds == ["before", "run.created", "run.refused", "run.announced"]
    check = await store.verify_audit()
    assert check.ok, check
