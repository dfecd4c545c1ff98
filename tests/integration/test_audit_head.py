"""`remediator audit verify` against edits of audit_head, the row every append moves to the
last row it wrote (its id and hash, together): a head whose two columns name different rows,
a second head row, none."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from receiver.store import Store
from tests.support.audit_tamper import broken, tampered


@pytest.fixture
async def tamper(store: Store, database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection with the append-only triggers off, as an attacker would have; the rows
    are ids 1..12 (three runs of four rows)."""
    async with tampered(store, database_url) as conn:
        yield conn


# Every append writes audit_head's last_id and last_hash together; a head whose two columns
# name different rows was edited. Its last_id changed alone passed as intact.
HEAD_EDITS = {
    "last_id lowered": (
        ["UPDATE audit_head SET last_id = 10"],
        "it names row 10 as the last row the service appended but holds the hash of row 12,"
        " where the chain ends: its last_id was changed",
    ),
    "last_id raised": (
        ["UPDATE audit_head SET last_id = 20"],
        "it names row 20 as the last row the service appended but holds the hash of row 12",
    ),
    "last_id emptied": (
        ["UPDATE audit_head SET last_id = NULL"],
        "it names no row as the last row the service appended but holds the hash of row 12",
    ),
    "last rows deleted, the head's hash moved back": (
        [
            "DELETE FROM audit_log WHERE id > 10",
            "UPDATE audit_head SET last_hash = (SELECT hash FROM audit_log WHERE id = 10)",
        ],
        "holds the hash of row 10, where the chain ends: rows after row 10 were deleted",
    ),
    "truncated, the head's hash reset": (
        [
            "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_truncate",
            "TRUNCATE audit_log",
            "UPDATE audit_head SET last_hash = ''",
        ],
        "it names row 12 as the last row the service appended but holds the hash of an empty log",
    ),
    "the head's hash moved back, the rows kept": (
        ["UPDATE audit_head SET last_hash = (SELECT hash FROM audit_log WHERE id = 10)"],
        "holds the hash of row 10, though the chain goes on to row 12",
    ),
}


@pytest.mark.parametrize("edit", HEAD_EDITS.values(), ids=HEAD_EDITS.keys())
async def test_an_edited_head_is_named(
    tamper: asyncpg.Connection, database_url: str, edit: tuple[list[str], str]
) -> None:
    statements, says = edit
    for sql in statements:
        await tamper.execute(sql)
    err = await broken(database_url)
    assert "error: audit log broken (edited): audit_head was edited: " in err, err
    assert says in err, err


async def test_a_second_head_row_is_named(tamper: asyncpg.Connection, database_url: str) -> None:
    # The head's key dropped to add a row: its first row still agreed with the chain.
    await tamper.execute("ALTER TABLE audit_head DROP CONSTRAINT audit_head_pkey")
    await tamper.execute("INSERT INTO audit_head VALUES (true, 5, 'x')")
    err = await broken(database_url)
    assert "audit log broken (edited): audit_head was edited: it holds more than one row" in err


async def test_a_missing_head_names_no_entry(tamper: asyncpg.Connection, database_url: str) -> None:
    await tamper.execute("DELETE FROM audit_head")
    err = await broken(database_url)
    assert "error: audit log broken (deleted): audit_head is missing" in err, err


# A table or column of the log dropped read as the database refusing the user
# ("REMEDIATOR_DATABASE_URL: PostgreSQL at ... refused: UndefinedTableError"), not as the log
# changed.
DROPS = {
    "audit_head": ("DROP TABLE audit_head CASCADE", 'relation "audit_head" does not exist'),
    "audit_pending": ("DROP TABLE audit_pending CASCADE", 'relation "audit_pending"'),
    "a column": ("ALTER TABLE audit_log DROP COLUMN fingerprint", 'column "fingerprint"'),
}


@pytest.mark.parametrize("drop", DROPS.values(), ids=DROPS.keys())
async def test_a_dropped_table_or_column_is_named(
    tamper: asyncpg.Connection, database_url: str, drop: tuple[str, str]
) -> None:
    statement, says = drop
    await tamper.execute(statement)
    err = await broken(database_url)
    assert "error: audit log broken (deleted): the audit log's tables were changed: " in err, err
    assert says in err
