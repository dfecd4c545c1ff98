"""Which store errors name the transaction pooler's fix (receiver/store/errors.py): asyncpg's
own prepared statements missing (26000) or clashing (42P05), and nothing else."""

from __future__ import annotations

import asyncpg
import pytest

from receiver.store.errors import describe, translate

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
