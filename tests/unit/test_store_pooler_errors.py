"""Which store errors name a pooler's fix (receiver/store/errors.py): asyncpg's own prepared
statements missing (26000) or clashing (42P05), and a transaction PgBouncer refused in statement
pooling mode; nothing else."""

from __future__ import annotations

import asyncpg
import pytest

from receiver.store.errors import STATEMENT_MODE_FIX, StoreUnavailable, describe, translate

FIX = "set database.pooler: pgbouncer-transaction (REMEDIATOR_DATABASE_POOLER)"


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.InvalidSQLStatementNameError(
            'prepared statement "__asyncpg_stmt_2__" does not exist'
        ),
        asyncpg.DuplicatePreparedStatementError(
            'prepared statement "__asyncpg_stmt_1a__" already exists'
        ),
    ],
    ids=["26000", "42P05"],
)
def test_asyncpg_statements_lost_or_clashing_name_the_fix(error: asyncpg.PostgresError) -> None:
    assert describe(error).startswith(f"{type(error).__name__} (SQLSTATE {error.sqlstate}): ")
    assert FIX in describe(error)
    with pytest.raises(type(error)) as caught, translate():
        raise error
    assert any(FIX in note for note in caught.value.__notes__)


@pytest.mark.parametrize(
    "error",
    [
        # A statement of someone else's name: not asyncpg's cache.
        asyncpg.InvalidSQLStatementNameError('prepared statement "mine" does not exist'),
        asyncpg.UniqueViolationError("duplicate key value violates unique constraint"),
    ],
    ids=["another name", "another state"],
)
def test_other_errors_are_described_as_before(error: asyncpg.PostgresError) -> None:
    assert describe(error) == f"{type(error).__name__} (SQLSTATE {error.sqlstate})"
    with pytest.raises(type(error)) as caught, translate():
        raise error
    assert not getattr(caught.value, "__notes__", [])


def _closed(server_said: str | None) -> asyncpg.ConnectionDoesNotExistError:
    """asyncpg's error for a connection the server closed after an ErrorResponse (its cause)."""
    text = "connection was closed in the middle of operation"
    closed = asyncpg.ConnectionDoesNotExistError(f"{text}: {server_said}" if server_said else text)
    if server_said is not None:
        closed.__cause__ = asyncpg.ProtocolViolationError(server_said)
    return closed


def test_a_transaction_refused_in_statement_pooling_mode_names_the_fix() -> None:
    closed = _closed("transaction blocks not allowed in statement pooling mode")
    assert describe(closed) == f"ConnectionDoesNotExistError (SQLSTATE 08003): {STATEMENT_MODE_FIX}"
    assert closed.__cause__ is not None
    assert describe(closed.__cause__).endswith(STATEMENT_MODE_FIX)
    with pytest.raises(StoreUnavailable) as caught, translate():
        raise closed
    assert str(caught.value).endswith(STATEMENT_MODE_FIX)
    assert "set pool_mode = transaction" in STATEMENT_MODE_FIX


@pytest.mark.parametrize("server_said", [None, "server conn crashed?"])
def test_other_closed_connections_name_no_pool_mode(server_said: str | None) -> None:
    closed = _closed(server_said)
    assert describe(closed) == "ConnectionDoesNotExistError (SQLSTATE 08003)"
    with pytest.raises(StoreUnavailable) as caught, translate():
        raise closed
    assert STATEMENT_MODE_FIX not in str(caught.value)


def test_the_closed_transaction_met_after_the_refusal_names_the_fix_too() -> None:
    """The transaction's end meets the connection PgBouncer closed: asyncpg's InterfaceError,
    raised while handling the refusal (its ``__context__``)."""
    refusal = _closed("transaction blocks not allowed in statement pooling mode")
    ended = asyncpg.InterfaceError(
        "cannot call Transaction.__aexit__(): the underlying connection is closed"
    )
    ended.__context__ = refusal
    refusal.__context__ = ended  # a loop, as an error re-raised while handling itself makes
    assert describe(ended).endswith(STATEMENT_MODE_FIX)
    with pytest.raises(StoreUnavailable) as caught, translate():
        raise ended
    assert str(caught.value).endswith(STATEMENT_MODE_FIX)
    alone = asyncpg.InterfaceError("cannot call Transaction.__aexit__(): connection is closed")
    assert STATEMENT_MODE_FIX not in describe(alone)
