"""A late statement of a worker's earlier attempt at an item writes nothing under the same
worker's retry of it (receiver/store/fence.py).

A worker keeps its owner id for its whole life. Its attempt at an event or job sends a fenced
write; the connection stalls, the client gives the statement up on its deadline
(store/bounded.py) and the attempt ends with the store's error, so the worker releases the item
and claims it again for its retry. The statement still reaches PostgreSQL, and commits, while
the retry holds the item: the fence checked the owner and the item's state, both the retry's
too, so it passed. A start mark of the earlier attempt took the step the retry was about to
run (the retry then read its step as started by another attempt), a refusal moved the retry's
running run to refused, an announcement was audited twice. Now the fence also checks the claim
(``attempts``, which the retry's claim moved on): the late statement writes nothing, and the
retry's work stands.

Real PostgreSQL; the earlier attempt's statement is held by a relay (tests/support/relay.py)
from the chunk that carries the run's id (its Bind) until its client gave up, and let through
once the retry holds the item. These are the writes of one statement, committed on their own;
a write in a transaction whose COMMIT is late holds the item's row against every claim until
it lands (test_lease_fence_worker.py), so no retry runs beside it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from receiver.model import RunOutcome, StepPlan, Target
from receiver.store import (
    ClaimedJob,
    EventLease,
    LeaseFence,
    LeaseLost,
    Refused,
    Store,
    StoreUnavailable,
)
from tests.support.events import alert_event, new_event
from tests.support.polling import eventually
from tests.support.relay import HeldRelay, relay_to_postgres, store_through

pytestmark = pytest.mark.postgres

TARGET = Target("Deployment", "shop", "checkout")
RESTART = "kubernetes.rollout_restart"
WORKER = "worker-w"


@pytest.fixture
async def relay(database_url: str) -> AsyncIterator[HeldRelay]:
    async with relay_to_postgres(database_url) as made:
        yield made


@pytest.fixture
async def earlier(database_url: str, relay: HeldRelay) -> AsyncIterator[Store]:
    """The earlier attempt's store, through the relay (``store_through``)."""
    async with store_through(database_url, relay) as made:
        yield made


async def _given_up(
    earlier: Store, relay: HeldRelay, run_id: str, write: Callable[[Store], Awaitable[Any]]
) -> int:
    """``write`` sent through the earlier attempt's store, held in the network from its Bind
    (the chunk with the run's id) until its client gave up on it: StoreUnavailable, as the
    attempt saw it. The process id of the server session that runs it once let through."""
    async with earlier._pool.acquire() as conn:
        pid: int = conn.get_server_pid()
    relay.hold_from(uuid.UUID(run_id).bytes)
    with pytest.raises(StoreUnavailable):
        await write(earlier.bounded(2.0))
    assert relay.holding.is_set()
    return pid


async def _landed(store: Store, relay: HeldRelay, pid: int) -> None:
    """Let the held statement through, and wait until its session ran it and ended (its
    client closed the connection: the server reads what was sent before the close, then the
    end of it)."""

    async def ended() -> bool:
        alive = await store._pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid
        )
        return bool(alive == 0)

    assert not await ended()  # waiting in the relay, its session still open
    relay.let_through()
    await eventually(ended, what="the late statement's session to end")


async def _running_run(store: Store, event_id: int, fence: LeaseFence) -> str:
    """The run the earlier attempt stored and admitted, running, its one step not begun."""
    step = StepPlan(0, RESTART, {}, needs_approval=False, description="restart")
    run_id = await store.create_run(
        rule="r",
        event=alert_event(event_id, 1),
        target=TARGET,
        dry_run=True,
        steps=[step],
        lease=fence,
    )
    assert run_id is not None
    assert await store.record_admission(run_id, ("pause",), lease=fence)
    assert await store.set_run_outcome(run_id, RunOutcome.RUNNING, lease=fence)
    return run_id


async def _first_claim(store: Store) -> tuple[int, LeaseFence]:
    await store.insert_events([new_event(1)])
    (claimed,) = await store.claim_events(WORKER, 1, 60.0)
    assert claimed.attempts == 1
    return claimed.event.id, LeaseFence("event", claimed.event.id, WORKER, claimed.attempts)


async def _retry(store: Store, event_id: int) -> LeaseFence:
    """As the worker does once its attempt ended with the store's error: the event released,
    and claimed again by the same worker (its owner id unchanged)."""
    assert await store.release_event(event_id, WORKER, 1, 0.0, "StoreUnavailable")
    (again,) = await store.claim_events(WORKER, 1, 60.0)
    assert again.event.id == event_id
    assert again.attempts == 2
    return LeaseFence("event", event_id, WORKER, again.attempts)


async def _audit(database_url: str, run_id: str) -> list[tuple[str, str]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT kind, data::text FROM audit_log WHERE run_id = $1::uuid ORDER BY id", run_id
        )
    finally:
        await conn.close()
    return [(r["kind"], r["data"]) for r in rows]


async def test_a_late_start_mark_of_the_earlier_attempt_leaves_the_step_to_the_retry(
    store: Store, earlier: Store, relay: HeldRelay, database_url: str
) -> None:
    """The earlier attempt's mark lands after the retry claimed the event, before the retry
    marks the step: it used to take the step (``started`` by the earlier attempt, which never
    acted), and the retry, finding it started by another attempt, could not run it."""
    event_id, first = await _first_claim(store)
    run_id = await _running_run(store, event_id, first)

    async def mark(s: Store, attempt: str, fence: LeaseFence) -> Any:
        return await s.start_step(
            run_id,
            phase="run",
            idx=0,
            action=RESTART,
            attempt=attempt,
            what="restart",
            started_at=await store.server_now(),
            lease=fence,
        )

    pid = await _given_up(earlier, relay, run_id, lambda s: mark(s, "earlier", first))
    retry = await _retry(store, event_id)
    await _landed(store, relay, pid)

    start = await mark(store, "retry", retry)

    assert start.started, start
    assert "retry" in start.message, start.message
    marks = [data for kind, data in await _audit(database_url, run_id) if '"started"' in data]
    assert len(marks) == 1, marks
    assert "retry" in marks[0]


async def test_a_late_refusal_of_the_earlier_attempt_does_not_end_the_retrys_run(
    store: Store, earlier: Store, relay: HeldRelay, database_url: str
) -> None:
    """The earlier attempt's guard said no (a pause); its refusal lands while the retry, its
    guards passing now, carries the run on: it used to move the running run to refused, its
    step ``not_run``, under the retry's feet."""
    event_id, first = await _first_claim(store)
    run_id = await _running_run(store, event_id, first)

    pid = await _given_up(
        earlier,
        relay,
        run_id,
        lambda s: s.record_refusal(
            run_id, "pause", "paused by ops", None, lease=first, expect=RunOutcome.RUNNING
        ),
    )
    retry = await _retry(store, event_id)
    await _landed(store, relay, pid)

    run = await store.get_run(run_id)
    assert run is not None
    assert run.outcome is RunOutcome.RUNNING, run.outcome
    assert [s.outcome for s in run.steps] == ["pending"]
    await store.record_step(run_id, retry, idx=0, action=RESTART, outcome="ok", message="done")
    assert await store.set_run_outcome(run_id, RunOutcome.SUCCEEDED, lease=retry)
    run = await store.get_run(run_id)
    assert run is not None
    assert (run.outcome, run.refusal_guard) == (RunOutcome.SUCCEEDED, None)
    kinds = [kind for kind, _ in await _audit(database_url, run_id)]
    assert "run.refused" not in kinds, kinds


async def test_a_late_announcement_of_a_jobs_earlier_claim_is_not_audited_twice(
    store: Store, earlier: Store, relay: HeldRelay, database_url: str
) -> None:
    """A job's claim is fenced the same way (``ClaimedJob.fence``): the earlier claim's
    announcement, given up and landing after the retry announced the run itself, used to be
    a second ``run.announced`` row."""
    event_id, first = await _first_claim(store)
    run_id = await _running_run(store, event_id, first)
    assert await store.complete_event(event_id, WORKER, first.attempts)
    await store.enqueue_job("resume_run", run_id)
    (job,) = await store.claim_jobs(WORKER, 1, 60.0)

    async def announce(s: Store, claim: ClaimedJob) -> None:
        assert claim.fence is not None
        await s.record_announcement(
            run_id,
            fingerprint=alert_event(event_id, 1).fingerprint,
            event="finished",
            channel="ops",
            delivered=True,
            detail="200 OK",
            lease=claim.fence,
        )

    pid = await _given_up(earlier, relay, run_id, lambda s: announce(s, job))
    assert await store.release_job(job.id, WORKER, job.attempts, 0.0, "StoreUnavailable")
    (again,) = await store.claim_jobs(WORKER, 1, 60.0)
    assert (again.id, again.attempts) == (job.id, 2)
    await announce(store, again)
    await _landed(store, relay, pid)

    kinds = [kind for kind, _ in await _audit(database_url, run_id)]
    assert kinds.count("run.announced") == 1, kinds


async def test_a_late_refused_run_completing_the_event_completes_nothing_under_the_retry(
    store: Store,
) -> None:
    """The statement that stores a refused run and completes its event is fenced by that
    completion (run_creation.py): the earlier claim's copy, arriving under the retry's claim,
    used to complete the retry's event and store the earlier guard answer as the run. Now it
    finds the event held under another claim: nothing stored, nothing completed, LeaseLost.
    (Sent directly: the server sees the same statement as one held in the network.)"""
    event_id, first = await _first_claim(store)
    retry = await _retry(store, event_id)
    event = alert_event(event_id, 1)
    run: dict[str, Any] = {"rule": "r", "event": event, "target": TARGET, "dry_run": True}
    late = EventLease(event_id, WORKER, first.attempts)

    with pytest.raises(LeaseLost, match=f"event {event_id} is no longer leased to {WORKER}"):
        await store.create_run(**run, refusal=Refused("pause", "paused", None), complete=late)

    assert not late.completed
    assert await store.list_runs() == ([], None)
    stored = await store.get_event(event_id)
    assert stored is not None
    assert (stored["state"], stored["attempts"]) == ("claimed", 2)
    # The retry's own refusal completes it.
    completing = EventLease(event_id, WORKER, retry.attempts)
    assert await store.create_run(
        **run, refusal=Refused("pause", "paused", None), complete=completing
    )
    assert completing.completed
