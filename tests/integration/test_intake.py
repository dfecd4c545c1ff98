"""Intake against a real PostgreSQL: idempotent, durable, group-committed, 503-able."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import asyncpg
import pytest

from receiver.alertmanager import Notification, parse_notification
from receiver.intake import Intake, IntakeResult
from receiver.model import Status
from receiver.store import WORK_CHANNEL as EVENTS_CHANNEL
from receiver.store import Store, StoreUnavailable
from tests.support import payloads
from tests.support.gated_store import GatedStore, gated_store
from tests.support.polling import current, eventually, eventually_not_none
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.postgres

SAMPLE = Path(__file__).resolve().parents[2] / "receiver" / "samples" / "high-memory.json"


def notification(n_alerts: int = 3, *, seed: str = "x", status: str = "firing") -> Notification:
    """``n_alerts`` alerts of one group, told apart by their pod label (``{seed}-{i}``)."""
    return payloads.notification(
        *(
            payloads.alert(
                {"alertname": "HighMemoryUsage", "namespace": "shop", "pod": f"{seed}-{i}"},
                status=status,
                starts_at="2024-05-01T10:00:00.123456789Z",
            )
            for i in range(n_alerts)
        )
    )


async def _xmins(database_url: str) -> int:
    """How many transactions wrote the alert_events rows."""
    conn = await asyncpg.connect(database_url)
    try:
        value: int = await conn.fetchval("SELECT count(DISTINCT xmin::text) FROM alert_events")
        return value
    finally:
        await conn.close()


async def test_the_shipped_sample_is_accepted(store: Store) -> None:
    parsed = parse_notification(SAMPLE.read_bytes())
    intake = Intake(store)
    first = await intake.accept(parsed)
    assert first.accepted == len(parsed.alerts)
    assert first.duplicates == 0
    assert await intake.accept(parsed) == IntakeResult(0, len(parsed.alerts))


async def test_same_notification_five_times_is_accepted_once(store: Store) -> None:
    intake = Intake(store)
    results = [await intake.accept(notification(3)) for _ in range(5)]
    assert results == [IntakeResult(3, 0)] + [IntakeResult(0, 3)] * 4
    assert await store.queue_depth() == 3


@pytest.mark.parametrize("group_commit", [True, False])
async def test_same_notification_twenty_times_concurrently(
    store: Store, group_commit: bool
) -> None:
    intake = Intake(store, group_commit=group_commit)
    results = await asyncio.gather(*(intake.accept(notification(3)) for _ in range(20)))
    assert sum(r.accepted for r in results) == 3
    assert sum(r.duplicates for r in results) == 57
    assert all(r.accepted + r.duplicates == 3 for r in results)
    assert await store.queue_depth() == 3


async def test_concurrent_requests_share_one_transaction(store: Store, database_url: str) -> None:
    intake = Intake(store)
    results = await asyncio.gather(
        *(intake.accept(notification(2, seed=f"n{i}")) for i in range(20))
    )
    assert results == [IntakeResult(2, 0)] * 20
    assert await _xmins(database_url) == 1


async def test_batches_are_bounded_by_max_batch(store: Store, database_url: str) -> None:
    intake = Intake(store, max_batch=4)
    results = await asyncio.wait_for(
        asyncio.gather(*(intake.accept(notification(1, seed=f"n{i}")) for i in range(12))),
        timeout=5,
    )
    assert results == [IntakeResult(1, 0)] * 12
    assert await _xmins(database_url) == 3


def _queued(intake: Intake) -> int:
    """How many notifications wait in the batcher for a writer (white-box, for the gate)."""
    assert intake._batcher is not None
    return len(intake._batcher._queue)


async def _one_writing_three_queued(
    gated: GatedStore,
) -> tuple[asyncio.Task[IntakeResult], list[asyncio.Task[IntakeResult]]]:
    """One writer's intake over ``gated``: a notification ("first") that the writer took alone
    and holds at the gate, and three more queued behind it; their callers' tasks."""
    intake = Intake(gated, max_in_flight=1)
    first = asyncio.create_task(intake.accept(notification(1, seed="first")))
    await eventually(current(lambda: gated.writing), lambda w: w == [1])
    later = [asyncio.create_task(intake.accept(notification(1, seed=f"l{i}"))) for i in range(3)]
    await eventually(current(lambda: _queued(intake)), lambda n: n == 3)
    return first, later


async def test_notifications_queue_while_the_writer_is_busy_then_share_a_commit(
    store: Store, database_url: str
) -> None:
    gated = gated_store(store)
    first, later = await _one_writing_three_queued(gated)
    assert not first.done()
    assert not any(t.done() for t in later)
    gated.gate.set()
    results = await asyncio.wait_for(asyncio.gather(first, *later), timeout=5)
    assert results == [IntakeResult(1, 0)] * 4
    assert gated.writing == [1, 3]  # "first", then the three that queued behind it
    assert await _xmins(database_url) == 2


async def test_a_batchs_callers_have_their_answers_before_the_next_batch_is_written(
    store: Store,
) -> None:
    """After a commit its callers answer first (in the service: their webhooks' responses go
    out), then the writer takes the next batch: a client waiting on its answer is not held
    back by the next statement's building and sending (docs/performance-history.md, stop 48)."""
    gated = gated_store(store)
    first, later = await _one_writing_three_queued(gated)
    gated.observe = first.done
    gated.gate.set()
    results = await asyncio.wait_for(asyncio.gather(first, *later), timeout=5)
    assert results == [IntakeResult(1, 0)] * 4
    assert gated.writing == [1, 3]
    # As the second batch reached the store, the first one's caller had its answer.
    assert gated.observed == [True]


async def test_a_write_that_does_not_commit_in_time_is_unavailable_and_the_queue_is_dropped(
    store: Store,
) -> None:
    """Each caller's answer is bounded by the intake timeout, whatever the write does: one
    still queued behind a stuck write is answered 503 and never written."""
    gated = gated_store(store)
    intake = Intake(gated, max_in_flight=1, timeout_s=0.5)
    first = asyncio.create_task(intake.accept(notification(1, seed="stuck")))
    await eventually(current(lambda: gated.writing), lambda w: w == [1])
    queued = asyncio.create_task(intake.accept(notification(1, seed="queued")))
    await eventually(current(lambda: _queued(intake)), lambda n: n == 1)
    # Each says what became of it: the one being written may yet commit (and a 503 that said
    # "not accepted" was followed by its run), the queued one never will.
    fates = {
        first: "its write may still commit, and Alertmanager's resend is then a duplicate",
        queued: "it was never written",
    }
    for caller, fate in fates.items():
        with pytest.raises(StoreUnavailable) as unavailable:
            await asyncio.wait_for(caller, timeout=5)
        assert str(unavailable.value) == f"not committed within 0.5s; {fate}"
    assert _queued(intake) == 0
    gated.gate.set()
    await asyncio.wait_for(intake.drain(), timeout=5)
    # The write in flight went on and committed (the resend is a duplicate); the queued one
    # was dropped, so its resend is new.
    assert gated.writing == [1]
    assert await intake.accept(notification(1, seed="stuck")) == IntakeResult(0, 1)
    assert await intake.accept(notification(1, seed="queued")) == IntakeResult(1, 0)


async def test_each_caller_is_answered_at_its_own_deadline_by_the_one_timer(
    store: Store,
) -> None:
    gated = gated_store(store)
    intake = Intake(gated, max_in_flight=1, timeout_s=0.6)
    first = asyncio.create_task(intake.accept(notification(1, seed="stuck")))
    await eventually(current(lambda: gated.writing), lambda w: w == [1])
    await asyncio.sleep(0.3)  # the second caller's deadline comes 0.3 s after the first's
    second = asyncio.create_task(intake.accept(notification(1, seed="later")))
    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(first, timeout=5)
    assert not second.done()  # its own deadline has not come yet
    with pytest.raises(StoreUnavailable, match=r"not committed within 0\.6s"):
        await asyncio.wait_for(second, timeout=5)
    gated.gate.set()
    await asyncio.wait_for(intake.drain(), timeout=5)


async def test_answered_callers_are_not_kept(store: Store) -> None:
    intake = Intake(store)
    for i in range(200):
        assert await intake.accept(notification(1, seed=f"kept-{i}")) == IntakeResult(1, 0)
    assert intake._batcher is not None
    assert len(intake._batcher._unanswered) <= 1


async def test_a_caller_that_goes_away_does_not_fail_its_batch(store: Store) -> None:
    gated = gated_store(store)
    intake = Intake(gated, max_batch=4)
    callers = [asyncio.create_task(intake.accept(notification(1, seed=f"c{i}"))) for i in range(3)]
    # The writer holds all three in one batch, at the gate: the caller goes away meanwhile.
    await eventually(current(lambda: gated.writing), lambda w: w == [3])
    callers[0].cancel()
    gated.gate.set()
    results = await asyncio.wait_for(asyncio.gather(*callers[1:]), timeout=5)
    assert results == [IntakeResult(1, 0)] * 2
    assert callers[0].cancelled()
    # The cancelled caller's alert was in the batch and is stored: a retry is a duplicate.
    assert await store.queue_depth() == 3
    assert await intake.accept(notification(1, seed="c0")) == IntakeResult(0, 1)


async def test_store_errors_fail_only_their_batch(
    pg_controlled: PostgresServer, database_url: str
) -> None:
    store = await Store.connect(database_url, min_size=1, max_size=2, connect_timeout_s=2)
    try:
        intake = Intake(store)
        pg_controlled.stop("fast")
        try:
            with pytest.raises(StoreUnavailable):
                await intake.accept(notification(1, seed="down"))
        finally:
            pg_controlled.start()

        # The writer that failed is gone; a notification after the restart finds a new one.
        # Sent again after a 503 as Alertmanager does: on a loaded machine the first connection
        # to the restarted server may take longer than the store's 5 s (a CI run met it once),
        # and that answer is a 503 too; the copy that lands is stored once (a duplicate if a
        # write the 503 cut short had committed after all).
        async def accept_up() -> IntakeResult | None:
            try:
                return await asyncio.wait_for(intake.accept(notification(1, seed="up")), 10)
            except StoreUnavailable:
                return None

        result = await eventually_not_none(accept_up, timeout_s=60, what="an accepted notification")
        assert (result.accepted, result.accepted + result.duplicates) in ((1, 1), (0, 1))
        assert await store.queue_depth() == 1
    finally:
        await store.close()


async def test_resolved_is_a_separate_event(store: Store) -> None:
    intake = Intake(store)
    assert await intake.accept(notification(2)) == IntakeResult(2, 0)
    assert await intake.accept(notification(2, status="resolved")) == IntakeResult(2, 0)
    assert await intake.accept(notification(2)) == IntakeResult(0, 2)  # late firing duplicate


async def test_store_down_raises_unavailable_and_nothing_accepted_is_lost(
    pg_controlled: PostgresServer, database_url: str
) -> None:
    store = await Store.connect(database_url, min_size=2, max_size=4, connect_timeout_s=2)
    try:
        intake = Intake(store)
        accepted = [await intake.accept(notification(2, seed=f"before{i}")) for i in range(10)]
        assert sum(r.accepted for r in accepted) == 20

        pg_controlled.stop("immediate")  # a crash: only what was fsynced at COMMIT survives
        try:
            with pytest.raises(StoreUnavailable):
                await intake.accept(notification(2, seed="during"))
            # A whole group-commit batch fails together, every caller hears about it.
            outcomes = await asyncio.gather(
                *(intake.accept(notification(1, seed=f"batch{i}")) for i in range(5)),
                return_exceptions=True,
            )
            assert all(isinstance(o, StoreUnavailable) for o in outcomes), outcomes
            with pytest.raises(StoreUnavailable):
                await store.ping()
        finally:
            pg_controlled.start()

        await store.ping()
        assert await store.queue_depth() == 20
        assert await intake.accept(notification(2, seed="before0")) == IntakeResult(0, 2)
        assert await intake.accept(notification(2, seed="after")) == IntakeResult(2, 0)
    finally:
        await store.close()


async def test_connect_to_a_dead_server_is_unavailable(pg_server: PostgresServer) -> None:
    # A port nobody listens on: connection refused.
    dead = pg_server.url("postgres").replace(f":{pg_server.port}/", ":1/")
    with pytest.raises(StoreUnavailable):
        await Store.connect(dead, min_size=1, max_size=1, connect_timeout_s=2)


async def test_labels_are_stored_per_alert(store: Store, database_url: str) -> None:
    await Intake(store).accept(notification(2, seed="p"))
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT labels::text, alertname FROM alert_events ORDER BY id")
    finally:
        await conn.close()
    pods = sorted(json.loads(r["labels"])["pod"] for r in rows)
    assert pods == ["p-0", "p-1"]
    assert {r["alertname"] for r in rows} == {"HighMemoryUsage"}


async def test_settled_events_are_stored_done_and_never_queued(
    store: Store, database_url: str
) -> None:
    def settle(status: Status, labels: Mapping[str, str]) -> str | None:
        return "no rule matches" if labels["pod"].endswith("-0") else None

    intake = Intake(store, settle=settle)
    assert await intake.accept(notification(3, seed="s")) == IntakeResult(3, 0)
    # Settled or not, a repeat is still a duplicate: dedupe does not depend on the queue.
    assert await intake.accept(notification(3, seed="s")) == IntakeResult(0, 3)
    assert await store.queue_depth() == 2
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT labels->>'pod' AS pod, state, settled_reason, done_at IS NOT NULL AS done"
            " FROM alert_events ORDER BY labels->>'pod'"
        )
    finally:
        await conn.close()
    assert [tuple(r) for r in rows] == [
        ("s-0", "done", "no rule matches", True),
        ("s-1", "pending", None, False),
        ("s-2", "pending", None, False),
    ]
    claimed = await store.claim_events("w", 10, 30.0)
    assert sorted(c.event.labels["pod"] for c in claimed) == ["s-1", "s-2"]


async def test_a_batch_of_only_settled_events_wakes_no_worker(
    store: Store, database_url: str
) -> None:
    listener = await asyncpg.connect(database_url)
    woken: list[str] = []
    try:
        await listener.add_listener(EVENTS_CHANNEL, lambda *args: woken.append(args[2]))
        settled = Intake(store, settle=lambda status, labels: "no rule matches")
        assert await settled.accept(notification(2, seed="quiet")) == IntakeResult(2, 0)
        await Intake(store).accept(notification(1, seed="loud"))
        # The loud commit's wake-up is the barrier: notifications arrive in commit order, so
        # one from the quiet commit (earlier) would be in ``woken`` before it.
        await eventually(current(lambda: woken))
    finally:
        await listener.close()
    assert woken == [EVENTS_CHANNEL]


async def test_a_wake_up_names_the_lanes_queued_and_no_settled_one(
    store: Store, database_url: str
) -> None:
    """Intake's NOTIFY names the lanes (md5 of the alert name) of the events it queued, so a
    worker whose slots a storm fills can claim an alert name with nothing in progress at once
    (receiver/worker/express.py); a settled event is no one's work and is not named."""
    listener = await asyncpg.connect(database_url)
    payloads_seen: list[str] = []
    names = ["HighMemoryUsage", "QueueBacklog", "HighMemoryUsage", "DiskFull"]
    try:
        await listener.add_listener(EVENTS_CHANNEL, lambda *args: payloads_seen.append(args[3]))
        intake = Intake(
            store,
            settle=lambda status, labels: "no rule" if labels["alertname"] == "DiskFull" else None,
        )
        alerts = (
            payloads.alert({"alertname": name, "namespace": "shop", "pod": f"p-{i}"})
            for i, name in enumerate(names)
        )
        assert await intake.accept(payloads.notification(*alerts)) == IntakeResult(4, 0)
        await eventually(current(lambda: payloads_seen))
    finally:
        await listener.close()
    [payload] = payloads_seen
    queued = {
        hashlib.md5(n.encode(), usedforsecurity=False).hexdigest()
        for n in ("HighMemoryUsage", "QueueBacklog")
    }
    assert sorted(payload.split(",")) == sorted(queued)
