"""How the audit log is stored (migrations 0020 and 0021): the queue of rows waiting for their
commit is not written to the WAL and a crash loses no sealed row; the log's time reads go
through indexes that cost an append little."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from receiver.store import Store
from receiver.store.audit import append_in_tx
from receiver.store.review import SERVICE_AUDIT_SQL, service_audit_args
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.postgres


async def _kinds(conn: asyncpg.Connection) -> list[str]:
    return [r["kind"] for r in await conn.fetch("SELECT kind FROM audit_log ORDER BY id")]


async def test_a_crash_keeps_every_sealed_row_and_the_chain_goes_on(
    pg_controlled: PostgresServer, database_url: str
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        # Pending rows never outlive their transaction: not logged, so not in the WAL.
        persistence = await conn.fetchval(
            "SELECT relpersistence::text FROM pg_class WHERE relname = 'audit_pending'"
        )
        assert persistence == "u"
        async with conn.transaction():
            for i in range(3):
                await append_in_tx(conn, "sealed", None, None, {"i": i})
    finally:
        await conn.close()

    cut_short = await asyncpg.connect(database_url)
    tx = cut_short.transaction()
    await tx.start()
    await append_in_tx(cut_short, "cut-short", None, None, {"i": 3})
    pg_controlled.stop("immediate")  # a crash, with that transaction's row pending
    try:
        cut_short.terminate()
    finally:
        pg_controlled.start()

    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM audit_pending") == 0
        assert await _kinds(conn) == ["sealed"] * 3
        # The queue's sequence may restart after the crash: appends still chain in order.
        async with conn.transaction():
            for i in range(2):
                await append_in_tx(conn, "after", None, None, {"i": 10 + i})
        assert await _kinds(conn) == ["sealed"] * 3 + ["after"] * 2
        order = [r["i"] for r in await conn.fetch("SELECT data->>'i' AS i FROM audit_log")]
        assert order[-2:] == ["10", "11"]
    finally:
        await conn.close()
    store = await Store.connect(database_url, min_size=1, max_size=2)
    try:
        check = await store.verify_audit()
    finally:
        await store.close()
    assert check.ok, check
    assert check.checked == 5


async def test_a_hash_copied_onto_another_row_is_found_without_a_unique_index(
    store: Store, database_url: str
) -> None:
    """The hash's unique index is gone (0021): nothing read a row by its hash. A row given
    another row's hash, which that index refused, is an edit the verifier finds."""
    for i in range(3):
        await store.append_audit("row", data={"i": i})
    conn = await asyncpg.connect(database_url)
    try:
        listed = await conn.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'audit_log'")
        indexes = {r["indexname"] for r in listed}
        assert indexes == {
            "audit_log_pkey",
            "audit_log_run",
            "audit_log_at",
            "audit_log_service_at",
        }
        ids = [r["id"] for r in await conn.fetch("SELECT id FROM audit_log ORDER BY id")]
        # As an attacker who can write the table would (the append-only trigger off).
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        await conn.execute(
            "UPDATE audit_log SET hash = (SELECT hash FROM audit_log WHERE id = $1) WHERE id = $2",
            ids[0],
            ids[1],
        )
    finally:
        await conn.close()
    check = await store.verify_audit()
    assert not check.ok
    assert (check.first_bad_id, check.problem) == (ids[1], "edited"), check


async def _fill(conn: asyncpg.Connection, runs: int, service: int, start: datetime) -> None:
    """``runs`` audit rows of runs, then ``service`` rows of the service's own, one a second
    from ``start``, with ``at`` growing with ``id`` as the seal writes them."""
    await conn.execute(
        """INSERT INTO audit_log (at, kind, run_id, fingerprint, data, prev_hash, hash)
           SELECT $1::timestamptz + make_interval(secs => g), 'run.created',
                  gen_random_uuid(), 'f', '{}'::jsonb, '', md5(g::text)
           FROM generate_series(1, $2) g""",
        start,
        runs,
    )
    await conn.execute(
        """INSERT INTO audit_log (at, kind, run_id, fingerprint, data, prev_hash, hash)
           SELECT $1::timestamptz + make_interval(secs => $2 + g), 'service.paused',
                  NULL, NULL, '{}'::jsonb, '', md5('s' || g::text)
           FROM generate_series(1, $3) g""",
        start,
        runs,
        service,
    )
    await conn.execute("ANALYZE audit_log")
    # What autosummarize does once a block range fills: the new ranges enter the BRIN index.
    await conn.execute("SELECT brin_summarize_new_values('audit_log_at')")


async def _plan(database_url: str, runs: int, service: int, sql: str, *args: object) -> str:
    """The plan (JSON text) of ``sql`` over a log ``_fill``ed with ``runs`` and ``service``
    rows from 2026-01-01."""
    conn = await asyncpg.connect(database_url)
    try:
        await _fill(conn, runs, service, START)
        return json.dumps(json.loads(await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)))
    finally:
        await conn.close()


START = datetime(2026, 1, 1, tzinfo=UTC)


async def test_the_reviews_service_rows_by_time_come_from_their_own_small_index(
    store: Store, database_url: str
) -> None:
    until = START + timedelta(days=1)
    args = service_audit_args(START, until, ["service.paused"])
    plan = await _plan(database_url, 20_000, 5, SERVICE_AUDIT_SQL, *args)
    assert "audit_log_service_at" in plan, plan
    rows = await store.review_service_audit(START, until, ["service.paused"])
    assert [r["kind"] for r in rows] == ["service.paused"] * 5


async def test_an_export_by_time_reads_only_the_range_not_the_whole_log(
    store: Store, database_url: str
) -> None:
    since = START + timedelta(seconds=19_900)
    sql = "SELECT id FROM audit_log WHERE at >= $1 ORDER BY id"
    plan = await _plan(database_url, 20_000, 0, sql, since)
    assert "audit_log_at" in plan, plan  # the range, by the block range index
    exported = [row async for row in store.export_audit(since=since)]
    assert len(exported) == 101
