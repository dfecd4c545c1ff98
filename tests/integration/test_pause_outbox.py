"""The kill switch's audit outbox (receiver/audit_outbox.py) on real Redis and PostgreSQL: what
the store missed is written once, in order, whoever drains it and however often.

The records here are queued as a route leaves them when its write failed or its process died
after the Redis step: by an ``AuditedSwitch`` without a store, which writes nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import redis.asyncio
import structlog
from structlog.testing import capture_logs

from receiver.audit_outbox import AuditedSwitch
from receiver.guards.policy import GuardSettings, epoch_ms
from receiver.guards.redis_guards import Guards
from receiver.guards.switch import UNREADABLE_KIND, Record
from receiver.model import NamespacePolicy
from receiver.store import OnceEntry, Store, StoreUnavailable
from receiver.store.audit import append_in_tx
from receiver.telemetry import Metrics
from tests.support.polling import eventually
from tests.support.postgres import PostgresServer

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

LOG = structlog.get_logger("test")


def _guards(client: redis.asyncio.Redis) -> Guards:
    return Guards(client, NamespacePolicy(), GuardSettings())


async def _rows(store: Store) -> list[dict[str, Any]]:
    async with store._pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT kind, data::text AS data FROM audit_log WHERE kind LIKE 'guards.%' ORDER BY id"
        )
    return [{"kind": r["kind"], **json.loads(r["data"])} for r in rows]


async def _queue(switch: AuditedSwitch, count: int) -> list[Record]:
    """``count`` moves, pauses and resumes by turns, each by its own operator; their records."""
    records = []
    for i in range(count):
        if i % 2 == 0:
            recorded = await switch.pause(None, f"réason {i} ✓", by=f"op{i}", via="api")
        else:
            recorded = await switch.resume(by=f"op{i}", via="api")
        assert recorded.audit_queued
        records.append(recorded.switched.record)
    return records


@pytest.fixture
async def other_store(database_url: str) -> AsyncIterator[Store]:
    """A second replica's store: its own pool on the same database."""
    created = await Store.connect(database_url, min_size=1, max_size=2)
    try:
        yield created
    finally:
        await created.close()


@pytest.fixture
async def other_redis(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """A second replica's Redis client, on the same server."""
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def test_two_replicas_draining_together_write_each_record_once_in_order(
    redis_client: redis.asyncio.Redis,
    other_redis: redis.asyncio.Redis,
    store: Store,
    other_store: Store,
) -> None:
    records = await _queue(AuditedSwitch(_guards(redis_client), None, LOG), 30)
    one = AuditedSwitch(_guards(redis_client), store, LOG)
    two = AuditedSwitch(_guards(other_redis), other_store, LOG)
    # Small batches: the two take turns over the same records many times.
    written = await asyncio.gather(
        one.drain(min_age_s=0, limit=4),
        two.drain(min_age_s=0, limit=4),
        one.drain(min_age_s=0, limit=3),
        two.drain(min_age_s=0, limit=5),
    )
    assert sum(written) == 30
    rows = await _rows(store)
    assert [r["entry"] for r in rows] == [r.entry for r in records]
    assert [r["by"] for r in rows] == [f"op{i}" for i in range(30)]
    assert [r.get("reason") for r in rows[:3]] == ["réason 0 ✓", None, "réason 2 ✓"]
    assert all(r["recorded_late"] for r in rows)
    assert await one.switch.depth() == 0
    assert (await store.verify_audit()).ok


async def test_a_drain_that_died_before_taking_its_records_out_writes_nothing_twice(
    redis_client: redis.asyncio.Redis, store: Store
) -> None:
    records = await _queue(AuditedSwitch(_guards(redis_client), None, LOG), 4)
    # A drainer committed the rows of the first three and died before removing them.
    done = [OnceEntry(r.entry, r.kind, r.data, r.at, late=True) for r in records[:3]]
    assert await store.append_once(done) == [r.entry for r in records[:3]]
    # A restarted service drains: the fourth is written, the three are taken out unwritten.
    again = AuditedSwitch(_guards(redis_client), store, LOG)
    assert await again.drain(min_age_s=0) == 1
    assert [r["entry"] for r in await _rows(store)] == [r.entry for r in records]
    assert await again.switch.depth() == 0
    assert await again.drain(min_age_s=0) == 0
    assert (await store.verify_audit()).ok


async def test_a_drainer_waits_for_a_write_in_flight_and_does_not_repeat_it(
    redis_client: redis.asyncio.Redis, store: Store, database_url: str
) -> None:
    """A route's write of its record holds the record's id uncommitted (slow, or a frozen
    server's COMMIT that lands when it thaws): a drainer waits for it, then writes only what
    it did not, after it."""
    first, second = await _queue(AuditedSwitch(_guards(redis_client), None, LOG), 2)
    route = await asyncpg.connect(database_url)
    try:
        tx = route.transaction()
        await tx.start()
        await route.execute("INSERT INTO audit_once (key) VALUES ($1)", first.entry)
        await append_in_tx(route, first.kind, None, None, first.data)
        drainer = AuditedSwitch(_guards(redis_client), store, LOG)
        draining = asyncio.create_task(drainer.drain(min_age_s=0))

        async def drainer_waits_on_a_lock() -> bool:
            waiting = await route.fetchval(
                """SELECT count(*) FROM pg_stat_activity
                   WHERE datname = current_database() AND wait_event_type = 'Lock'"""
            )
            return bool(waiting)

        await eventually(drainer_waits_on_a_lock, what="the drainer waiting on the route's write")
        assert not draining.done()
        await tx.commit()
        assert await draining == 1
    finally:
        await route.close()
    rows = await _rows(store)
    assert [r["entry"] for r in rows] == [first.entry, second.entry]
    assert ["recorded_late" in r for r in rows] == [False, True]
    assert await drainer.switch.depth() == 0
    assert (await store.verify_audit()).ok


async def test_a_full_outbox_never_holds_the_pause_back_and_says_so(
    redis_client: redis.asyncio.Redis, store: Store
) -> None:
    guards = _guards(redis_client)
    await _queue(AuditedSwitch(guards, None, LOG, cap=2), 2)
    with capture_logs() as logs:
        # The store away (none here): the pause stands, its record is neither written nor
        # queued, and an error line says so.
        lost = await AuditedSwitch(guards, None, LOG, cap=2).pause(
            None, "full", by="carol", via="api"
        )
        # The store there: written at once, though not queued.
        kept = await AuditedSwitch(guards, store, LOG, cap=2).resume(by="dave", via="api")
    assert (lost.audited, lost.audit_queued, lost.switched.record.queued) == (False, False, False)
    assert (kept.audited, kept.audit_queued) == (True, False)
    assert kept.switched.was_paused  # carol's pause took effect
    full = [e for e in logs if e["event"].startswith("the audit outbox is full")]
    assert [(e["log_level"], e["kind"], e["by"]) for e in full] == [
        ("error", "guards.pause", "carol"),
        ("error", "guards.resume", "dave"),
    ]
    assert [(r["kind"], r["by"]) for r in await _rows(store)] == [("guards.resume", "dave")]


async def test_records_younger_than_the_grace_are_left_to_their_route(
    redis_client: redis.asyncio.Redis, store: Store
) -> None:
    await _queue(AuditedSwitch(_guards(redis_client), None, LOG), 1)
    drainer = AuditedSwitch(_guards(redis_client), store, LOG)
    assert await drainer.drain(min_age_s=60) == 0
    assert await drainer.switch.depth() == 1
    assert await _rows(store) == []


async def test_an_unreadable_entry_is_recorded_as_it_is_and_blocks_nothing(
    redis_client: redis.asyncio.Redis, store: Store
) -> None:
    guards = _guards(redis_client)
    await redis_client.xadd(guards.keys.audit_outbox(), {"kind": "guards.pause", "data": "{"})
    [record] = await _queue(AuditedSwitch(guards, None, LOG), 1)
    drainer = AuditedSwitch(guards, store, LOG)
    assert await drainer.drain(min_age_s=0) == 2
    unreadable, paused = await _rows(store)
    assert unreadable["kind"] == UNREADABLE_KIND
    assert unreadable["fields"] == {"kind": "guards.pause", "data": "{"}
    assert paused["entry"] == record.entry
    assert await drainer.switch.depth() == 0


async def test_an_entry_the_audit_log_cannot_hold_as_it_is_is_recorded_unreadable(
    redis_client: redis.asyncio.Redis, store: Store
) -> None:
    # Well-formed entries (by hand, or another program) whose data jsonb refuses: NaN, and a
    # U+0000 escape. Each is recorded as it is, and the pause behind them is written too.
    guards = _guards(redis_client)
    for entry, data in (("nan", '{"by": NaN}'), ("nul", '{"by": "a\\u0000b"}')):
        await redis_client.xadd(
            guards.keys.audit_outbox(),
            {
                "entry": entry,
                "kind": "guards.resume",
                "at": "1000",
                "was_paused": "0",
                "data": data,
            },
        )
    [record] = await _queue(AuditedSwitch(guards, None, LOG), 1)
    drainer = AuditedSwitch(guards, store, LOG)

    assert await drainer.drain(min_age_s=0) == 3

    nan, nul, paused = await _rows(store)
    assert (nan["kind"], nan["entry"], nan["fields"]["data"]) == (
        UNREADABLE_KIND,
        "nan",
        '{"by": NaN}',
    )
    assert (nul["kind"], nul["entry"], nul["fields"]["data"]) == (
        UNREADABLE_KIND,
        "nul",
        '{"by": "a\\u0000b"}',
    )
    assert (paused["kind"], paused["entry"]) == ("guards.pause", record.entry)
    assert await drainer.switch.depth() == 0
    assert (await store.verify_audit()).ok


def _outbox_gauges(metrics: Metrics) -> tuple[float | None, float | None]:
    read = metrics.registry.get_sample_value
    return (
        read("remediator_audit_outbox_records"),
        read("remediator_audit_outbox_oldest_age_seconds"),
    )


async def _redis_ms(client: redis.asyncio.Redis) -> int:
    seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def test_the_gauges_show_what_waits_while_the_store_is_away_and_none_once_drained(
    redis_client: redis.asyncio.Redis, pg_controlled: PostgresServer, store: Store
) -> None:
    metrics = Metrics()
    switch = AuditedSwitch(_guards(redis_client), store, LOG)
    with pg_controlled.stopped(mode="fast"):
        moves = [
            await switch.pause(None, "db down", by="alice", via="api"),
            await switch.resume(by="alice", via="api"),
            await switch.pause(60, "db still down", by="bob", via="api"),
        ]
        assert [m.audit_queued for m in moves] == [True, True, True]
        oldest_ms = epoch_ms(moves[0].switched.record.at)
        # The service's drain: younger than its grace, nothing is written, all are counted.
        before = await _redis_ms(redis_client)
        assert await switch.drain(metrics=metrics) == 0
        after = await _redis_ms(redis_client)
        records, age = _outbox_gauges(metrics)
        assert records == 3
        assert age is not None
        # The oldest's age by Redis' clock, within the drain's call (its stream id's ms may
        # be the script's clock's next one).
        assert (before - oldest_ms - 1) / 1000 <= age <= (after - oldest_ms) / 1000
        # Past the grace the store is tried, and is away: the records still wait.
        with pytest.raises(StoreUnavailable):
            await switch.drain(min_age_s=0, metrics=metrics)
        assert _outbox_gauges(metrics)[0] == 3
    # The store back: written two a batch, and the last read shows none left.
    assert await switch.drain(min_age_s=0, limit=2, metrics=metrics) == 3
    assert _outbox_gauges(metrics) == (0, 0)
    assert [r["by"] for r in await _rows(store)] == ["alice", "alice", "bob"]
