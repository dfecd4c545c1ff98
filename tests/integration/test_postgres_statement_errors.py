"""A statement the server cancels or refuses, on the PostgreSQL actions' connection (real server).

A statement timeout on the signalling statement was an "action crashed" with a traceback in the
log: not a bug, but an outcome to record. It is an ActionError now, naming the cause; on the
statement that signals it may have acted (some sessions may have been signalled before it
stopped), on a read it has not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from remediations.base import ActionError, ActionRefused, TransientActionError
from remediations.postgres.connection import PostgresConnection

pytestmark = pytest.mark.postgres


@pytest.fixture
async def quick(empty_database_url: str) -> AsyncIterator[PostgresConnection]:
    conn = PostgresConnection("orders", empty_database_url, statement_timeout_s=0.05)
    try:
        yield conn
    finally:
        await conn.close()


async def test_a_signalling_statement_past_its_timeout_may_have_acted(
    quick: PostgresConnection,
) -> None:
    with pytest.raises(ActionError) as failed:
        await quick.fetch_once("terminate", "SELECT pg_sleep(5)")
    error = failed.value
    assert type(error) is ActionError  # neither a refusal nor a transient failure
    assert error.may_have_acted is True
    assert error.message == (
        "PostgreSQL 'orders': terminate: the statement was cancelled (it ran past the "
        "connection's statement timeout, or an operator cancelled it); some sessions may have "
        "been signalled before it stopped, check pg_stat_activity"
    )


async def test_a_read_past_its_timeout_has_not_acted(quick: PostgresConnection) -> None:
    with pytest.raises(ActionError) as failed:
        await quick.fetch("preview", "SELECT pg_sleep(5)")
    assert type(failed.value) is ActionError
    assert failed.value.may_have_acted is False
    assert failed.value.message.endswith("an operator cancelled it); nothing was signalled")


async def test_a_statement_the_server_refuses_names_its_sqlstate(
    quick: PostgresConnection,
) -> None:
    with pytest.raises(ActionError) as failed:
        await quick.fetch_once("terminate", "SELECT 1 / 0")
    assert not isinstance(failed.value, ActionRefused | TransientActionError)
    assert failed.value.may_have_acted is True
    assert "DivisionByZeroError (SQLSTATE 22012): division by zero" in failed.value.message
    # The connection is still usable: the failed statement's connection went back to the pool.
    assert [tuple(r) for r in await quick.fetch("check", "SELECT 1")] == [(1,)]
