"""The role postgres.terminate_idle and postgres.cancel_long_queries run as, against a real
PostgreSQL: the README's least-privilege role is no superuser, and without pg_read_all_stats
both actions refuse, naming the grant, and signal nothing; so they do without
pg_signal_backend. Real sessions are opened with
asyncpg (tests/support/postgres_cluster.py)."""

from __future__ import annotations

import os

import asyncpg
import pytest

from remediations.base import ActionContext, ActionRefused, Clients, Outcome
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

__all__ = ["cluster", "connection", "roles"]

pytestmark = pytest.mark.postgres


async def test_the_role_is_not_a_superuser(connection: PostgresConnection, roles: Roles) -> None:
    rows = await connection.fetch(
        "test", "SELECT rolsuper, rolreplication FROM pg_roles WHERE rolname = current_user"
    )
    assert rows[0]["rolsuper"] is False
    assert rows[0]["rolreplication"] is False


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


async def test_without_pg_signal_backend_the_actions_refuse_before_signalling(
    cluster: Cluster, roles: Roles
) -> None:
    # A role that sees the sessions but may not signal them: the preview (so an approval) and
    # the dry run listed sessions the run could not end, and the run failed with "permission
    # denied ... some sessions may have been signalled". Each refuses, naming the grant, and
    # says nothing was signalled.
    session = await cluster.idle_in_transaction(roles.app)
    running = await cluster.active(await cluster.connect(roles.app))
    mute = PostgresConnection("orders", as_role(cluster.url, roles.mute))
    good = PostgresConnection("orders", as_role(cluster.url, roles.remediator))
    try:
        action = TerminateIdle()
        params = TerminateIdleParams(roles=(roles.app,), idle_for="1s")
        await eventually(lambda: previewed_pids(action, context(good), params))
        for dry_run in (True, False):
            ctx = ActionContext("run-1", dry_run, Clients({"postgres:orders": mute}))
            for call in (action.preview, action.run):
                with pytest.raises(ActionRefused) as refused:
                    await call(ctx, TARGET, params)
                assert refused.value.may_have_acted is False
                assert refused.value.message == (
                    f"PostgreSQL 'orders': the role {roles.mute} cannot signal the sessions of "
                    f"{roles.app}: it lacks pg_signal_backend, without which the server "
                    "refuses to end or cancel other roles' sessions; nothing was signalled; "
                    f"GRANT pg_signal_backend TO {roles.mute} (see the README)"
                )
        cancel = CancelLongQueriesParams(roles=(roles.app,), running_for="1s")
        await eventually(lambda: previewed_pids(CancelLongQueries(), context(good), cancel))
        ctx = ActionContext("run-1", False, Clients({"postgres:orders": mute}))
        with pytest.raises(ActionRefused, match="lacks pg_signal_backend") as refused:
            await CancelLongQueries().run(ctx, TARGET, cancel)
        assert refused.value.may_have_acted is False
        assert await cluster.alive(session.get_server_pid())
        assert not running.done()
    finally:
        await mute.close()
        await good.close()


async def test_roles_whose_sessions_are_never_signalled_are_named(
    cluster: Cluster, roles: Roles, connection: PostgresConnection
) -> None:
    # An application run as a superuser (or a replication role, or the service's own role),
    # or a group role listed for its members: no session of it is ever signalled, and a rule
    # listing only such roles recorded "no session matches" for ever while the sessions piled
    # up. Refused, naming each and why; listed with a role that can match, the step goes on
    # and a "no session matches" names them.
    stuck = await cluster.idle_in_transaction(roles.superuser)
    await cluster.idle_in_transaction(roles.repl)
    member = await cluster.idle_in_transaction(roles.app)
    action = TerminateIdle()
    ctx = context(connection)
    barred = (roles.superuser, roles.repl, roles.remediator, roles.group)
    params = TerminateIdleParams(roles=(*barred, "nosuchrole"), idle_for="1s")
    whys = sorted(
        [
            f"{roles.superuser} (a superuser)",
            f"{roles.repl} (a replication role)",
            f"{roles.remediator} (the role it connects as)",
            f"{roles.group} (a role that cannot log in)",
        ]
    )
    for call in (action.preview, action.run):
        with pytest.raises(ActionRefused) as refused:
            await call(ctx, TARGET, params)
        assert refused.value.message == (
            f"PostgreSQL 'orders': no session of {', '.join(whys)} could ever match: these "
            "actions never signal a superuser's, a replication role's or their own role's "
            "sessions, and a role that cannot log in has none; list the roles the applications "
            "log in as (see the README) (no role nosuchrole on this server)"
        )
    cancel = CancelLongQueriesParams(roles=(roles.superuser,), running_for="1s")
    with pytest.raises(ActionRefused, match=rf"{roles.superuser} \(a superuser\) could ever"):
        await CancelLongQueries().run(ctx, TARGET, cancel)

    some = TerminateIdleParams(roles=(roles.other, roles.superuser), idle_for="1s")
    result = await action.run(ctx, TARGET, some)
    assert result.outcome is Outcome.NOOP
    assert result.message.endswith(f" (never signalled: {roles.superuser} (a superuser))")
    assert await cluster.alive(stuck.get_server_pid())
    assert await cluster.alive(member.get_server_pid())


async def test_a_role_that_lost_login_still_has_its_sessions_ended(
    cluster: Cluster, connection: PostgresConnection
) -> None:
    # NOLOGIN stops new sessions, not those already open: a role so changed is not refused
    # as one that has none while it still has some.
    admin = await asyncpg.connect(cluster.url)
    role = f"left_{os.urandom(3).hex()}"
    await admin.execute(f"CREATE ROLE {role} LOGIN")
    try:
        left = await cluster.idle_in_transaction(role)
        await admin.execute(f"ALTER ROLE {role} NOLOGIN")
        params = TerminateIdleParams(roles=(role,), idle_for="1s")
        action, ctx = TerminateIdle(), context(connection)
        pid = left.get_server_pid()
        assert await eventually(lambda: previewed_pids(action, ctx, params)) == [pid]
        result = await action.run(ctx, TARGET, params)
        assert result.after == {"terminated": [pid]}
        await eventually(lambda: cluster.alive(pid), lambda alive: not alive)
    finally:
        await cluster.sessions.close()
        await admin.execute(f"DROP ROLE {role}")
        await admin.close()
