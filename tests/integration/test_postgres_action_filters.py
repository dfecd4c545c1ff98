"""What a rule writes in ``roles``, ``databases`` and ``exclude_applications`` against what
PostgreSQL shows (real server).

An allow-listed role the server does not have has no session: a step listing only such roles
(a typo) is refused naming them, where it said "no session matches" for ever; with some of its
roles present it goes on, and its "no session matches" names the missing ones. So with the
databases it lists.

PostgreSQL keeps an ``application_name`` of at most 63 bytes of printable ASCII: longer names
are cut, other characters replaced (``?`` up to 15, ``\\xNN`` from 16). A name the rule lists
that PostgreSQL would never show can never match, so the session the operator meant to spare
was signalled. Such a name is refused when the rule loads, saying what to write instead.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import asyncpg
import pytest
from pydantic import ValidationError

from remediations.base import ActionContext, ActionRefused, Clients, Outcome
from remediations.postgres.connection import PostgresConnection
from remediations.postgres.sessions import (
    CancelLongQueries,
    CancelLongQueriesParams,
    TerminateIdle,
    TerminateIdleParams,
)
from remediations.targets import Target
from tests.support.polling import eventually
from tests.support.postgres import PostgresServer
from tests.support.postgres_cluster import as_role
from tests.support.sessions import Sessions

pytestmark = pytest.mark.postgres

TARGET = Target("PostgresDatabase", "", "orders")
LONG_APP = "nightly-ledger-reconciliation-worker-for-the-orders-database-v2.1"  # 65 bytes


@pytest.fixture
async def app_role(pg_server: PostgresServer) -> AsyncIterator[tuple[str, str]]:
    """(an application role, the remediator's role as the README grants it)."""
    suffix = os.urandom(3).hex()
    app, remediator = f"app_{suffix}", f"remediator_{suffix}"
    admin = await asyncpg.connect(pg_server.url("postgres"))
    try:
        await admin.execute(f"CREATE ROLE {remediator} LOGIN NOSUPERUSER")
        await admin.execute(f"GRANT pg_signal_backend, pg_read_all_stats TO {remediator}")
        await admin.execute(f"CREATE ROLE {app} LOGIN")
        yield app, remediator
    finally:
        for role in (app, remediator):
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role
            )
            await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()


def test_an_application_name_postgresql_would_cut_is_refused_naming_what_it_keeps() -> None:
    with pytest.raises(ValidationError) as refused:
        TerminateIdleParams.model_validate(
            {"roles": ["app"], "idle_for": "1m", "exclude_applications": [LONG_APP]}
        )
    assert "exclude_applications" in str(refused.value)
    assert repr(LONG_APP[:63]) in str(refused.value)


@pytest.mark.parametrize("name", ["café-worker", "tab\there", "nul\x00"])
def test_an_application_name_postgresql_would_rewrite_is_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="printable ASCII"):
        TerminateIdleParams.model_validate(
            {"roles": ["app"], "idle_for": "1m", "exclude_applications": [name]}
        )


async def test_the_name_the_refusal_gives_spares_the_session(
    empty_database_url: str, app_role: tuple[str, str]
) -> None:
    """The session set its 65-byte name; PostgreSQL shows 63 bytes of it. Listed as the
    refusal says (its first 63 bytes) it is spared, and an allow-listed session beside it
    without that name is ended."""
    app, remediator = app_role
    sessions = Sessions()
    conn = PostgresConnection("orders", as_role(empty_database_url, remediator))
    try:
        url = as_role(empty_database_url, app)
        spared = await sessions.idle(url, transaction=True, application=LONG_APP)
        victim = await sessions.idle(url, transaction=True, application="web")
        shown = await spared.fetchval("SELECT current_setting('application_name')")
        assert shown == LONG_APP[:63]
        action = TerminateIdle()
        ctx = ActionContext("run-1", False, Clients({"postgres:orders": conn}))
        every = TerminateIdleParams(roles=(app,), idle_for="1s", exclude_applications=())
        await eventually(
            lambda: action.preview(ctx, TARGET, every),
            lambda change: len(change.before["sessions"]) == 2,
        )
        params = TerminateIdleParams(
            roles=(app,), idle_for="1s", exclude_applications=(LONG_APP[:63],)
        )

        result = await action.run(ctx, TARGET, params)

        assert result.outcome is Outcome.OK, result.message
        assert result.after == {"terminated": [victim.get_server_pid()]}
        assert await spared.fetchval("SELECT 1") == 1
    finally:
        await sessions.close()
        await conn.close()


async def test_roles_the_server_does_not_have_are_named(
    empty_database_url: str, app_role: tuple[str, str]
) -> None:
    app, remediator = app_role
    typo = f"{app}x"
    sessions = Sessions()
    conn = PostgresConnection("orders", as_role(empty_database_url, remediator))
    ctx = ActionContext("run-1", False, Clients({"postgres:orders": conn}))
    try:
        idle = await sessions.idle(as_role(empty_database_url, app), transaction=True)
        only_typos = TerminateIdleParams(roles=(typo, "billing_typo"), idle_for="1s")
        for call in (TerminateIdle().preview, TerminateIdle().run):
            with pytest.raises(ActionRefused) as refused:
                await call(ctx, TARGET, only_typos)
            assert refused.value.message.startswith(
                f"PostgreSQL 'orders' has no role {typo}, billing_typo: no session could ever match"
            )
        cancel = CancelLongQueriesParams(roles=(typo,), running_for="1s")
        with pytest.raises(ActionRefused, match=f"has no role {typo}:"):
            await CancelLongQueries().run(ctx, TARGET, cancel)

        # One of them exists: the step goes on, and says which ones the server lacks.
        some = TerminateIdleParams(roles=(app, typo), idle_for="1h")
        result = await TerminateIdle().run(ctx, TARGET, some)
        assert result.outcome is Outcome.NOOP
        assert result.message.startswith("no session matches: ")
        assert result.message.endswith(f" (no role {typo} on this server)")
        preview = await TerminateIdle().preview(ctx, TARGET, some)
        assert preview.summary.endswith(f" (no role {typo} on this server)")
        assert await idle.fetchval("SELECT 1") == 1
        every = await TerminateIdle().run(
            ctx, TARGET, TerminateIdleParams(roles=(app,), idle_for="1h")
        )
        assert "no role" not in every.message
    finally:
        await sessions.close()
        await conn.close()


async def test_databases_the_server_does_not_have_are_named(
    empty_database_url: str, app_role: tuple[str, str]
) -> None:
    # A typo in databases matched nothing, and the step said "no session matches" for ever
    # while the sessions it was written for piled up.
    app, remediator = app_role
    here = empty_database_url.rsplit("/", 1)[1]
    typo = f"{here}x"
    sessions = Sessions()
    conn = PostgresConnection("orders", as_role(empty_database_url, remediator))
    ctx = ActionContext("run-1", False, Clients({"postgres:orders": conn}))
    try:
        idle = await sessions.idle(as_role(empty_database_url, app), transaction=True)
        only_typos = TerminateIdleParams(roles=(app,), databases=(typo,), idle_for="1s")
        for call in (TerminateIdle().preview, TerminateIdle().run):
            with pytest.raises(ActionRefused) as refused:
                await call(ctx, TARGET, only_typos)
            assert refused.value.message == (
                f"PostgreSQL 'orders' has no database {typo}: no session could ever match; "
                "check the rule's databases (a typo?) and that its connection names the right "
                "server"
            )
        cancel = CancelLongQueriesParams(roles=(app,), databases=(typo,), running_for="1s")
        with pytest.raises(ActionRefused, match=f"has no database {typo}:"):
            await CancelLongQueries().run(ctx, TARGET, cancel)

        # One of them exists: the step goes on, and says which ones the server lacks.
        some = TerminateIdleParams(roles=(app,), databases=(here, typo), idle_for="1h")
        result = await TerminateIdle().run(ctx, TARGET, some)
        assert result.outcome is Outcome.NOOP
        assert result.message.endswith(f" (no database {typo} on this server)")
        assert await idle.fetchval("SELECT 1") == 1
    finally:
        await sessions.close()
        await conn.close()
