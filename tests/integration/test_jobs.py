"""The job queue against a real PostgreSQL: idempotent enqueue (in the caller's transaction
too), the NOTIFY wake-up of a due job, jobs scheduled together with a run's outcome, and the
pruning of finished jobs. Claims and leases: test_job_leases.py; one job of a run at a time:
test_jobs_one_per_run.py."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import asyncpg
import pytest

from receiver.model import RunOutcome
from receiver.store import WORK_CHANNEL, Store
from tests.support.events import new_run
from tests.support.jobs import DEADLINE, RESUME

pytestmark = pytest.mark.postgres


async def open_jobs(store: Store) -> list[dict[str, object]]:
    async with store._pool.acquire() as conn:
        rows = await conn.fetch("SELECT id, kind, state FROM jobs ORDER BY id")
    return [dict(r) for r in rows]


# -- enqueue --------------------------------------------------------------------------------


async def test_enqueue_is_idempotent_per_kind_and_run_and_keeps_the_earlier_due_time(
    store: Store,
) -> None:
    run_id = await new_run(store)
    first = await store.enqueue_job(RESUME, run_id, delay_s=600, payload={"reason": "retry"})
    assert first is not None
    earlier = await store.enqueue_job(RESUME, run_id, delay_s=60, payload={"approval": "ok"})
    later = await store.enqueue_job(RESUME, run_id, delay_s=3600)
    assert earlier == later == first

    job = await store.get_job(first)
    assert job is not None
    now = await store.server_now()
    assert timedelta(seconds=50) < job["not_before"] - now <= timedelta(seconds=60)
    assert job["payload"] == {"reason": "retry", "approval": "ok"}  # merged, newer keys win
    assert job["state"] == "pending"

    other_kind = await store.enqueue_job(DEADLINE, run_id, delay_s=600)
    assert other_kind is not None
    assert other_kind != first
    assert [j["kind"] for j in await open_jobs(store)] == ["resume_run", "verify_deadline"]


async def test_enqueue_for_a_missing_run_or_an_unknown_kind(store: Store) -> None:
    assert await store.enqueue_job(RESUME, str(uuid.uuid4())) is None
    run_id = await new_run(store)
    with pytest.raises(ValueError, match="JobKind"):
        await store.enqueue_job("reboot_cluster", run_id)
    assert await open_jobs(store) == []


async def test_enqueue_in_the_callers_transaction_rolls_back_with_it(store: Store) -> None:
    run_id = await new_run(store)

    async def enqueue_then_fail() -> None:
        async with store._pool.acquire() as conn, conn.transaction():
            assert await store.enqueue_job(RESUME, run_id, conn=conn) is not None
            raise RuntimeError("the run change failed")

    with pytest.raises(RuntimeError):
        await enqueue_then_fail()
    assert await open_jobs(store) == []


# -- wake-up --------------------------------------------------------------------------------


async def test_a_due_job_notifies_the_work_channel_and_a_later_one_does_not(
    store: Store, database_url: str
) -> None:
    run_later, run_now = await new_run(store, 1), await new_run(store, 2)
    listener = await asyncpg.connect(database_url)
    woken: list[str] = []
    arrived = asyncio.Event()

    def on_notify(_conn: object, _pid: int, channel: str, _payload: object) -> None:
        woken.append(channel)
        arrived.set()

    try:
        await listener.add_listener(WORK_CHANNEL, on_notify)
        await store.enqueue_job(RESUME, run_later, delay_s=3600)
        await store.enqueue_job(RESUME, run_now)
        # The later job committed first and notifications arrive in commit order: had it
        # sent one, it would be in ``woken`` before the one that sets ``arrived``.
        await asyncio.wait_for(arrived.wait(), timeout=5)
    finally:
        await listener.close()
    assert woken == [WORK_CHANNEL]


# -- scheduled with a run's outcome ---------------------------------------------------------


async def test_set_run_outcome_schedules_jobs_in_the_same_transaction(store: Store) -> None:
    run_id = await new_run(store)
    assert await store.set_run_outcome(
        run_id, RunOutcome.VERIFYING, verify_within_s=600, schedule=[(DEADLINE, 600)]
    )
    run = await store.get_run(run_id)
    [job] = await open_jobs(store)
    stored = await store.get_job(int(str(job["id"])))
    assert run is not None
    assert stored is not None
    # One transaction, one now(): the job is due exactly at the run's verify deadline.
    assert stored["not_before"] == run.verify_deadline
    assert (stored["kind"], stored["run_id"]) == ("verify_deadline", run_id)

    assert not await store.set_run_outcome(
        str(uuid.uuid4()), RunOutcome.VERIFYING, schedule=[(DEADLINE, 1)]
    )
    assert len(await open_jobs(store)) == 1


async def test_a_failed_schedule_leaves_the_outcome_unchanged(store: Store) -> None:
    run_id = await new_run(store)
    with pytest.raises(ValueError, match="JobKind"):
        await store.set_run_outcome(run_id, RunOutcome.RUNNING, schedule=[("reboot", 0)])
    # The enqueue fails inside the transaction: the outcome and its audit row go with it.
    async with store._pool.acquire() as conn:
        await conn.execute(
            """
            CREATE FUNCTION refuse_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'jobs refused by the test'; END; $$;
            CREATE TRIGGER refuse_jobs BEFORE INSERT ON jobs
                FOR EACH ROW EXECUTE FUNCTION refuse_jobs();
            """
        )
    with pytest.raises(asyncpg.exceptions.RaiseError):
        await store.set_run_outcome(run_id, RunOutcome.RUNNING, schedule=[(RESUME, 0)])
    run = await store.get_run(run_id)
    assert run is not None
    assert (run.outcome, run.started_at) == (RunOutcome.PENDING, None)
    assert [e["kind"] for e in await store.audit_entries(run_id)] == ["run.created"]
    assert await open_jobs(store) == []


# -- retention ------------------------------------------------------------------------------


async def test_prune_removes_only_finished_jobs(store: Store) -> None:
    run_id = await new_run(store)
    done = await store.enqueue_job(RESUME, run_id)
    await store.enqueue_job(DEADLINE, run_id, delay_s=3600)
    [claimed] = await store.claim_jobs("a", 1, lease_s=60)
    assert claimed.id == done
    assert await store.complete_job(claimed.id, "a", claimed.attempts)
    assert await store.prune_jobs(older_than_s=3600) == 0  # finished too recently
    assert await store.prune_jobs(older_than_s=0) == 1
    assert [j["kind"] for j in await open_jobs(store)] == ["verify_deadline"]


async def test_retention_prunes_finished_events_and_jobs_together(store: Store) -> None:
    # What the service's retention loop calls: both queues, never a run.
    run_id = await new_run(store)
    job = await store.enqueue_job(RESUME, run_id)
    [claimed] = await store.claim_jobs("a", 1, lease_s=60)
    assert claimed.id == job
    assert await store.complete_job(claimed.id, "a", claimed.attempts)
    assert await store.prune(older_than_s=3600) == {"events": 0, "jobs": 0}
    pruned = await store.prune(older_than_s=0)
    assert pruned["jobs"] == 1
    assert await store.get_job(job) is None
    assert await store.get_run(run_id) is not None
