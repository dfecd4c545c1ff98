"""postgres.cancel_long_queries against a real PostgreSQL: it cancels (not terminates) only
allow-listed statements running past the threshold, up to its cap; spares a statement that
finished after the preview; and cancels a long fast-path call, timed from its own start.

Every action runs as the README's least-privilege role (member of pg_signal_backend and
pg_read_all_stats, not superuser). Real sessions are opened with asyncpg in the states each
test needs (tests/support/postgres_cluster.py). A fast-path function call, which asyncpg cannot
make, is made with libpq (tests/support/fastpath.py)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg
import pytest

from remediations.base import Outcome
from remediations.postgres.connection import PostgresConnection
from remediations.postgres.sessions import CancelLongQueries, CancelLongQueriesParams
from tests.support.fastpath import FastPathSession, find_libpq
from tests.support.polling import eventually
from tests.support.postgres import PostgresServer
from tests.support.postgres_cluster import (
    TARGET,
    Cluster,
    Roles,
    as_role,
    cluster,
    connection,
    context,
    previewed_pids,
    roles,
)
from tests.support.servers import server_missing

__all__ = ["cluster", "connection", "roles"]

pytestmark = pytest.mark.postgres


async def test_cancel_long_queries_cancels_only_allow_listed_statements(
    cluster: Cluster, connection: PostgresConnection, roles: Roles
) -> None:
    spared = {
        "not allow-listed": await cluster.connect(roles.other),
        "superuser": await cluster.connect(roles.superuser),
        "replication role": await cluster.connect(roles.repl),
        "other database": await cluster.connect(roles.app, other_db=True),
        "excluded application": await cluster.connect(roles.app, app="pg_dump"),
        "the service's role": await cluster.connect(roles.remediator),
    }
    for conn in spared.values():
        await cluster.active(conn)
    idle = await cluster.idle_in_transaction(roles.app)
    victim = await cluster.connect(roles.app)  # last: see the terminate test
    victim_task = await cluster.active(victim)
    action = CancelLongQueries()
    ctx = context(connection)
    # Every role is allow-listed but "other": only the fixed filter protects the rest.
    params = CancelLongQueriesParams(
        roles=(roles.app, roles.superuser, roles.repl, roles.remediator), running_for="1s"
    )
    pid = victim.get_server_pid()
    assert await eventually(lambda: previewed_pids(action, ctx, params)) == [pid]

    result = await action.run(ctx, TARGET, params)

    assert result.outcome is Outcome.OK, result.message
    assert result.after == {"cancelled": [pid]}
    with pytest.raises(asyncpg.QueryCanceledError):
        await victim_task
    # Cancelled, not terminated: the session is still there and usable.
    assert await victim.fetchval("SELECT 1") == 1
    for why, conn in spared.items():
        assert await cluster.state(conn.get_server_pid()) == "active", f"{why} was cancelled"
    assert await cluster.state(idle.get_server_pid()) == "idle in transaction"


async def test_a_statement_that_finished_after_the_preview_is_spared(
    cluster: Cluster, connection: PostgresConnection, roles: Roles
) -> None:
    session = await cluster.connect(roles.app)
    statement = await cluster.active(session, seconds=3)
    pid = session.get_server_pid()
    action = CancelLongQueries()
    ctx = context(connection)
    params = CancelLongQueriesParams(roles=(roles.app,), running_for="1s")
    assert await eventually(lambda: previewed_pids(action, ctx, params)) == [pid]

    await statement  # it finishes on its own between the preview and the run
    result = await action.run(ctx, TARGET, params)

    assert result.outcome is Outcome.NOOP, result.message
    assert await session.fetchval("SELECT 1") == 1


async def test_cancel_caps_the_statements(
    cluster: Cluster, connection: PostgresConnection, roles: Roles
) -> None:
    conns = [await cluster.connect(roles.app) for _ in range(3)]
    for conn in conns:
        await cluster.active(conn)
    action = CancelLongQueries()
    ctx = context(connection)
    params = CancelLongQueriesParams(roles=(roles.app,), running_for="1s", max_sessions=1)
    await eventually(lambda: previewed_pids(action, ctx, params))

    result = await action.run(ctx, TARGET, params)

    assert result.outcome is Outcome.OK
    assert len(result.after["cancelled"]) == 1
    states = [await cluster.state(c.get_server_pid()) for c in conns]
    assert states.count("active") == 2


FASTPATH_ACTIVITY = """
SELECT state, query_start, state_change, now() - state_change > interval '1 second' AS long
FROM pg_stat_activity WHERE pid = $1
"""


async def test_a_long_fastpath_call_is_cancelled_timed_from_its_own_start(
    pg_server: PostgresServer, cluster: Cluster, connection: PostgresConnection, roles: Roles
) -> None:
    """An allow-listed session runs ``SELECT 1``, then ``pg_sleep(60)`` through the fast path.
    The action looked only at ``active`` backends and never cancelled it; it does, dated
    from when the call began (``state_change``), not from the previous statement."""
    libpq = find_libpq(pg_server.bin_dir)
    if libpq is None:
        server_missing("libpq (to make a fast-path call)")
    session = FastPathSession(libpq, as_role(cluster.url, roles.app))
    pid = session.pid
    admin = await asyncpg.connect(cluster.url)
    call: asyncio.Task[str] | None = None
    try:
        sleep_oid = await admin.fetchval("SELECT 'pg_sleep(float8)'::regprocedure::oid")
        assert await asyncio.to_thread(session.execute, "SELECT 1") == ""
        call = asyncio.create_task(asyncio.to_thread(session.call_float8, sleep_oid, 60.0))

        def running_long(row: Any) -> bool:
            return row is not None and row["state"] == "fastpath function call" and row["long"]

        row = await eventually(lambda: admin.fetchrow(FASTPATH_ACTIVITY, pid), running_long)
        assert row["query_start"] < row["state_change"]  # still SELECT 1's start
        action, ctx = CancelLongQueries(), context(connection)
        params = CancelLongQueriesParams(roles=(roles.app,), running_for="1s")

        change = await action.preview(ctx, TARGET, params)
        listed = [(s["pid"], s["state"], s["since"]) for s in change.before["sessions"]]
        assert listed == [(pid, "fastpath function call", row["state_change"].isoformat())]
        result = await action.run(ctx, TARGET, params)

        assert result.after == {"cancelled": [pid]}, result.message
        assert "canceling statement due to user request" in await call
        # Cancelled, not terminated: the session is still there and usable.
        assert await asyncio.to_thread(session.execute, "SELECT 1") == ""
    finally:
        if call is not None and not call.done():
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
            with contextlib.suppress(Exception):
                await call
        session.close()
        await admin.close()
