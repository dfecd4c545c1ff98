"""postgres.terminate_idle and postgres.cancel_long_queries against a real PostgreSQL.

Every action runs as the README's least-privilege role (member of pg_signal_backend and
pg_read_all_stats, not superuser). Real sessions are opened with asyncpg in the states each
test needs: idle in transaction, idle, active; as allow-listed, other, superuser and
replication roles; in the target database and in another one. A fast-path function call,
which asyncpg cannot make, is made with libpq (tests/support/fastpath.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from receiver.approvals.plan import bound_plan, plan_hash
from remediations.base import ActionContext, ActionRefused, Clients, Outcome
from remediations.postgres.connection import PostgresConnection
from remediations.postgres.sessions import (
    CancelLongQueries,
    CancelLongQueriesParams,
    TerminateIdle,
    TerminateIdleParams,
)
from remediations.targets import Target
from tests.support.fastpath import FastPathSession, find_libpq
from tests.support.polling import eventually
from tests.support.postgres import PostgresServer
from tests.support.servers import server_missing
from tests.support.sessions import Sessions

pytestmark = pytest.mark.postgres

TARGET = Target("PostgresDatabase", "", "orders")


def as_role(url: str, role: str, database: str | None = None) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    path = f"/{database}" if database else parts.path
    return urlunsplit((parts.scheme, f"{role}@{host}", path, "", ""))


@dataclass
class Roles:
    remediator: str
    app: str
    other: str
    repl: str
    superuser: str
    weak: str  # pg_signal_backend only: cannot see other roles' state


@pytest.fixture(scope="module")
async def roles(pg_server: PostgresServer) -> AsyncIterator[Roles]:
    suffix = os.urandom(3).hex()
    names = Roles(*(f"{n}_{suffix}" for n in ("remediator", "app", "other", "repl", "su", "weak")))
    admin = await asyncpg.connect(pg_server.url("postgres"))
    try:
        # The README's role, verbatim in spirit: no superuser, two predefined roles.
        await admin.execute(f"CREATE ROLE {names.remediator} LOGIN NOSUPERUSER")
        await admin.execute(f"GRANT pg_signal_backend, pg_read_all_stats TO {names.remediator}")
        await admin.execute(f"CREATE ROLE {names.app} LOGIN")
        await admin.execute(f"CREATE ROLE {names.other} LOGIN")
        await admin.execute(f"CREATE ROLE {names.repl} LOGIN REPLICATION")
        await admin.execute(f"CREATE ROLE {names.superuser} LOGIN SUPERUSER")
        await admin.execute(f"CREATE ROLE {names.weak} LOGIN")
        await admin.execute(f"GRANT pg_signal_backend TO {names.weak}")
        yield names
    finally:
        for role in vars(names).values():
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role
            )
            await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()


@dataclass
class Cluster:
    """Opens sessions in given states and closes them all at the end."""

    url: str  # the target database, as the superuser
    other_db_url: str
    roles: Roles
    sessions: Sessions = field(default_factory=Sessions)

    def _url(self, role: str, other_db: bool) -> str:
        return as_role(self.other_db_url if other_db else self.url, role)

    async def connect(self, role: str, *, other_db: bool = False, app: str = "") -> Any:
        return await self.sessions.connect(self._url(role, other_db), app)

    async def idle_in_transaction(self, role: str, *, other_db: bool = False, app: str = "") -> Any:
        return await self.sessions.idle(
            self._url(role, other_db), transaction=True, application=app
        )

    async def idle(self, role: str) -> Any:
        return await self.sessions.idle(self._url(role, False), transaction=False)

    async def active(self, conn: Any, seconds: float = 60) -> asyncio.Task[Any]:
        """Start a long statement on ``conn`` and wait until the server shows it active."""
        pid = conn.get_server_pid()
        task = self.sessions.sleep(conn, seconds)
        await eventually(lambda: self.state(pid), lambda s: s == "active")
        return task

    async def state(self, pid: int) -> str | None:
        admin = await asyncpg.connect(self.url.replace(f"/{self.database}", "/postgres"))
        try:
            row = await admin.fetchrow("SELECT state FROM pg_stat_activity WHERE pid = $1", pid)
        finally:
            await admin.close()
        return None if row is None else str(row["state"])

    async def alive(self, pid: int) -> bool:
        return await self.state(pid) is not None

    @property
    def database(self) -> str:
        return urlsplit(self.url).path.lstrip("/")


@pytest.fixture
async def cluster(
    pg_server: PostgresServer, empty_database_url: str, roles: Roles
) -> AsyncIterator[Cluster]:
    other = f"other_{os.urandom(4).hex()}"
    admin = await asyncpg.connect(pg_server.url("postgres"))
    await admin.execute(f'CREATE DATABASE "{other}"')
    created = Cluster(empty_database_url, pg_server.url(other), roles)
    try:
        yield created
    finally:
        await created.sessions.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{other}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def connection(cluster: Cluster) -> AsyncIterator[PostgresConnection]:
    conn = PostgresConnection("orders", as_role(cluster.url, cluster.roles.remediator))
    try:
        yield conn
    finally:
        await conn.close()


def context(connection: PostgresConnection, *, dry_run: bool = False) -> ActionContext:
    return ActionContext("run-1", dry_run, Clients({"postgres:orders": connection}))


async def previewed_pids(action: Any, ctx: ActionContext, params: Any) -> list[int]:
    change = await action.preview(ctx, TARGET, params)
    return sorted(s["pid"] for s in change.before["sessions"])


async def test_the_role_is_not_a_superuser(connection: PostgresConnection, roles: Roles) -> None:
    rows = await connection.fetch(
        "test", "SELECT rolsuper, rolreplication FROM pg_roles WHERE rolname = current_user"
    )
    assert rows[0]["rolsuper"] is False
    assert rows[0]["rolreplication"] is False


async def test_terminate_idle_ends_only_allow_listed_idle_sessions(
    cluster: Cluster, connection: PostgresConnection, roles: Roles
) -> None:
    spared = {
        "plain idle": await cluster.idle(roles.app),
        "active": await cluster.idle_in_transaction(roles.app),
        "not allow-listed": await cluster.idle_in_transaction(roles.other),
        "replication role": await cluster.idle_in_transaction(roles.repl),
        "superuser": await cluster.idle_in_transaction(roles.superuser),
        "other database": await cluster.idle_in_transaction(roles.app, other_db=True),
        "excluded application": await cluster.idle_in_transaction(roles.app, app="pg_dump"),
        "the service's role": await cluster.idle_in_transaction(roles.remediator),
    }
    await cluster.active(spared["active"])
    # The victim comes last: once it is past the threshold, so is every spared session, and
    # only the filter can keep them out.
    victim = await cluster.idle_in_transaction(roles.app)
    action = TerminateIdle()
    # Every role is allow-listed but "other": only the fixed filter protects the rest.
    params = TerminateIdleParams(
        roles=(roles.app, roles.repl, roles.superuser, roles.remediator),
        idle_for="1s",
        max_sessions=20,
    )
    ctx = context(connection)
    pid = victim.get_server_pid()

    assert await eventually(lambda: previewed_pids(action, ctx, params)) == [pid]
    change = await action.preview(ctx, TARGET, params)
    (listed,) = change.before["sessions"]
    assert listed == {
        "pid": pid,
        "role": roles.app,
        "database": cluster.database,
        "application": "",
        "state": "idle in transaction",
        "since": listed["since"],
    }
    assert change.preconditions == {"sessions": [{"pid": pid, "since": listed["since"]}]}

    result = await action.run(ctx, TARGET, params)

    assert result.outcome is Outcome.OK, result.message
    assert result.after == {"terminated": [pid]}
    assert f"pid {pid}" in result.message
    await eventually(lambda: cluster.alive(pid), lambda alive: not alive)
    for why, conn in spared.items():
        assert await cluster.alive(conn.get_server_pid()), f"{why} session was ended"


async def test_plain_idle_only_when_asked(
    cluster: Cluster, connection: PostgresConnection, roles: Roles
) -> None:
    idle = await cluster.idle(roles.app)
    action = TerminateIdle()
    ctx = context(connection)
    params = TerminateIdleParams(roles=(roles.app,), idle_for="1s", states=("idle",))
    pids = await eventually(lambda: previewed_pids(action, ctx, params))
    assert pids == [idle.get_server_pid()]


async def test_the_cap_holds_and_takes_the_oldest(
    cluster: Cluster, connection: PostgresConnection, roles: Roles
) -> None:
    sessions = [await cluster.idle_in_transaction(roles.app) for _ in range(4)]
    pids = [s.get_server_pid() for s in sessions]
    action = TerminateIdle()
    ctx = context(connection)
    params = TerminateIdleParams(roles=(roles.app,), idle_for="1s", max_sessions=2)
    # Wait until all four are past the threshold, so the cap (not the age) decides.
    every = params.model_copy(update={"max_sessions": 10})
    await eventually(lambda: previewed_pids(action, ctx, every), lambda p: len(p) == 4)

    assert len(await previewed_pids(action, ctx, params)) == 2
    result = await action.run(ctx, TARGET, params)

    assert result.outcome is Outcome.OK
    assert sorted(result.after["terminated"]) == sorted(pids[:2])

    async def alive() -> list[bool]:
        return [await cluster.alive(pid) for pid in pids]

    assert await eventually(alive, lambda seen: not any(seen[:2])) == [False, False, True, True]


async def _turns_active(cluster: Cluster, session: Any) -> None:
    await cluster.active(session)  # between preview and run, the session gets busy


async def _works_again(cluster: Cluster, session: Any) -> None:
    await session.execute("SELECT 2")  # still idle in transaction, but only just


@pytest.mark.parametrize(
    ("idle_for", "meanwhile"),
    [
        pytest.param("1s", _turns_active, id="turned-active"),
        pytest.param("2s", _works_again, id="worked-again"),
    ],
)
async def test_a_session_that_changed_after_the_preview_is_spared(
    cluster: Cluster,
    connection: PostgresConnection,
    roles: Roles,
    idle_for: str,
    meanwhile: Callable[[Cluster, Any], Awaitable[None]],
) -> None:
    session = await cluster.idle_in_transaction(roles.app)
    pid = session.get_server_pid()
    action = TerminateIdle()
    ctx = context(connection)
    params = TerminateIdleParams(roles=(roles.app,), idle_for=idle_for)
    assert await eventually(lambda: previewed_pids(action, ctx, params)) == [pid]

    await meanwhile(cluster, session)
    result = await action.run(ctx, TARGET, params)

    assert result.outcome is Outcome.NOOP, result.message
    assert await cluster.alive(pid)


async def _age_s(connection: PostgresConnection, pid: int) -> float:
    rows = await connection.fetch(
        "test",
        "SELECT extract(epoch FROM now() - state_change) AS a FROM pg_stat_activity WHERE pid = $1",
        pid,
    )
    return float(rows[0]["a"])


async def test_an_approval_binds_the_sessions_it_saw_and_only_those_are_signalled(
    cluster: Cluster, connection: PostgresConnection, roles: Roles
) -> None:
    # An approved step runs only while a fresh preview hashes as the approved one did: the
    # preview must not change by the second while the sessions stay as they are.
    approved = await cluster.idle_in_transaction(roles.app)
    pid = approved.get_server_pid()
    action = TerminateIdle()
    ctx = context(connection)
    params = TerminateIdleParams(roles=(roles.app,), idle_for="1s", max_sessions=10)
    assert await eventually(lambda: previewed_pids(action, ctx, params)) == [pid]
    shown = await action.preview(ctx, TARGET, params)
    first = await _age_s(connection, pid)
    await eventually(lambda: _age_s(connection, pid), lambda age: age > first + 2)

    again = await action.preview(ctx, TARGET, params)
    plans = [
        bound_plan(action=action.name, target=TARGET, params={}, change=c) for c in (shown, again)
    ]
    assert plan_hash(plans[0]) == plan_hash(plans[1])

    # After the approval, another session crosses the threshold: not on this approval.
    later = await cluster.idle_in_transaction(roles.app)
    await eventually(lambda: previewed_pids(action, ctx, params), lambda p: len(p) == 2)
    approved_ctx = ActionContext("run-1", False, ctx.clients, approved=plans[0]["preconditions"])
    result = await action.run(approved_ctx, TARGET, params)

    assert result.outcome is Outcome.OK, result.message
    assert result.after == {"terminated": [pid]}
    await eventually(lambda: cluster.alive(pid), lambda alive: not alive)
    assert await cluster.alive(later.get_server_pid())


async def test_an_approved_session_that_went_active_and_idle_again_is_spared(
    cluster: Cluster, connection: PostgresConnection, roles: Roles
) -> None:
    session = await cluster.idle_in_transaction(roles.app)
    pid = session.get_server_pid()
    action = TerminateIdle()
    ctx = context(connection)
    params = TerminateIdleParams(roles=(roles.app,), idle_for="1s")
    assert await eventually(lambda: previewed_pids(action, ctx, params)) == [pid]
    shown = await action.preview(ctx, TARGET, params)
    # It works again, then idles past the threshold once more: a new idle period, which
    # the approver never saw.
    await session.execute("SELECT 2")
    await eventually(lambda: _age_s(connection, pid), lambda age: age > 1.5)
    assert await previewed_pids(action, ctx, params) == [pid]

    approved_ctx = ActionContext("run-1", False, ctx.clients, approved=shown.preconditions)
    result = await action.run(approved_ctx, TARGET, params)

    assert result.outcome is Outcome.NOOP, result.message
    assert await cluster.alive(pid)


async def test_dry_run_lists_and_signals_nothing(
    cluster: Cluster, connection: PostgresConnection, roles: Roles
) -> None:
    session = await cluster.idle_in_transaction(roles.app)
    pid = session.get_server_pid()
    action = TerminateIdle()
    params = TerminateIdleParams(roles=(roles.app,), idle_for="1s")
    await eventually(lambda: previewed_pids(action, context(connection), params))

    result = await action.run(context(connection, dry_run=True), TARGET, params)

    assert result.outcome is Outcome.DRY_RUN
    assert f"pid {pid}" in result.message
    assert await cluster.alive(pid)
    assert await session.fetchval("SELECT 1") == 1


async def test_without_pg_read_all_stats_the_actions_refuse_naming_the_grant(
    cluster: Cluster, roles: Roles
) -> None:
    # The research's visibility pitfall: other roles' state is NULL, so nothing would match
    # and the step would say "no session matches" for ever. It refuses instead, naming the
    # grant, and signals nothing.
    session = await cluster.idle_in_transaction(roles.app)
    weak = PostgresConnection("orders", as_role(cluster.url, roles.weak))
    good = PostgresConnection("orders", as_role(cluster.url, roles.remediator))
    try:
        action = TerminateIdle()
        params = TerminateIdleParams(roles=(roles.app,), idle_for="1s")
        await eventually(lambda: previewed_pids(action, context(good), params))
        ctx = ActionContext("run-1", False, Clients({"postgres:orders": weak}))
        for call in (action.preview, action.run):
            with pytest.raises(ActionRefused) as refused:
                await call(ctx, TARGET, params)
            assert f"GRANT pg_read_all_stats TO {roles.weak}" in refused.value.message
            assert roles.app in refused.value.message
        cancel = CancelLongQueriesParams(roles=(roles.app,), running_for="1s")
        with pytest.raises(ActionRefused, match="lacks pg_read_all_stats"):
            await CancelLongQueries().run(ctx, TARGET, cancel)
        assert await cluster.alive(session.get_server_pid())
    finally:
        await weak.close()
        await good.close()


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
