"""postgres.terminate_idle against a real PostgreSQL: it ends only allow-listed sessions idle (in
transaction) past the threshold, up to its cap, the oldest first; spares a session that changed
after the preview or after an approval; and signals nothing in dry-run.

Every action runs as the README's least-privilege role (member of pg_signal_backend and
pg_read_all_stats, not superuser). Real sessions are opened with asyncpg in the states each
test needs (tests/support/postgres_cluster.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from receiver.approvals.plan import bound_plan, plan_hash
from remediations.base import ActionContext, Outcome
from remediations.postgres.connection import PostgresConnection
from remediations.postgres.sessions import TerminateIdle, TerminateIdleParams
from tests.support.polling import eventually
from tests.support.postgres_cluster import (
    TARGET,
    Cluster,
    Roles,
    cluster,
    connection,
    context,
    previewed_pids,
    roles,
)

__all__ = ["cluster", "connection", "roles"]

pytestmark = pytest.mark.postgres


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


async def test_an_application_name_cannot_forge_a_line_of_the_record(
    cluster: Cluster, connection: PostgresConnection, roles: Roles
) -> None:
    # Any client names its own application, and the preview an approver reads and the step's
    # message a reviewer reads listed it bare: this one read as a second, superuser, session.
    forged = 'x, idle in transaction, 1s); pid 1 (postgres@orders, "psql'
    victim = await cluster.idle_in_transaction(roles.app, app=forged)
    action = TerminateIdle()
    ctx = context(connection)
    params = TerminateIdleParams(roles=(roles.app,), idle_for="1s")
    pid = victim.get_server_pid()
    assert await eventually(lambda: previewed_pids(action, ctx, params)) == [pid]

    change = await action.preview(ctx, TARGET, params)
    (listed,) = change.before["sessions"]
    assert listed["application"] == forged
    quoted = r'"x, idle in transaction, 1s); pid 1 (postgres@orders, \"psql"'
    assert change.summary == (
        f"end 1 session(s) on orders: pid {pid} ({roles.app}@{cluster.database}, {quoted}, "
        f"idle in transaction, since {listed['since']})"
    )
    result = await action.run(ctx, TARGET, params)
    assert result.outcome is Outcome.OK, result.message
    prefix = f"terminated 1 session(s) on orders: pid {pid} ({roles.app}@{cluster.database}, "
    assert result.message.startswith(f"{prefix}{quoted}, idle in transaction, ")
