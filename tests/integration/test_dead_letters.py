"""Bounded attempts and dead letters, on a real PostgreSQL with the real worker.

An item that keeps failing ends ``dead`` with its last error after ``max_attempts`` failures,
audited; it no longer holds back its alert's later events; waiting (a retry the pipeline asks
for, a store outage) is not failing; a worker that dies holding an item counts as a failure;
an operator's retry puts it back (and it succeeds once the cause is gone), a drop settles it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC
from typing import Any

import pytest
import structlog

from receiver.model import AlertEvent, Disposition, Status
from receiver.store import (
    ClaimedJob,
    ItemConflict,
    ItemNotFound,
    JobKind,
    Store,
    StoreUnavailable,
)
from receiver.worker import Worker
from tests.support.events import fingerprint_of, new_event, new_run
from tests.support.polling import eventually, eventually_not_none

pytestmark = pytest.mark.postgres

LOG = structlog.get_logger("test.dead_letters")
ALERT = 0xD1  # the poisoned alert: its fingerprint, as tests/support/events numbers them
FP = fingerprint_of(ALERT)


async def audit_rows(store: Store, kind: str) -> list[dict[str, Any]]:
    async with store._pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT kind, run_id::text AS run_id, fingerprint, data::text AS data
               FROM audit_log WHERE kind = $1 ORDER BY id""",
            kind,
        )
    return [{**dict(r), "data": json.loads(r["data"])} for r in rows]


class Process:
    """process(): fails with ``error`` while ``failing(item)`` says so, else done; records."""

    def __init__(self, failing: Callable[[Any], bool], error: Exception | None = None) -> None:
        self.failing = failing
        self.error = error or RuntimeError("cannot process this")
        self.seen: list[Any] = []

    async def __call__(self, item: Any) -> Disposition:
        self.seen.append(item)
        if self.failing(item):
            raise self.error
        return Disposition.done()


@pytest.fixture
async def workers(store: Store) -> AsyncIterator[Callable[..., Worker]]:
    """Factory: make(process, **options) -> a started Worker, stopped after the test."""
    made: list[Worker] = []

    async def make(process: Any, **options: Any) -> Worker:
        settings: dict[str, Any] = {
            "concurrency": 4,
            "lease_s": 30.0,
            "poll_interval_s": 0.1,
            "log": LOG,
            "backoff_base_s": 0.01,
            "max_attempts": 3,
        }
        settings.update(options)
        worker = Worker(store, process, **settings)
        made.append(worker)
        await worker.start()
        return worker

    yield make  # type: ignore[misc]
    for worker in made:
        await worker.stop(grace_s=1)


async def state_of(store: Store, event_id: int) -> str:
    row = await store.get_event(event_id)
    assert row is not None
    return str(row["state"])


async def test_an_event_that_keeps_failing_ends_dead_and_its_alert_goes_on(
    store: Store, workers: Callable[..., Awaitable[Worker]]
) -> None:
    await store.insert_events([new_event(FP)])
    await store.insert_events([new_event(FP, Status.RESOLVED)])
    firing_id, resolved_id = sorted((await store.list_events())[0], key=lambda r: r["id"])
    process = Process(lambda e: e.status is Status.FIRING)
    await workers(process)

    await eventually(lambda: _is(store, resolved_id["id"], "done"))
    row = await store.get_event(firing_id["id"])
    assert row is not None
    assert (row["state"], row["failures"], row["attempts"]) == ("dead", 3, 3)
    assert row["last_error"] == "RuntimeError: cannot process this"
    assert row["dead_at"] is not None
    # In order: the alert's resolved event waited for the firing one, until that was dead.
    assert [e.status for e in process.seen] == [Status.FIRING] * 3 + [Status.RESOLVED]
    assert await store.queue_depth() == 0
    assert await store.dead_counts() == {"events": 1, "jobs": 0}
    [dead] = await audit_rows(store, "event.dead")
    assert dead["fingerprint"] == FP
    assert dead["data"]["event_id"] == firing_id["id"]
    assert dead["data"]["failures"] == 3
    assert dead["data"]["last_error"] == "RuntimeError: cannot process this"


async def _is(store: Store, event_id: int, state: str) -> bool:
    return await state_of(store, event_id) == state


async def test_waiting_is_not_failing(
    store: Store, workers: Callable[..., Awaitable[Worker]]
) -> None:
    """Retries the pipeline asks for (guards unreachable) and store outages back off like
    failures, but an outage of any length must not kill the events waiting on it."""
    answers: list[Disposition | Exception] = [
        Disposition.retry(0.0, "guards unavailable"),
        StoreUnavailable("connection refused"),
        Disposition.retry(0.0, "guards unavailable"),
        StoreUnavailable("connection refused"),
    ]

    async def process(item: AlertEvent) -> Disposition:
        if answers:
            answer = answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        return Disposition.done()

    await store.insert_events([new_event(FP)])
    [row], _ = await store.list_events()
    await workers(process, max_attempts=1, backoff_base_s=0.001)
    await eventually(lambda: _is(store, row["id"], "done"))
    done = await store.get_event(row["id"])
    assert done is not None
    assert (done["attempts"], done["failures"]) == (5, 0)


async def test_a_worker_that_died_holding_an_event_counts_as_a_failure(
    store: Store, workers: Callable[..., Awaitable[Worker]]
) -> None:
    await store.insert_events([new_event(FP)])
    [claimed] = await store.claim_events("doomed", 1, lease_s=0.1)  # and it never settles

    async def reclaimed_after_the_lease() -> list[Any]:
        return await store.claim_events("second", 1, lease_s=0.1)

    [again] = await eventually(reclaimed_after_the_lease)
    assert (again.event.id, again.attempts, again.failures) == (claimed.event.id, 2, 1)
    assert again.last_error == "lease expired: doomed stopped holding it before it was settled"

    # With one attempt allowed, the next worker does not hand it to the pipeline again.
    process = Process(lambda e: False)
    await workers(process, max_attempts=2)
    await eventually(lambda: _is(store, claimed.event.id, "dead"))
    assert process.seen == []
    row = await store.get_event(claimed.event.id)
    assert row is not None
    assert row["failures"] == 2
    assert str(row["last_error"]).startswith("lease expired: second")


async def test_retry_puts_a_dead_event_back_and_it_succeeds_once_the_cause_is_gone(
    store: Store, workers: Callable[..., Awaitable[Worker]]
) -> None:
    broken = [True]
    process = Process(lambda e: broken[0])
    await store.insert_events([new_event(FP)])
    [row], _ = await store.list_events()
    await workers(process, max_attempts=2)
    await eventually(lambda: _is(store, row["id"], "dead"))

    broken[0] = False
    retried = await store.retry_item("event", row["id"], actor="ops", reason="cause fixed")
    # Its failures afresh, its attempts not: they name its claims to the lease fence.
    assert (retried["state"], retried["attempts"], retried["failures"]) == ("pending", 2, 0)
    await eventually(lambda: _is(store, row["id"], "done"))
    assert len(process.seen) == 3  # two failures, then the retried attempt
    [audit] = await audit_rows(store, "event.retry")
    assert audit["fingerprint"] == FP
    assert audit["data"]["by"] == "ops"
    assert audit["data"]["reason"] == "cause fixed"
    assert (audit["data"]["was"], audit["data"]["failures"]) == ("dead", 2)
    with pytest.raises(ItemConflict, match="is done, not dead"):
        await store.retry_item("event", row["id"], actor="ops")


async def test_drop_settles_a_dead_or_pending_event_never_a_claimed_one(store: Store) -> None:
    await store.insert_events([new_event("00000000000000a1"), new_event("00000000000000a2")])
    await store.insert_events([new_event("00000000000000a3")])
    [dying, claimed] = await store.claim_events("w", 2, lease_s=60)
    assert (
        await store.fail_event(
            dying.event.id, "w", dying.attempts, "boom", delay_s=0, max_failures=1
        )
        == "dead"
    )
    pending_id = dying.event.id + 2

    dropped = await store.drop_item("event", dying.event.id, actor="ops", reason="bad payload")
    assert (dropped["state"], dropped["settled_reason"]) == ("done", "dropped: bad payload")
    assert dropped["last_error"] == "boom"  # kept for review
    dropped = await store.drop_item("event", pending_id, actor="ops", reason="not ours")
    assert dropped["state"] == "done"
    # It said "is claimed (being processed): not dropped", and not what to do about it.
    with pytest.raises(ItemConflict) as refused:
        await store.drop_item("event", claimed.event.id, actor="ops", reason="x")
    until = claimed.lease_until.astimezone(UTC).isoformat(timespec="seconds")
    assert str(refused.value) == (
        f"event {claimed.event.id} is claimed (being processed): not dropped. Wait until it is"
        " done, or dead after its failures (worker.max_attempts), then drop it; if its worker"
        f" died, its lease runs out at {until} (worker.lease) and the next worker takes it up"
    )
    async with store._pool.acquire() as conn:  # its worker died an hour ago
        await conn.execute(
            "UPDATE alert_events SET lease_until = now() - interval '1 hour' WHERE id = $1",
            claimed.event.id,
        )
    with pytest.raises(ItemConflict, match=r"its lease ran out at .* the next worker takes it"):
        await store.drop_item("event", claimed.event.id, actor="ops", reason="x")
    with pytest.raises(ItemConflict, match="already settled"):
        await store.drop_item("event", pending_id, actor="ops", reason="again")
    with pytest.raises(ItemConflict, match="claimed, not dead"):
        await store.retry_item("event", claimed.event.id, actor="ops")
    with pytest.raises(ItemNotFound, match="no event 999999"):
        await store.retry_item("event", 999999, actor="ops")
    drops = await audit_rows(store, "event.drop")
    assert [(a["data"]["event_id"], a["data"]["was"], a["data"]["reason"]) for a in drops] == [
        (dying.event.id, "dead", "bad payload"),
        (pending_id, "pending", "not ours"),
    ]
    assert await store.dead_counts() == {"events": 0, "jobs": 0}
    assert await store.queue_depth() == 1  # the claimed one


async def test_a_retried_event_waits_for_its_alerts_event_in_progress(store: Store) -> None:
    """The retried event is older than the one being processed: it must not run beside it."""
    await store.insert_events([new_event(FP)])
    [first] = await store.claim_events("w", 1, lease_s=60)
    assert (
        await store.fail_event(
            first.event.id, "w", first.attempts, "boom", delay_s=0, max_failures=1
        )
        == "dead"
    )
    await store.insert_events([new_event(FP, Status.RESOLVED)])
    [second] = await store.claim_events("w", 5, lease_s=60)
    assert second.event.status is Status.RESOLVED

    await store.retry_item("event", first.event.id, actor="ops")
    assert await store.claim_events("other", 5, lease_s=60) == []
    assert await store.complete_event(second.event.id, "w", second.attempts)
    [retried] = await store.claim_events("other", 5, lease_s=60)
    assert retried.event.id == first.event.id


async def test_a_job_that_keeps_failing_ends_dead_and_frees_its_slot(
    store: Store, workers: Callable[..., Awaitable[Worker]]
) -> None:
    run_id = await new_run(store, ALERT)
    job_id = await store.enqueue_job(JobKind.RESUME_RUN, run_id)
    assert job_id is not None
    broken = [True]

    async def process_job(job: ClaimedJob) -> Disposition:
        if broken[0]:
            raise RuntimeError("resume failed")
        return Disposition.done()

    await workers(Process(lambda e: False), process_job=process_job, max_attempts=2)

    async def dead() -> bool:
        job = await store.get_job(job_id)
        return job is not None and job["state"] == "dead"

    await eventually(dead)
    job = await store.get_job(job_id)
    assert job is not None
    assert (job["failures"], job["last_error"]) == (2, "RuntimeError: resume failed")
    assert await store.dead_counts() == {"events": 0, "jobs": 1}
    [audit] = await audit_rows(store, "job.dead")
    assert audit["run_id"] == run_id
    assert (audit["data"]["job_id"], audit["data"]["job"]) == (job_id, "resume_run")

    # The same work asked for again (an approval decided later) is a new job, not swallowed.
    broken[0] = False
    again = await store.enqueue_job(JobKind.RESUME_RUN, run_id, delay_s=3600)
    assert again is not None
    assert again != job_id
    with pytest.raises(ItemConflict, match="already queued"):
        await store.retry_item("job", job_id, actor="ops")
    await store.drop_item("job", again, actor="ops", reason="superseded")
    await store.retry_item("job", job_id, actor="ops", reason="fixed")

    async def done() -> bool:
        job = await store.get_job(job_id)
        return job is not None and job["state"] == "done"

    await eventually(done)
    assert [a["data"]["job_id"] for a in await audit_rows(store, "job.retry")] == [job_id]
    assert [a["run_id"] for a in await audit_rows(store, "job.drop")] == [run_id]


async def test_a_delay_the_pipeline_asks_for_is_honoured_beyond_the_backoff(
    store: Store, workers: Callable[..., Awaitable[Worker]]
) -> None:
    """A guard's retry_at two hours away: the next attempt comes then, not at the backoff's
    few seconds, and waiting for it is no failure."""
    answers = [Disposition.retry(7200.0, "cooldown until 12:00")]

    async def process(item: AlertEvent) -> Disposition:
        return answers.pop(0) if answers else Disposition.done()

    await store.insert_events([new_event(FP)])
    [row], _ = await store.list_events()
    await workers(process, backoff_base_s=1.0)

    async def released() -> dict[str, Any] | None:
        found = await store.get_event(row["id"])
        return found if found and found["state"] == "pending" and found["attempts"] else None

    waiting = await eventually_not_none(released)
    wait_s = (waiting["not_before"] - await store.server_now()).total_seconds()
    assert 7100 < wait_s <= 7200
    assert (waiting["failures"], waiting["last_error"]) == (0, "cooldown until 12:00")


async def test_a_job_whose_worker_died_counts_a_failure(store: Store) -> None:
    run_id = await new_run(store, ALERT)
    await store.enqueue_job(JobKind.VERIFY_DEADLINE, run_id)
    [first] = await store.claim_jobs("doomed", 1, lease_s=0.1)

    async def reclaimed() -> list[ClaimedJob]:
        return await store.claim_jobs("second", 1, lease_s=60)

    [again] = await eventually(reclaimed)
    assert (again.id, again.attempts, again.failures) == (first.id, 2, 1)
    assert again.last_error == "lease expired: doomed stopped holding it before it was settled"
    assert (
        await store.fail_job(again.id, "second", again.attempts, "boom", delay_s=0, max_failures=2)
        == "dead"
    )
