"""Audit rows are chained when their transaction commits (migration 0012): what is hashed is the
same as the verifier computes, for any text; a rollback leaves nothing; and no appender holds
the chain's head while its transaction is still running."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.store import Store
from receiver.store.audit import append_in_tx, audit_insert_sql
from receiver.store.canonical import audit_data, canonical_json

# Text the database and Python could escape differently if either side built the JSON alone:
# quotes, backslashes, control characters (short and \u escapes), DEL, line and paragraph
# separators, non-BMP characters, HTML-looking text.
AWKWARD = [
    'say "hi" \\ back',
    "tab\tnew\nline\r\x08\x0c\x01\x1f\x7f",
    "\u2028\u2029 ünïcode 日本 🚒",
    "</script><b>&amp;",
    "",
]


async def test_rows_with_awkward_text_verify(store: Store) -> None:
    for i, text in enumerate(AWKWARD):
        await store.append_audit(
            text or "kind",
            fingerprint=text or None,
            data={"text": text, text: [i, 1.5, 1e-7, None, True], "nested": {"z": 1, "a": text}},
        )
    check = await store.verify_audit()
    assert check.ok, check
    assert check.checked == len(AWKWARD)


# Numbers that jsonb gives back in another form than Python wrote them: a float of magnitude
# 1e16 or more is written with an exponent and comes back as an integer, -0.0 comes back as
# 0.0; and keys that are not strings, which JSON makes strings (and so sorts as strings).
AWKWARD_NUMBERS: list[object] = [
    1e16,
    1.5e16,
    1.2345678901234567e20,
    -1e300,
    -0.0,
    2**70,
    1e-7,
    0.1 + 0.2,
    {1: "one", 10: "ten", 9: "nine"},
]


async def test_rows_with_awkward_numbers_verify(store: Store) -> None:
    for i, value in enumerate(AWKWARD_NUMBERS):
        await store.append_audit("number", data={"value": value, "i": i})
    check = await store.verify_audit()
    assert check.ok, check
    assert check.checked == len(AWKWARD_NUMBERS)


# Text jsonb stores: no NUL, no lone surrogate (neither can be stored, nor comes from intake).
_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=8)
_NUMBER = st.floats(allow_nan=False, allow_infinity=False)
_LEAF = st.none() | st.booleans() | st.integers() | _NUMBER | _TEXT
_JSON = st.recursive(
    _LEAF,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(_TEXT, inner, max_size=3)
        | st.dictionaries(st.integers(), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(values=st.lists(_JSON, min_size=1, max_size=10))
def test_audit_data_is_what_the_verifier_writes_from_jsonb(
    database_url: str, values: list[Any]
) -> None:
    # The verifier hashes canonical_json(json.loads(the stored jsonb's text)): audit_data must
    # be that text already, or a row verifies as edited (store/audit.py, store/canonical.py).
    async def stored(texts: list[str]) -> list[str]:
        conn = await asyncpg.connect(database_url)
        try:
            return [await conn.fetchval("SELECT $1::jsonb::text", text) for text in texts]
        finally:
            await conn.close()

    written = [audit_data({"value": value}) for value in values]
    back = asyncio.run(stored(written))
    assert [canonical_json(json.loads(text)) for text in back] == written


async def test_rows_of_one_transaction_chain_in_the_order_appended(
    store: Store, database_url: str
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            for i in range(5):
                await append_in_tx(conn, "test", None, None, {"i": i})
            # Not chained before the commit: the row waits in audit_pending.
            assert await conn.fetchval("SELECT count(*) FROM audit_log") == 0
        rows = await conn.fetch("SELECT id, data->>'i' AS i FROM audit_log ORDER BY id")
        assert [r["i"] for r in rows] == ["0", "1", "2", "3", "4"]
        assert await conn.fetchval("SELECT count(*) FROM audit_pending") == 0
        head = await conn.fetchrow("SELECT last_id, last_hash FROM audit_head")
        last = await conn.fetchrow("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")
        assert (head["last_id"], head["last_hash"]) == (last["id"], last["hash"])
    finally:
        await conn.close()
    assert (await store.verify_audit()).ok


async def test_a_rolled_back_append_leaves_nothing(store: Store, database_url: str) -> None:
    await store.append_audit("before")
    conn = await asyncpg.connect(database_url)
    try:
        tx = conn.transaction()
        await tx.start()
        await append_in_tx(conn, "rolled-back", None, None, {"x": 1})
        await tx.rollback()
        assert await conn.fetchval("SELECT count(*) FROM audit_pending") == 0
        kinds = [r["kind"] for r in await conn.fetch("SELECT kind FROM audit_log ORDER BY id")]
    finally:
        await conn.close()
    assert kinds == ["before"]
    await store.append_audit("after")
    check = await store.verify_audit()
    assert check.ok, check
    assert check.checked == 2


async def test_an_open_transaction_does_not_hold_the_chain(store: Store, database_url: str) -> None:
    """A transaction that appended and is still running (a busy worker between statements)
    does not make another appender wait: the head is taken only at commit."""
    slow = await asyncpg.connect(database_url)
    try:
        tx = slow.transaction()
        await tx.start()
        await append_in_tx(slow, "slow", None, None, {"who": "slow"})
        # Before migration 0012 this waited on the head row until the slow one committed.
        await asyncio.wait_for(store.append_audit("quick", data={"who": "quick"}), timeout=10)
        await tx.commit()
        kinds = [r["kind"] for r in await slow.fetch("SELECT kind FROM audit_log ORDER BY id")]
    finally:
        await slow.close()
    assert kinds == ["quick", "slow"]  # chained in commit order
    check = await store.verify_audit()
    assert check.ok, check
    assert check.checked == 2


async def test_rows_queued_by_sql_hash_as_python_would(store: Store, database_url: str) -> None:
    """``audit_insert_sql`` writes the fingerprint's and kind's JSON with PostgreSQL's
    ``to_json``; the verifier recomputes them with Python's. The two must agree on any text."""
    conn = await asyncpg.connect(database_url)
    try:
        for text in AWKWARD:
            source = "(SELECT $1::text AS kind, $2::text AS fingerprint, NULL::uuid AS id) AS src"
            sql = audit_insert_sql(
                source, kind="src.kind", run_id="src.id", fingerprint="src.fingerprint", data="$3"
            )
            await conn.execute(sql, text or "kind", text, audit_data({"text": text}))
    finally:
        await conn.close()
    check = await store.verify_audit()
    assert check.ok, check
    assert check.checked == len(AWKWARD)


async def test_the_seal_reads_its_rows_by_key_not_through_the_queues_dead_rows(
    store: Store, database_url: str
) -> None:
    # Every sealed row is deleted: the queue holds dead rows until autovacuum (2,000 of them).
    for i in range(300):
        await store.append_audit("earlier", data={"i": i})
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            for i in range(3):
                await append_in_tx(conn, "test", None, None, {"i": i})
            # Seal now, inside the transaction, so its scans are counted in this transaction's
            # statistics (a deferred trigger otherwise runs at COMMIT).
            await conn.execute("SET CONSTRAINTS audit_pending_seal IMMEDIATE")
            scans = await conn.fetchrow(
                "SELECT seq_scan, idx_scan FROM pg_stat_xact_user_tables"
                " WHERE relname = 'audit_pending'"
            )
            assert await conn.fetchval("SELECT count(*) FROM audit_pending") == 0
        assert scans["seq_scan"] == 0, dict(scans)
        assert scans["idx_scan"] > 0
    finally:
        await conn.close()
    assert (await store.verify_audit()).ok


async def test_a_queued_row_without_its_hashed_text_is_refused_when_queued(
    store: Store, database_url: str
) -> None:
    """Neither hashed_mid (a row queued before migration 0040) nor hashed_print: the seal
    could not hash it, so the queue refuses it at once, naming the rule."""
    conn = await asyncpg.connect(database_url)
    try:
        with pytest.raises(asyncpg.CheckViolationError, match="audit_pending_hashed"):
            await conn.execute(
                "INSERT INTO audit_pending (kind, data, hashed_end)"
                """ VALUES ('x', '{}', '"kind":"x","run_id":null')"""
            )
    finally:
        await conn.close()
    check = await store.verify_audit()
    assert check.ok, check
