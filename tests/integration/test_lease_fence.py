"""A worker that lost its lease writes nothing more to a run (receiver/store/fence.py).

Worker A claims an event; its lease runs out (a stalled connection, the keeper gives the work
up) and worker B claims the event and does the work again. A statement of A's that reaches
PostgreSQL after that, late, must change nothing: before, the writes made between the claim and
the completion were not checked against the lease, so A's late step outcome overwrote B's, a
late refusal moved B's running run to refused, a late approval request re-opened the step's
approval, and each appended a second audit row. Now each is refused with LeaseLost, nothing
written; with the lease still held, the same writes go through as they did. The same holds for
a job's lease, and for a late refusal held in the network (a real relay to PostgreSQL).
A late ``create_run`` is test_lease_fence_create_run.py, a worker that finds its lease lost
test_lease_fence_worker.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from receiver.model import AlertEvent, ApprovalState, RunOutcome
from receiver.store import LeaseFence, LeaseLost, Store
from tests.support.events import TARGET, alert_event, new_event
from tests.support.leases import RESTART
from tests.support.leases import claim_one as _claim
from tests.support.leases import take_over_fence as _take_over
from tests.support.relay import HeldRelay, relay_to_postgres, through

pytestmark = pytest.mark.postgres


async def _snapshot(database_url: str, run_id: str) -> dict[str, Any]:
    """What a late write could change: the run, its steps, its approvals, jobs, audit rows."""
    conn = await asyncpg.connect(database_url)
    try:
        run = await conn.fetchrow(
            "SELECT outcome, refusal_guard, error FROM runs WHERE id = $1::uuid", run_id
        )
        steps = await conn.fetch(
            "SELECT phase, idx, outcome, message FROM steps WHERE run_id = $1::uuid"
            " ORDER BY phase, idx",
            run_id,
        )
        approvals = await conn.fetch(
            "SELECT step_idx, state FROM approvals WHERE run_id = $1::uuid ORDER BY requested_at",
            run_id,
        )
        jobs = await conn.fetch(
            "SELECT kind, state FROM jobs WHERE run_id = $1::uuid ORDER BY id", run_id
        )
        audit = await conn.fetch(
            "SELECT kind, data::text FROM audit_log WHERE run_id = $1::uuid ORDER BY id", run_id
        )
        pending = await conn.fetchval("SELECT count(*) FROM audit_pending")
    finally:
        await conn.close()
    return {
        "run": dict(run) if run else None,
        "steps": [dict(r) for r in steps],
        "approvals": [dict(r) for r in approvals],
        "jobs": [dict(r) for r in jobs],
        "audit": [tuple(r) for r in audit],
        "pending": pending,
    }


async def _running_run(store: Store, event: AlertEvent, lease: LeaseFence) -> str:
    """The run B stores and starts for the event, its step done and its approval decided."""
    run_id = await store.create_run(
        rule="r", event=event, target=TARGET, dry_run=True, outcome=RunOutcome.PENDING
    )
    assert run_id is not None
    await store.record_step(run_id, lease, idx=0, action=RESTART, outcome="pending")
    await store.record_admission(run_id, ("pause",), lease=lease)
    await store.set_run_outcome(run_id, RunOutcome.RUNNING, lease=lease)
    return run_id


async def _approval(store: Store, run_id: str, lease: LeaseFence | None) -> tuple[Any, bool]:
    return await store.request_approval(
        run_id=run_id,
        step_idx=1,
        rule="r",
        target=TARGET,
        action=RESTART,
        risk="high",
        plan={"action": RESTART},
        plan_hash="h",
        context={},
        ttl_s=600.0,
        lease=lease,
    )


async def test_every_fenced_write_after_another_worker_claimed_the_event_changes_nothing(
    store: Store, database_url: str
) -> None:
    await store.insert_events([new_event(1)])
    event_id = await _claim(store, "a")
    a = LeaseFence("event", event_id, "a", 1)
    # While A holds it, its writes go through as before.
    event = alert_event(event_id, 1)
    run_id = await store.create_run(rule="r", event=event, target=TARGET, dry_run=True)
    assert run_id is not None
    await store.record_step(run_id, a, idx=0, action=RESTART, outcome="pending")
    assert await store.record_admission(run_id, ("pause",), lease=a)
    assert await store.set_run_outcome(run_id, RunOutcome.RUNNING, lease=a)

    b = await _take_over(store, event_id)
    # B does the work again: step 0 ends ok, step 1 is planned and its approval asked and given.
    await store.record_step(run_id, b, idx=0, action=RESTART, outcome="ok", message="by b")
    await store.record_step(run_id, b, idx=1, action=RESTART, outcome="pending")
    approval, created = await _approval(store, run_id, b)
    assert created
    decided = await store.decide_approval(
        approval.id, ApprovalState.APPROVED, by="ops", channel="api"
    )
    assert decided is not None
    before = await _snapshot(database_url, run_id)

    late: list[tuple[str, Any]] = [
        (
            "record_step",
            store.record_step(run_id, a, idx=0, action=RESTART, outcome="failed", message="a"),
        ),
        (
            "start_step",
            store.start_step(
                run_id,
                phase="run",
                idx=1,
                action=RESTART,
                attempt="a1",
                what="restart",
                started_at=await store.server_now(),
                lease=a,
            ),
        ),
        ("record_admission", store.record_admission(run_id, ("pause",), lease=a)),
        ("set_run_outcome", store.set_run_outcome(run_id, RunOutcome.SUCCEEDED, lease=a)),
        ("record_refusal", store.record_refusal(run_id, "pause", "paused", None, lease=a)),
        ("request_approval", _approval(store, run_id, a)),
        (
            "record_announcement",
            store.record_announcement(
                run_id,
                fingerprint=event.fingerprint,
                event="finished",
                channel="ops",
                delivered=False,
                detail="late",
                lease=a,
            ),
        ),
    ]
    for name, write in late:
        try:
            await write
            refused: LeaseLost | None = None
        except LeaseLost as exc:
            refused = exc
        assert await _snapshot(database_url, run_id) == before, f"{name} changed something"
        assert refused is not None, f"{name} was not refused"
        assert "no longer leased to a" in str(refused)

    # B's own writes still go through.
    assert await store.set_run_outcome(run_id, RunOutcome.SUCCEEDED, lease=b)
    after = await _snapshot(database_url, run_id)
    assert after["run"]["outcome"] == "succeeded"
    assert [s["outcome"] for s in after["steps"]] == ["ok", "not_run"]


async def test_the_fence_holds_for_a_job(store: Store, database_url: str) -> None:
    await store.insert_events([new_event(1)])
    event_id = await _claim(store, "a")
    run_id = await _running_run(
        store, alert_event(event_id, 1), LeaseFence("event", event_id, "a", 1)
    )
    await store.enqueue_job("resume_run", run_id)
    (job,) = await store.claim_jobs("a", 1, 60.0)
    assert job.fence == LeaseFence("job", job.id, "a", 1)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE jobs SET lease_until = remediator_now() - interval '1 second' WHERE id = $1",
            job.id,
        )
    finally:
        await conn.close()
    (again,) = await store.claim_jobs("b", 1, 60.0)
    assert again.fence == LeaseFence("job", job.id, "b", 2)
    before = await _snapshot(database_url, run_id)
    with contextlib.suppress(LeaseLost):
        await store.set_run_outcome(run_id, RunOutcome.FAILED, error="late", lease=job.fence)
    assert await _snapshot(database_url, run_id) == before
    with pytest.raises(LeaseLost, match=f"job {job.id} is no longer leased to a"):
        await store.set_run_outcome(run_id, RunOutcome.FAILED, error="late", lease=job.fence)
    assert await store.set_run_outcome(run_id, RunOutcome.SUCCEEDED, lease=again.fence)


@pytest.fixture
async def relay(database_url: str) -> AsyncIterator[HeldRelay]:
    """A relay to the test's PostgreSQL that holds A's statements until the test lets them
    through: a connection that stalled, its statement landing after B's work."""
    async with relay_to_postgres(database_url) as made:
        yield made


async def test_a_late_refusal_held_in_the_network_does_not_undo_the_new_owners_run(
    store: Store, database_url: str, relay: HeldRelay
) -> None:
    stalled = await Store.connect(through(database_url, relay.port), min_size=1, max_size=1)
    try:
        await store.insert_events([new_event(1)])
        event_id = await _claim(store, "a")
        a = LeaseFence("event", event_id, "a", 1)
        run_id = await _running_run(store, alert_event(event_id, 1), a)
        relay.hold()
        # A's guard said no; its statement waits in the network.
        late = asyncio.create_task(
            stalled.record_refusal(run_id, "pause", "paused by ops", None, lease=a)
        )
        b = await _take_over(store, event_id)
        await store.record_step(run_id, b, idx=0, action=RESTART, outcome="ok", message="by b")
        assert await store.set_run_outcome(run_id, RunOutcome.SUCCEEDED, lease=b)
        before = await _snapshot(database_url, run_id)
        assert not late.done()
        relay.let_through()
        await asyncio.wait({late}, timeout=30)
        after = await _snapshot(database_url, run_id)
        assert after["run"]["outcome"] == "succeeded"
        assert after["run"]["refusal_guard"] is None
        assert after == before
        assert isinstance(late.exception(), LeaseLost)
    finally:
        relay.let_through()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(stalled.close(), 30)
