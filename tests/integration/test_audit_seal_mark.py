"""A session's value of the seal's mark chains every row all the same (migration 0032), and
``audit verify`` fails on rows committed unchained.

Since 0029 the seal marks the rows it sealed in the setting ``remediator.audit_sealed_to``,
local to its transaction. A value of that setting for the session (SET, ALTER ROLE ... SET,
PGOPTIONS), or one an earlier client left on a server connection of PgBouncer in transaction
mode, was read as the mark too: the rows under it committed into audit_pending unchained, and
verify said the chain was intact (verify-stop30). The mark now names its transaction."""

from __future__ import annotations

import asyncpg
import pytest

from receiver.store import Store
from receiver.store.audit import append_in_tx
from receiver.store.database import connect_options
from tests.support import pgbouncer as pgb
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.postgres

# Over any row number: with 0029's mark, every row was taken for sealed.
BEYOND = "9223372036854775807"


async def test_a_session_value_of_the_mark_leaves_no_row_unchained(
    store: Store, database_url: str
) -> None:
    await store.append_audit("before")
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f"SET remediator.audit_sealed_to = '{BEYOND}'")
        async with conn.transaction():
            await append_in_tx(conn, "kept", None, None, {"x": 1})
        # Even a value shaped like the mark, naming another transaction.
        await conn.execute(f"SET remediator.audit_sealed_to = '1:{BEYOND}'")
        async with conn.transaction():
            await append_in_tx(conn, "kept too", None, None, {"x": 2})
        pending = await conn.fetchval("SELECT count(*) FROM audit_pending")
        kinds = [r["kind"] for r in await conn.fetch("SELECT kind FROM audit_log ORDER BY id")]
    finally:
        await conn.close()
    assert (kinds, pending) == (["before", "kept", "kept too"], 0)
    check = await store.verify_audit()
    assert check.ok, check
    assert check.checked == 3


async def test_a_value_left_on_a_pooled_server_connection_leaves_no_row_unchained(
    pg_server: PostgresServer, database_url: str
) -> None:
    bouncer = pgb.start(pg_server, pool_size=1)
    try:
        url = bouncer.through(database_url)
        other = await asyncpg.connect(url, **connect_options(transaction_pooled=True))
        # Another client of the same role through the same pooler sets it for its session,
        # outside a transaction: PgBouncer keeps it on the one server connection.
        await other.execute(f"SET remediator.audit_sealed_to = '{BEYOND}'")
        await other.close()
        pooled = await Store.connect(url, min_size=1, max_size=2, transaction_pooled=True)
        try:
            for i in range(3):
                await pooled.append_audit("service-row", data={"i": i})
        finally:
            await pooled.close()
    finally:
        bouncer.stop()
    conn = await asyncpg.connect(database_url)
    try:
        logged = await conn.fetchval("SELECT count(*) FROM audit_log WHERE kind = 'service-row'")
        pending = await conn.fetchval("SELECT count(*) FROM audit_pending")
    finally:
        await conn.close()
    assert (logged, pending) == (3, 0)


async def test_verify_fails_on_a_row_committed_unchained(store: Store, database_url: str) -> None:
    await store.append_audit("chained")
    conn = await asyncpg.connect(database_url)
    try:
        # However it came about (the fault above, a trigger disabled by hand): a row committed
        # into the queue that no seal took.
        await conn.execute("ALTER TABLE audit_pending DISABLE TRIGGER audit_pending_seal")
        try:
            async with conn.transaction():
                await append_in_tx(conn, "unchained", None, None, {"x": 1})
        finally:
            await conn.execute("ALTER TABLE audit_pending ENABLE TRIGGER audit_pending_seal")
    finally:
        await conn.close()
    check = await store.verify_audit()
    assert not check.ok
    assert check.problem == "unsealed"
    assert "1 audit row(s) were committed without being chained" in check.reason
    assert check.checked == 1
