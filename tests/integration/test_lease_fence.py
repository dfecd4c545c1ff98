"""A worker that lost its lease writes nothing more (receiver/store/fence.py).

Worker A claims an event; its lease runs out (a stalled connection, the keeper gives the work
up) and worker B claims the event and does the work again. A statement of A's that reaches
PostgreSQL after that, late, must change nothing: before, the writes made between the claim and
the completion were not checked against the lease, so A's late step outcome overwrote B's, a
late refusal moved B's running run to refused, a late approval request re-opened the step's
approval, and each appended a second audit row. Now each is refused with LeaseLost, nothing
written; with the lease still held, the same writes go through as they did.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs

from receiver.model import AlertEvent, ApprovalState, Disposition, RunOutcome, StepPlan, Target
from receiver.store import (
    EventLease,
    LeaseFence,
    LeaseLost,
    Refused,
    Store,
    admitted_data,
    run_id_of,
)
from receiver.store.fence import held_sql
from receiver.worker import Worker
from tests.support.events import alert_event, new_event
from tests.support.leases import take_over
from tests.support.payloads import alert, notification
from tests.support.pipeline import RESTART_WEB, MakeHarness
from tests.support.polling import eventually
from tests.support.relay import HeldRelay, relay_to_postgres, through

pytestmark = pytest.mark.postgres

TARGET = Target("Deployment", "shop", "checkout")
RESTART = "kubernetes.rollout_restart"


async def _claim(store: Store, owner: str) -> int:
    (claimed,) = await store.claim_events(owner, 1, 60.0)
    return claimed.event.id


async def _take_over(store: Store, event_id: int) -> LeaseFence:
    """A's lease runs out, and B claims the event: B's fence."""
    return (await take_over(store, event_id, "b", 60.0)).fence


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


async def _written(database_url: str) -> dict[str, Any]:
    """Everything a late ``create_run`` could write: the runs with their outcomes, their steps
    and audit rows, and the events' states and owners."""
    conn = await asyncpg.connect(database_url)
    try:
        runs = await conn.fetch("SELECT id::text, outcome FROM runs ORDER BY id")
        steps = await conn.fetchval("SELECT count(*) FROM steps")
        audit = await conn.fetch("SELECT kind, run_id::text FROM audit_log ORDER BY id")
        pending = await conn.fetchval("SELECT count(*) FROM audit_pending")
        events = await conn.fetch("SELECT id, state, lease_owner FROM alert_events ORDER BY id")
    finally:
        await conn.close()
    return {
        "runs": [tuple(r) for r in runs],
        "steps": steps,
        "audit": [tuple(r) for r in audit],
        "pending": pending,
        "events": [tuple(r) for r in events],
    }


async def test_a_late_create_run_writes_no_run_once_another_worker_claimed_the_event(
    store: Store, database_url: str
) -> None:
    """A's guards answered, and its statement storing the run lands after B claimed the event
    but before B stored the run (B is still asking the guards). It used to stand as the run:
    refused by A's answer, or running with no worker on it (B, finding it stored, leaves it
    be), or pending with no job to take it up; the refused one also took B's guard slots
    for nothing. Now it writes nothing and raises LeaseLost, and B's own is the run."""
    await store.insert_events([new_event(1)])
    event_id = await _claim(store, "a")
    event = alert_event(event_id, 1)
    a = LeaseFence("event", event_id, "a", 1)
    step = StepPlan(0, RESTART, {}, needs_approval=False, description="restart")
    run: dict[str, Any] = {"rule": "r", "event": event, "target": TARGET, "dry_run": True}
    run["steps"] = [step]
    b = await _take_over(store, event_id)
    before = await _written(database_url)
    late: dict[str, dict[str, Any]] = {
        "admitted": {"admitted": admitted_data(("pause",), fence=1), "lease": a},
        "refused": {
            "refusal": Refused("rate", "3 runs in the last 1m (max 3)", None),
            "complete": EventLease(event_id, "a", 1),
        },
        "refused, the event left to the worker": {
            "refusal": Refused("rate", "3 runs in the last 1m (max 3)", None),
            "lease": a,
        },
        "pending": {"lease": a},
    }
    for name, how in late.items():
        with pytest.raises(LeaseLost, match=f"event {event_id} is no longer leased to a"):
            await store.create_run(**run, **how)
        assert await _written(database_url) == before, f"the late {name} run wrote something"

    # B's run is stored and completes the event; A's late copy after it changes nothing.
    completing = EventLease(event_id, "b", 2)
    run_id = await store.create_run(
        **run, refusal=Refused("pause", "paused", None), complete=completing, lease=b
    )
    assert run_id is not None
    assert completing.completed
    after = await _written(database_url)
    assert after["runs"] == [(run_id, "refused")]
    assert after["events"] == [(event_id, "done", None)]
    with pytest.raises(LeaseLost):
        await store.create_run(**run, admitted=admitted_data(("pause",)), lease=a)
    assert await _written(database_url) == after


async def test_create_run_under_a_claim_it_does_not_complete_is_refused(store: Store) -> None:
    await store.insert_events([new_event(1)])
    event_id = await _claim(store, "a")
    with pytest.raises(ValueError, match="is not the claim of the event it completes"):
        await store.create_run(
            rule="r",
            event=alert_event(event_id, 1),
            target=TARGET,
            dry_run=True,
            complete=EventLease(event_id, "a", 1),
            lease=LeaseFence("event", event_id, "b", 1),
        )


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


async def test_a_worker_whose_write_finds_its_lease_lost_stops_without_settling(
    store: Store, database_url: str
) -> None:
    await store.insert_events([new_event(1)])
    taken = asyncio.Event()

    async def process(event: AlertEvent, lease: EventLease | None = None) -> Disposition:
        assert lease is not None
        run_id = await store.create_run(rule="r", event=event, target=TARGET, dry_run=True)
        assert run_id is not None
        await _take_over(store, event.id)
        taken.set()
        await store.record_step(run_id, lease.fence, idx=0, action=RESTART, outcome="ok")
        return Disposition.done()

    worker = Worker(
        store,
        process,
        owner="a",
        concurrency=1,
        lease_s=60.0,
        poll_interval_s=0.1,
        lease_to_process=True,
    )
    with capture_logs() as logs:
        await worker.start()
        try:
            await asyncio.wait_for(taken.wait(), 20)
            await eventually(
                lambda: _logged(logs, "lost the lease; another worker has it"),
                what=f"the worker to give the event up; logged: {logs}",
            )
        finally:
            await worker.stop(grace_s=1)
    # Neither failed nor settled: B's claim stands as it made it (one failure: A's lease
    # ran out), and no error was logged for it.
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow("SELECT state, lease_owner, failures, attempts FROM alert_events")
    finally:
        await conn.close()
    assert dict(row) == {"state": "claimed", "lease_owner": "b", "failures": 1, "attempts": 2}
    assert not [e for e in logs if e["log_level"] == "error"]


async def _logged(logs: list[MutableMapping[str, Any]], message: str) -> bool:
    return any(e["event"] == message for e in logs)


async def test_a_fenced_transaction_still_open_holds_the_event_from_every_claim(
    store: Store, database_url: str
) -> None:
    """What a fenced write costs when its transaction stalls before its COMMIT (a connection
    that stalls between its statements, or a COMMIT held in the network): its key-share lock on
    the event holds to the end of the transaction, so every claim skips the event (SKIP
    LOCKED), its lease run out or not, and the alert's later events wait behind it. Nothing
    counts or says so. It ends when the transaction does: here by PostgreSQL's own
    ``idle_in_transaction_session_timeout``, which the store does not set (without it, a
    session whose client is gone lasts until TCP finds the peer dead)."""
    await store.insert_events([new_event(1), new_event(1, starts_at="2026-11-25T10:05:00Z")])
    event_id = await _claim(store, "a")
    a = await asyncpg.connect(database_url)
    try:
        await a.execute("BEGIN")
        # The first statement of A's fenced transaction: the check, and its lock.
        held = f"SELECT ok FROM ({held_sql('$1', '$2', '$3', '$4')}) held"
        assert await a.fetchval(held, "event", event_id, "a", 1)
        async with store._tx() as conn:
            await conn.execute(
                "UPDATE alert_events SET lease_until = remediator_now() - interval '1 second'"
                " WHERE id = $1",
                event_id,
            )
        assert await store.claim_events("b", 5, 60.0) == []
        # PostgreSQL ends A's session once it idles 0.5 s in its transaction: the event is free.
        await a.execute("SET idle_in_transaction_session_timeout = '500ms'")
        (claimed,) = await eventually(lambda: store.claim_events("b", 5, 60.0), what="b's claim")
        assert (claimed.event.id, claimed.failures) == (event_id, 1)
        assert await _closed(a)
    finally:
        await a.close()


async def _closed(conn: asyncpg.Connection) -> bool:
    try:
        await conn.fetchval("SELECT 1")
    except (asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError):
        return True
    return False


@pytest.mark.redis
async def test_the_new_owner_runs_the_run_a_late_admitted_copy_no_longer_holds(
    make_harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The harm of a late admitted run, end to end: A's statement storing its admitted run
    lands after B claimed the event, while B asks the guards (after B read the alert's past,
    before B stores the run). It used to stand: B, finding the run stored, stopped with
    "another worker owns this run" and completed the event, and the run stayed running with
    no step begun and nobody to carry it on. Now it is refused, and B's run is the run."""
    h = await make_harness(RESTART_WEB)
    labels = {"alertname": "HighMemoryUsage", "namespace": "shop", "deployment": "web"}
    await h.intake.accept(notification(alert(labels)))
    (claimed,) = await h.store.claim_events("a", 1, 60.0)
    event = claimed.event
    b = await take_over(h.store, event.id, "b")
    rule = "restart-web"
    late: list[BaseException | None] = []
    admit = h.guards.admit

    async def a_lands_while_b_asks(*args: Any, **kwargs: Any) -> Any:
        try:
            await h.store.create_run(
                rule=rule,
                event=event,
                target=Target("Deployment", "shop", "web"),
                dry_run=True,
                run_id=run_id_of(rule, event.fingerprint, event.starts_at, event.refire),
                admitted=admitted_data(("cooldown",), fence=1),
                lease=LeaseFence("event", event.id, "a", claimed.attempts),
            )
            late.append(None)
        except LeaseLost as exc:
            late.append(exc)
        return await admit(*args, **kwargs)

    monkeypatch.setattr(h.guards, "admit", a_lands_while_b_asks)
    assert (await h.pipeline(event, b)).is_done
    assert len(late) == 1
    assert isinstance(late[0], LeaseLost)
    run = await h.only_run()
    assert run.outcome == RunOutcome.DRY_RUN
    assert [s.outcome for s in run.steps] == ["dry_run"]
