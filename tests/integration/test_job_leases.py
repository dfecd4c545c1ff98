"""Claiming jobs against a real PostgreSQL: a job is claimed only once it is due, by one owner
only; an expired lease is reclaimed by another owner, a live one is not taken; only the lease's
owner completes, releases or extends it; a request while the job runs makes it run once more."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from receiver.store import ClaimedJob, Store
from tests.support.events import new_run
from tests.support.jobs import RESUME
from tests.support.polling import eventually

pytestmark = pytest.mark.postgres


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
