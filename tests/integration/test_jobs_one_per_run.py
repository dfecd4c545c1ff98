"""One job of a run at a time, against a real PostgreSQL: a run's jobs are claimed oldest first,
one at a time; a claim racing another for the same run skips the run, and leaves the runs it
does not take to other owners (a claim is stopped mid-way by a trigger waiting on an advisory
lock the test holds); concurrent owners never hold two jobs of one run."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest

from receiver.store import ClaimedJob, JobKind, Store
from tests.support.events import new_run
from tests.support.jobs import DEADLINE, RESUME
from tests.support.polling import eventually

pytestmark = pytest.mark.postgres


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
