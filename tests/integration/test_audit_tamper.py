"""`remediator audit verify` against someone with write access to the database: the table
refuses UPDATE and DELETE by trigger, so the attacker disables it (as the owner can), changes
the log, and verify must name the first row changed and how. And `remediator audit export`
writes the chain as JSON lines, from a time or an id on."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from receiver.store import Store
from tests.support.audit_tamper import broken, forge, insert, row_of, tampered
from tests.support.events import finished_runs
from tests.support.served import cli, database_env


@pytest.fixture
async def tamper(store: Store, database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection with the append-only triggers off, as an attacker would have; the rows
    are ids 1..12 (three runs of four rows)."""
    async with tampered(store, database_url) as conn:
        yield conn


async def test_verify_says_how_far_it_has_got_on_stderr(store: Store, database_url: str) -> None:
    await finished_runs(store, 3)
    code, out, err = await cli(
        database_env(database_url), "audit", "verify", "--progress-every", "5"
    )
    assert code == 0, err
    assert "audit log intact: 12 entries verified" in out
    assert [line for line in err.splitlines() if line.startswith("checked")] == [
        "checked 5 of about 12 entries …",
        "checked 10 of about 12 entries …",
    ]


async def test_an_edited_row_is_named(tamper: asyncpg.Connection, database_url: str) -> None:
    await tamper.execute("""UPDATE audit_log SET data = '{"outcome": "failed"}' WHERE id = 6""")
    assert "audit log broken at entry 6 (edited)" in await broken(database_url)


async def test_an_edited_row_with_its_hash_recomputed_is_named(
    tamper: asyncpg.Connection, database_url: str
) -> None:
    row = await row_of(tamper, 6)
    forged = forge(row, 6, row["prev_hash"], data='{"outcome": "failed"}')
    await tamper.execute("UPDATE audit_log SET data = $1::jsonb, hash = $2 WHERE id = 6",
                         forged["data"], forged["hash"])  # fmt: skip
    assert "audit log broken at entry 6 (edited)" in await broken(database_url)


async def test_a_row_whose_link_was_edited_is_named(
    tamper: asyncpg.Connection, database_url: str
) -> None:
    # Row 6's link changed, its hash not: row 6 was edited; row 5, intact, was named as
    # "rewritten with a new hash".
    await tamper.execute("UPDATE audit_log SET prev_hash = upper(prev_hash) WHERE id = 6")
    assert "audit log broken at entry 6 (edited)" in await broken(database_url)


async def test_a_deleted_row_is_named(tamper: asyncpg.Connection, database_url: str) -> None:
    await tamper.execute("DELETE FROM audit_log WHERE id = 6")
    err = await broken(database_url)
    assert "audit log broken at entry 7 (deleted)" in err
    assert "rows were deleted before row 7" in err


async def test_rows_deleted_at_the_end_are_named(
    tamper: asyncpg.Connection, database_url: str
) -> None:
    await tamper.execute("DELETE FROM audit_log WHERE id > 10")
    err = await broken(database_url)
    assert "audit log broken at entry 12 (deleted)" in err
    assert "the log ends at row 10" in err


async def test_rows_deleted_with_the_ids_closed_up_are_named(
    tamper: asyncpg.Connection, database_url: str
) -> None:
    # Rows 6 and 7 deleted and the rows after them moved down, so no id is missing: told as
    # "row 6 was edited".
    await tamper.execute("DELETE FROM audit_log WHERE id IN (6, 7)")
    await tamper.execute("UPDATE audit_log SET id = id - 2 WHERE id > 7")
    await tamper.execute("UPDATE audit_head SET last_id = 10")
    err = await broken(database_url)
    assert "audit log broken at entry 6 (deleted)" in err, err
    assert "rows were deleted before row 6, and the rows after them renumbered" in err
    assert "row 6 was appended as row 8 (its hash matches that id)" in err


async def test_a_renumbered_row_is_named(tamper: asyncpg.Connection, database_url: str) -> None:
    # The last row moved up one id: told as "row 13 was inserted after the last row".
    await tamper.execute("UPDATE audit_log SET id = 13 WHERE id = 12")
    err = await broken(database_url)
    assert "audit log broken at entry 13 (edited)" in err, err
    assert "row 13 was renumbered: it was appended as row 12" in err


async def test_an_inserted_row_is_named(tamper: asyncpg.Connection, database_url: str) -> None:
    # A row with a good link and a good hash, slipped in before the first one.
    first = await row_of(tamper, 1)
    await insert(tamper, forge(first, 0, "", data='{"outcome": "succeeded"}'))
    err = await broken(database_url)
    assert "audit log broken at entry 0 (inserted)" in err
    assert "row 1 after it links past it" in err


async def test_a_crude_inserted_row_is_named(tamper: asyncpg.Connection, database_url: str) -> None:
    # An id the sequence skipped (a rolled-back append leaves such gaps), a link to the row
    # before it, and a hash that is no hash of it.
    await tamper.execute("UPDATE audit_log SET id = id + 100 WHERE id > 6")
    await tamper.execute("UPDATE audit_head SET last_id = last_id + 100")
    row = await row_of(tamper, 6)
    await insert(tamper, {**row, "id": 7, "prev_hash": row["hash"], "hash": "f" * 64})
    assert "audit log broken at entry 7 (inserted)" in await broken(database_url)


async def test_a_row_inserted_after_the_last_is_named(
    tamper: asyncpg.Connection, database_url: str
) -> None:
    last = await row_of(tamper, 12)
    await insert(tamper, forge(last, 13, last["hash"], data='{"outcome": "resolved"}'))
    err = await broken(database_url)
    assert "audit log broken at entry 13 (inserted)" in err
    assert "after the last row the service appended (row 12)" in err


async def test_a_copy_of_a_row_put_after_the_last_is_named_not_the_row_it_copies(
    tamper: asyncpg.Connection, database_url: str
) -> None:
    # Rows 12 and 6 copied whole (link and hash kept) after the last row the service appended:
    # the copy is the row that was inserted, not the row it copies (row 12 was named, since
    # the copy links past it), and no row was deleted (the copy of row 6 links to row 5, which
    # is in the log: "rows were deleted before row 13" sent the auditor looking for a gap).
    for source in (12, 6):
        row = await row_of(tamper, source)
        await insert(tamper, {**row, "id": 13})
        err = await broken(database_url)
        assert "audit log broken at entry 13 (inserted)" in err, err
        assert "after the last row the service appended (row 12)" in err
        await tamper.execute("DELETE FROM audit_log WHERE id = 13")


async def test_reordered_rows_are_named(tamper: asyncpg.Connection, database_url: str) -> None:
    # Swap rows 6 and 7: each keeps its content, link and hash, only the order changes.
    await tamper.execute("UPDATE audit_log SET id = -7 WHERE id = 7")
    await tamper.execute("UPDATE audit_log SET id = 7 WHERE id = 6")
    await tamper.execute("UPDATE audit_log SET id = 6 WHERE id = -7")
    err = await broken(database_url)
    assert "audit log broken at entry 6 (reordered)" in err
    assert "it was appended after row 7, which now comes after it" in err


async def test_two_inserted_rows_are_named_not_the_last_of_them_as_rewritten(
    tamper: asyncpg.Connection, database_url: str
) -> None:
    # Two made-up rows with good links and hashes slipped in after row 6 (the rows after it
    # moved up to make room): row 107, which follows them, links past both to row 6. Told as
    # "row 8 was rewritten with a new hash": row 8 is one of the forged, not a rewritten row.
    await tamper.execute("UPDATE audit_log SET id = id + 100 WHERE id > 6")
    await tamper.execute("UPDATE audit_head SET last_id = last_id + 100")
    row = await row_of(tamper, 6)
    first = forge(row, 7, row["hash"], data='{"outcome": "succeeded"}')
    await insert(tamper, first)
    await insert(tamper, forge(row, 8, first["hash"], data='{"outcome": "verified"}'))
    err = await broken(database_url)
    assert "audit log broken at entry 7 (inserted)" in err, err
    assert "rows 7 to 8 were inserted: row 107 after them links past them to row 6" in err


async def test_rows_swapped_far_apart_are_reordered(
    tamper: asyncpg.Connection, database_url: str
) -> None:
    # Rows more than the verifier reads ahead (1000) apart: the row in row 6's place links to
    # a row far ahead. Told as "row 5 was rewritten with a new hash": row 5 is intact.
    await tamper.execute(
        """INSERT INTO audit_pending (kind, data, hashed_print, hashed_end)
           SELECT 'test.filler', '{}', 'null', '"kind":"test.filler","run_id":null'
           FROM generate_series(1, 1200)"""
    )
    last = await tamper.fetchval("SELECT max(id) FROM audit_log")
    await tamper.execute("UPDATE audit_log SET id = -1 WHERE id = $1", last)
    await tamper.execute("UPDATE audit_log SET id = $1 WHERE id = 6", last)
    await tamper.execute("UPDATE audit_log SET id = 6 WHERE id = -1")
    err = await broken(database_url)
    assert "audit log broken at entry 6 (reordered)" in err, err
    assert f"it was appended after row {last - 1}, which now comes after it" in err


# Data jsonb holds and Python's json cannot read back: an integer of more than 4,300 digits
# (Python's limit on converting one from text), and arrays nested deeper than its recursion
# limit. No append can write either (canonical_json refuses them), so only an edit puts one in.
UNREADABLE = {
    "a huge number": "'1e5000'",
    "deep nesting": "(repeat('[', 3000) || repeat(']', 3000))",
}


@pytest.mark.parametrize("value", UNREADABLE.values(), ids=UNREADABLE.keys())
async def test_a_row_edited_to_hold_data_python_cannot_read_is_named(
    tamper: asyncpg.Connection, database_url: str, value: str
) -> None:
    await tamper.execute(
        f"UPDATE audit_log SET data = jsonb_set(data, '{{x}}', {value}::jsonb) WHERE id = 6"
    )
    err = await broken(database_url)
    assert "audit log broken at entry 6 (edited)" in err
    assert "Traceback" not in err

    # The export still writes every row, the edited one's data as the database holds it, so a
    # SIEM that ships the log goes on past it.
    code, out, err = await cli(database_env(database_url), "audit", "export")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [e["id"] for e in lines] == list(range(1, 13))
    edited = lines[5]
    assert isinstance(edited["data"], str)
    assert edited["data"].startswith("{")
    assert "cannot be read" in edited["data_unreadable"]
    assert all(isinstance(e["data"], dict) and "data_unreadable" not in e for e in lines[6:])


# Times timestamptz holds and Python cannot: asyncpg raised OverflowError reading the first two,
# and `audit verify` and `audit export` ended in a traceback.
TIMES = {"year 20000": "20000-01-01 00:00:00+00", "BC": "2026-12-05 00:00:00+00 BC",
         "infinity": "infinity", "-infinity": "-infinity"}  # fmt: skip


@pytest.mark.parametrize("at", TIMES.values(), ids=TIMES.keys())
async def test_a_row_whose_time_was_edited_out_of_python_range_is_named(
    tamper: asyncpg.Connection, database_url: str, at: str
) -> None:
    await tamper.execute("UPDATE audit_log SET at = $1::text::timestamptz WHERE id = 6", at)
    err = await broken(database_url)
    assert "audit log broken at entry 6 (edited)" in err, err
    assert "Traceback" not in err

    code, out, err = await cli(database_env(database_url), "audit", "export")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [e["id"] for e in lines] == list(range(1, 13))
    stored = await tamper.fetchval("SELECT at::text FROM audit_log WHERE id = 6")
    assert lines[5]["at"] == stored
    assert "is outside the years 1 to 9999" in lines[5]["at_unreadable"]
    assert all("at_unreadable" not in e for i, e in enumerate(lines) if i != 5)


async def test_export_writes_the_chain_as_json_lines(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    env = database_env(database_url)
    await finished_runs(store, 3)
    code, out, err = await cli(env, "audit", "export")
    assert code == 0, err
    assert "exported 12 audit entries" in err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [e["id"] for e in lines] == list(range(1, 13))
    assert set(lines[0]) == {"id", "at", "kind", "run_id", "fingerprint", "data", "prev_hash",
                             "hash"}  # fmt: skip
    assert lines[0]["kind"] == "run.created"
    assert lines[0]["data"]["target"] == {"kind": "Deployment", "namespace": "shop", "name": "w0"}
    # The export holds the chain: a SIEM can check it without the database.
    assert lines[0]["prev_hash"] == ""
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(lines))

    # From an id on (a SIEM ships what came after the last id it has), into a file.
    target = tmp_path / "audit.jsonl"
    code, _, err = await cli(env, "audit", "export", "--after", "10", "-o", str(target))
    assert code == 0, err
    assert [json.loads(line)["id"] for line in target.read_text().splitlines()] == [11, 12]

    # From a time on: the rows at or after the 5th row's time.
    cut = lines[4]["at"]
    code, out, err = await cli(env, "audit", "export", "--since", cut)
    assert code == 0, err
    assert [json.loads(line)["id"] for line in out.splitlines()] == list(range(5, 13))
    code, out, err = await cli(env, "audit", "export", "--since", "next week")
    assert code == 2
    assert "--since" in err
