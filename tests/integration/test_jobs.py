"""The job queue against a real PostgreSQL: idempotent enqueue, due times, leases, one job of a
run at a time, the NOTIFY wake-up, and jobs scheduled together with a run's outcome."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest

from receiver.model import RunOutcome
from receiver.store import WORK_CHANNEL, ClaimedJob, JobKind, Store
from tests.support.events import new_run
from tests.support.polling import eventually

pytestmark = pytest.mark.postgres

RESUME = JobKind.RESUME_RUN
DEADLINE = JobKind.VERIFY_DEADLINE


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


# -- claiming -------------------------------------------------------------------------------


async def test_a_job_is_claimed_only_once_it_is_due(store: Store) -> None:
    run_far, run_soon = await new_run(store, 1), await new_run(store, 2)
    await store.enqueue_job(RESUME, run_far, delay_s=3600)
    soon = await store.enqueue_job(RESUME, run_soon, delay_s=0.3)
    assert soon is not None
    job = await store.get_job(soon)
    assert job is not None
    not_before = job["not_before"]

    async def claim() -> list[ClaimedJob]:
        return await store.claim_jobs("a", 10, lease_s=30)

    [claimed] = await eventually(claim)
    assert claimed.id == soon
    # Claimed at the database's now() = lease_until - lease: never before the due time.
    assert claimed.lease_until - timedelta(seconds=30) >= not_before
    assert await store.claim_jobs("a", 10, lease_s=30) == []  # the far one is not due
    assert await store.jobs_due_count() == 0
    next_due = await store.next_job_due()
    assert next_due is not None
    assert next_due - await store.server_now() > timedelta(minutes=59)


async def test_two_owners_claiming_at_once_never_get_the_same_job(store: Store) -> None:
    runs = [await new_run(store, i) for i in range(30)]
    for run_id in runs:
        await store.enqueue_job(RESUME, run_id)
    assert await store.jobs_due_count() == 30
    got: dict[str, list[int]] = {"a": [], "b": [], "c": []}

    async def drain(owner: str) -> None:
        while True:
            claimed = await store.claim_jobs(owner, 4, lease_s=60)
            if not claimed and await store.jobs_due_count() == 0:
                return
            got[owner] += [c.id for c in claimed]

    await asyncio.wait_for(asyncio.gather(*(drain(owner) for owner in got)), timeout=30)
    everything = got["a"] + got["b"] + got["c"]
    assert len(everything) == len(set(everything)) == 30


async def test_an_expired_lease_is_reclaimed_by_another_owner(store: Store) -> None:
    run_id = await new_run(store)
    await store.enqueue_job(RESUME, run_id)
    [first] = await store.claim_jobs("a", 1, lease_s=0.2)
    assert first.attempts == 1

    async def claim_b() -> list[ClaimedJob]:
        return await store.claim_jobs("b", 1, lease_s=60)

    [again] = await eventually(claim_b)
    assert (again.id, again.attempts) == (first.id, 2)
    # "a" woke up late: its lease is gone, so it can settle nothing.
    assert not await store.extend_job_lease(first.id, "a", first.attempts, 60)
    assert not await store.complete_job(first.id, "a", first.attempts)
    assert await store.complete_job(again.id, "b", again.attempts)


async def test_a_live_lease_is_not_taken(store: Store) -> None:
    run_id = await new_run(store)
    await store.enqueue_job(RESUME, run_id)
    [claimed] = await store.claim_jobs("a", 1, lease_s=60)
    assert await store.claim_jobs("b", 10, lease_s=60) == []
    assert await store.extend_job_lease(claimed.id, "a", claimed.attempts, 120)
    job = await store.get_job(claimed.id)
    assert job is not None
    assert job["lease_owner"] == "a"


async def test_complete_and_release_only_by_the_lease_owner(store: Store) -> None:
    run_id = await new_run(store)
    job_id = await store.enqueue_job(RESUME, run_id, payload={"why": "retry_at"})
    assert job_id is not None
    [claimed] = await store.claim_jobs("a", 1, lease_s=60)
    assert (claimed.kind, claimed.run_id, claimed.payload) == (RESUME, run_id, {"why": "retry_at"})

    assert not await store.complete_job(job_id, "b", claimed.attempts)
    assert not await store.release_job(job_id, "b", claimed.attempts)
    assert not await store.extend_job_lease(job_id, "b", claimed.attempts, 60)

    assert await store.release_job(
        job_id, "a", claimed.attempts, delay_s=0, error="guard still refuses"
    )
    [retried] = await store.claim_jobs("b", 1, lease_s=60)
    assert (retried.id, retried.attempts, retried.last_error) == (
        job_id,
        2,
        "guard still refuses",
    )
    assert await store.complete_job(job_id, "b", retried.attempts)
    assert not await store.complete_job(job_id, "b", retried.attempts)  # already done
    job = await store.get_job(job_id)
    assert job is not None
    assert job["state"] == "done"
    assert job["done_at"] is not None

    # Done, so a new request opens a new job.
    assert await store.enqueue_job(RESUME, run_id) not in (None, job_id)


async def test_a_request_while_the_job_runs_makes_it_run_once_more(store: Store) -> None:
    run_id = await new_run(store)
    job_id = await store.enqueue_job(RESUME, run_id)
    [claimed] = await store.claim_jobs("a", 1, lease_s=60)
    # An approval arrives while the job is running: same open job, asked for again.
    assert await store.enqueue_job(RESUME, run_id, payload={"approval": "granted"}) == job_id
    assert await store.claim_jobs("b", 1, lease_s=60) == []

    assert await store.complete_job(claimed.id, "a", claimed.attempts)
    [rerun] = await store.claim_jobs("b", 1, lease_s=60)
    # Its attempts go on (the claim's number is never one an earlier claim had: fence.py).
    assert (rerun.id, rerun.attempts, rerun.payload) == (job_id, 2, {"approval": "granted"})
    assert await store.complete_job(rerun.id, "b", rerun.attempts)
    job = await store.get_job(rerun.id)
    assert job is not None
    assert job["state"] == "done"


async def test_one_runs_jobs_are_claimed_one_at_a_time_oldest_first(store: Store) -> None:
    run_id = await new_run(store)
    resume = await store.enqueue_job(RESUME, run_id)
    deadline = await store.enqueue_job(DEADLINE, run_id)
    other = await store.enqueue_job(RESUME, await new_run(store, 1))

    first = await store.claim_jobs("a", 10, lease_s=60)
    assert [c.id for c in first] == [resume, other]
    assert await store.claim_jobs("b", 10, lease_s=60) == []  # the run is busy
    assert await store.complete_job(first[0].id, "a", first[0].attempts)
    [second] = await store.claim_jobs("b", 10, lease_s=60)
    assert second.id == deadline


@contextlib.asynccontextmanager
async def stopped_inside_claim(
    store: Store, database_url: str, owner: str, limit: int
) -> AsyncIterator[asyncio.Task[list[ClaimedJob]]]:
    """``owner``'s claim, stopped after it picked its jobs and before it commits; it goes on
    when the block ends. (A trigger on its UPDATE waits for an advisory lock the test holds.)"""
    gate = await asyncpg.connect(database_url)
    try:
        await gate.execute(
            f"""
            CREATE FUNCTION hold_claims() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_advisory_lock(4242); PERFORM pg_advisory_unlock(4242);
                  RETURN NEW; END; $$;
            CREATE TRIGGER hold_claims BEFORE UPDATE ON jobs FOR EACH ROW
                WHEN (NEW.lease_owner = '{owner}') EXECUTE FUNCTION hold_claims();
            SELECT pg_advisory_lock(4242);
            """
        )
        claim = asyncio.create_task(store.claim_jobs(owner, limit, lease_s=60))

        async def waiting_at_the_gate() -> bool:
            waiting: int = await gate.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            )
            return waiting > 0

        await eventually(waiting_at_the_gate)
        yield claim
        await gate.execute("SELECT pg_advisory_unlock(4242)")
        await asyncio.wait_for(claim, timeout=10)
    finally:
        await gate.close()  # ends the session, so a claim still held is let go


async def test_a_claim_racing_another_for_the_same_run_skips_the_run(
    store: Store, database_url: str
) -> None:
    """Owner "a" is stopped inside its claim, after it picked the run's only due job; then the
    run's older job becomes due. Owner "b" must not take that one while "a" holds the other."""
    run_id = await new_run(store)
    older = await store.enqueue_job(DEADLINE, run_id, delay_s=3600)
    due = await store.enqueue_job(RESUME, run_id)
    async with stopped_inside_claim(store, database_url, "a", 10) as claim_a:
        async with store._pool.acquire() as conn:
            due_now = "UPDATE jobs SET not_before = now() - interval '1s' WHERE id = $1"
            await conn.execute(due_now, older)
        assert await store.claim_jobs("b", 10, lease_s=60) == []
    [claimed] = claim_a.result()
    assert claimed.id == due
    assert await store.claim_jobs("b", 10, lease_s=60) == []
    assert await store.complete_job(claimed.id, "a", claimed.attempts)
    assert [c.id for c in await store.claim_jobs("b", 10, lease_s=60)] == [older]


async def test_a_claim_leaves_the_runs_it_does_not_take_to_other_owners(
    store: Store, database_url: str
) -> None:
    first = await store.enqueue_job(RESUME, await new_run(store, 1))
    second = await store.enqueue_job(RESUME, await new_run(store, 2))
    async with stopped_inside_claim(store, database_url, "a", 1) as claim_a:
        taken_by_b = await store.claim_jobs("b", 10, lease_s=60)
    assert [c.id for c in claim_a.result()] == [first]  # the longest waiting first
    assert [c.id for c in taken_by_b] == [second]


async def test_concurrent_owners_never_hold_two_jobs_of_one_run(store: Store) -> None:
    runs = [await new_run(store, i) for i in range(15)]
    for run_id in runs:
        await store.enqueue_job(RESUME, run_id)
        await store.enqueue_job(DEADLINE, run_id)
    held: dict[str, int] = {}
    order: dict[str, list[JobKind]] = {run_id: [] for run_id in runs}
    settled = 0

    async def work(owner: str) -> None:
        nonlocal settled
        while settled < 30:
            claimed = await store.claim_jobs(owner, 3, lease_s=60)
            for job in claimed:
                assert job.run_id not in held, "two jobs of one run leased at once"
                held[job.run_id] = job.id
                order[job.run_id].append(job.kind)
            # Not a wait: a yield, so the other owners claim while these jobs are held (the
            # race the test is about).
            await asyncio.sleep(0)
            for job in claimed:
                del held[job.run_id]  # before the commit that frees the run
                assert await store.complete_job(job.id, owner, job.attempts)
                settled += 1
            if not claimed:
                # This owner's poll interval, as a worker's: the others hold what is left.
                await asyncio.sleep(0.01)

    await asyncio.wait_for(asyncio.gather(*(work(o) for o in "abcd")), timeout=60)
    assert all(kinds == [RESUME, DEADLINE] for kinds in order.values())


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
