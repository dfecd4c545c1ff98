"""The session actions never end the service's own store sessions, even when the store shares
the server under a role a rule allow-lists (a small setup with one role for all): the store's
pool and the worker's LISTEN connection name themselves ``alert-remediator``
(receiver/store/session_name.py), and postgres.terminate_idle and postgres.cancel_long_queries
spare every session so named. Before, they spared only the role the action connects as: a
rule listing the store's role ended the LISTEN connection (idle for good) and any store
transaction caught waiting. A real PostgreSQL (tests/support/postgres_cluster.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest

from receiver.store.database import Database
from receiver.worker.attempt import Backoff
from receiver.worker.listen import Listener
from remediations.base import Outcome
from remediations.postgres.connection import PostgresConnection
from remediations.postgres.sessions import (
    CancelLongQueries,
    CancelLongQueriesParams,
    TerminateIdle,
    TerminateIdleParams,
)
from tests.support.polling import eventually
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
from tests.support.said import Said

__all__ = ["cluster", "connection", "roles"]

pytestmark = pytest.mark.postgres

NAMES = "SELECT pid, application_name FROM pg_stat_activity WHERE usename = $1"


@contextlib.asynccontextmanager
async def store_sessions(url: str) -> AsyncIterator[tuple[Database, Listener]]:
    """The store's pool (no migrations: only its sessions matter here) and a worker's LISTEN
    connection, both to ``url``, up until the block ends."""
    store = await Database.connect(url, min_size=2, max_size=2, run_migrations=False)
    listener = Listener(
        url,
        lambda *_: None,
        lambda: None,
        poll_interval_s=60.0,
        backoff=Backoff(base_s=0.1, max_s=0.1),
        log=Said(),
    )
    task = asyncio.create_task(listener.run(lambda: False))
    try:
        await asyncio.wait_for(listener.listening.wait(), 30)
        yield store, listener
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await store.close()


async def _named(cluster: Cluster, role: str) -> dict[int, str]:
    admin = await asyncpg.connect(cluster.url)
    try:
        return {r["pid"]: r["application_name"] for r in await admin.fetch(NAMES, role)}
    finally:
        await admin.close()


async def test_terminate_idle_spares_the_store_and_its_listen_connection(
    cluster: Cluster, connection: PostgresConnection, roles: Roles
) -> None:
    async with store_sessions(as_role(cluster.url, roles.app)) as (store, _):
        own = await _named(cluster, roles.app)
        assert len(own) == 3, own  # two pooled, one listening
        assert set(own.values()) == {"alert-remediator"}, own
        async with store._pool.acquire() as held:
            waiting = held.transaction()
            await waiting.start()  # a store transaction caught waiting: idle in transaction
            # The control: a session of the same role the service did not open.
            victim = await cluster.idle_in_transaction(roles.app)
            action = TerminateIdle()
            params = TerminateIdleParams(
                roles=(roles.app,),
                idle_for="1s",
                states=("idle", "idle in transaction"),
                max_sessions=20,
            )
            ctx = context(connection)
            pids = await eventually(lambda: previewed_pids(action, ctx, params))
            assert pids == [victim.get_server_pid()]
            result = await action.run(ctx, TARGET, params)
            assert result.outcome is Outcome.OK, result.message
            assert result.after == {"terminated": [victim.get_server_pid()]}
            await waiting.rollback()
        # Every one of the service's still there, the control gone (a terminated backend
        # leaves pg_stat_activity once it has exited).
        left = await eventually(
            lambda: _named(cluster, roles.app),
            lambda named: victim.get_server_pid() not in named,
            what="the control session to end",
        )
        assert set(left) == set(own)


async def test_cancel_long_queries_spares_the_stores_statements(
    cluster: Cluster, connection: PostgresConnection, roles: Roles
) -> None:
    async with store_sessions(as_role(cluster.url, roles.app)) as (store, _):
        slow = asyncio.create_task(store._pool.fetchval("SELECT pg_sleep(60)"))
        other = await cluster.connect(roles.app)
        await cluster.active(other)
        action = CancelLongQueries()
        params = CancelLongQueriesParams(roles=(roles.app,), running_for="1s", max_sessions=20)
        ctx = context(connection)
        pids = await eventually(lambda: previewed_pids(action, ctx, params))
        assert pids == [other.get_server_pid()]
        result = await action.run(ctx, TARGET, params)
        assert result.outcome is Outcome.OK, result.message
        assert not slow.done()  # the store's statement runs on
        slow.cancel()
        with contextlib.suppress(asyncio.CancelledError, asyncpg.PostgresError):
            await slow


async def test_a_name_the_url_gives_is_kept_after_the_services(
    cluster: Cluster, roles: Roles
) -> None:
    url = as_role(cluster.url, roles.app) + "?application_name=replica-b"
    async with store_sessions(url):
        names = set((await _named(cluster, roles.app)).values())
    assert names == {"alert-remediator:replica-b"}
