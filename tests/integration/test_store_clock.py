"""The store on an injected clock (``Store.connect(clock=...)``, ``remediator_now()`` in its SQL),
against a real PostgreSQL: what it stamps, what is due, the history and re-fire windows, verify
deadlines and approval expiry all follow the simulated time, and without a clock the
database's own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from receiver.model import RunOutcome, Status, Target, VerifyResult
from receiver.store import JobKind, NewEvent, Store
from tests.support.payloads import alert, notification

pytestmark = pytest.mark.postgres

START = datetime(2031, 5, 4, 12, 0, tzinfo=UTC)
POD = Target("Deployment", "shop", "checkout")


class Clock:
    def __init__(self) -> None:
        self.at = START

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def sim_store(database_url: str, clock: Clock) -> AsyncIterator[Store]:
    store = await Store.connect(database_url, min_size=1, max_size=3, clock=clock)
    try:
        yield store
    finally:
        await store.close()


def event(status: str = "firing", *, ends_at: str | None = None) -> NewEvent:
    [parsed] = notification(
        alert({"alertname": "Mem", "pod": "p"}, status=status, ends_at=ends_at)
    ).alerts
    return NewEvent(
        fingerprint=parsed.fingerprint,
        starts_at=parsed.startsAt,
        status=Status(parsed.status),
        labels=dict(parsed.labels),
        annotations=dict(parsed.annotations),
        ends_at=parsed.endsAt,
        generator_url="",
        group_key="g",
        receiver="r",
    )


async def test_what_the_store_stamps_and_reads_as_now_is_the_injected_clock(
    sim_store: Store, clock: Clock
) -> None:
    assert await sim_store.server_now() == START
    await sim_store.insert_events([event()])
    [claimed] = await sim_store.claim_events("w", 10, 30.0)
    assert claimed.event.received_at == START
    assert claimed.lease_until == START + timedelta(seconds=30)
    clock.advance(hours=5)
    assert await sim_store.server_now() == START + timedelta(hours=5)
    # A lease of 30 s ran out five simulated hours ago: the event is due again.
    [again] = await sim_store.claim_events("w2", 10, 30.0)
    assert again.event.id == claimed.event.id


async def test_released_work_is_due_on_the_simulated_clock(sim_store: Store, clock: Clock) -> None:
    await sim_store.insert_events([event()])
    [claimed] = await sim_store.claim_events("w", 10, 30.0)
    assert await sim_store.release_event(claimed.event.id, "w", claimed.attempts, delay_s=600)
    assert await sim_store.next_event_due() == START + timedelta(minutes=10)
    clock.advance(minutes=9, seconds=59)
    assert await sim_store.claim_events("w", 10, 30.0) == []
    clock.advance(seconds=1)
    assert len(await sim_store.claim_events("w", 10, 30.0)) == 1


async def test_verify_deadlines_and_jobs_follow_the_simulated_clock(
    sim_store: Store, clock: Clock
) -> None:
    await sim_store.insert_events([event()])
    [claimed] = await sim_store.claim_events("w", 10, 30.0)
    run_id = await sim_store.create_run(
        rule="r", event=claimed.event, target=POD, dry_run=False, verify_within_s=600
    )
    assert run_id is not None
    await sim_store.set_run_outcome(
        run_id, RunOutcome.VERIFYING, schedule=[(JobKind.VERIFY_DEADLINE, 600.0)]
    )
    run = await sim_store.get_run(run_id)
    assert run is not None
    assert run.created_at == START
    assert run.verify_deadline == START + timedelta(minutes=10)
    assert await sim_store.next_job_due() == START + timedelta(minutes=10)
    assert await sim_store.claim_jobs("w", 10, 30.0) == []
    clock.advance(minutes=9, seconds=59)
    early = await sim_store.conclude_verification(run_id, grace_s=0.0)
    assert early is not None
    assert early.wait_s == 1.0
    clock.advance(seconds=1)
    [job] = await sim_store.claim_jobs("w", 10, 30.0)
    assert job.kind is JobKind.VERIFY_DEADLINE
    concluded = await sim_store.conclude_verification(run_id, grace_s=0.0)
    assert concluded is not None
    assert concluded.result is VerifyResult.NOT_RESOLVED


async def test_the_refire_window_is_measured_on_the_simulated_clock(
    sim_store: Store, clock: Clock
) -> None:
    sim_store.late_delivery_window_s = 330.0
    resolved = event("resolved", ends_at="2031-05-04T12:00:00Z")
    await sim_store.insert_events([event()])
    await sim_store.insert_events([resolved])
    clock.advance(minutes=5)  # within the window: a late copy, not a new occurrence
    assert await sim_store.insert_events([event()]) == (0, 1)
    clock.advance(minutes=1)  # past it: the next occurrence
    assert await sim_store.insert_events([event()]) == (1, 0)


async def test_without_a_clock_the_database_time_decides(store: Store) -> None:
    before = datetime.now(UTC)
    now = await store.server_now()
    assert abs(now - before) < timedelta(minutes=1)
    await store.insert_events([event()])
    [claimed] = await store.claim_events("w", 10, 30.0)
    assert claimed.event.received_at is not None
    assert abs(claimed.event.received_at - before) < timedelta(minutes=1)
