"""A settlement of a worker's earlier claim settles nothing under the same worker's later claim
of the item (receiver/store/fence.py, ``claimed_sql``).

A worker keeps its owner id for its whole life. Its lease on an item runs out while a slow step
runs; the same worker claims the item again (the take-over of an expired lease), and then the
earlier claim's work ends and settles: it completed, released, failed or extended the later
claim, as the settlements checked the owner only. Now they check the claim too (its
``attempts``): the earlier claim's settlement changes nothing and answers that the lease is
lost (False, or None for a failure), and the later claim's settles it.

An operator's retry of a dead item, and a job asked for again while claimed, used to count the
item's attempts from 0 again: the claims after it had the numbers of the claims before it, and
an earlier claim's settlement passed again. They no longer lower ``attempts``.

Real PostgreSQL; the lease is made to run out by setting it one second in the past (the
store's clock), as tests/support/leases.py does.
"""

from __future__ import annotations

from typing import Any, Literal

import asyncpg
import pytest

from receiver.store import Store
from tests.support.events import new_event, new_run
from tests.support.leases import take_over, take_over_job

pytestmark = pytest.mark.postgres

WORKER = "replica-a/1234"
Action = Literal["complete", "release", "fail", "extend", "hand_back"]
ACTIONS: list[Action] = ["complete", "release", "fail", "extend", "hand_back"]


async def settle(store: Store, kind: str, action: Action, item_id: int, attempts: int) -> bool:
    """``action`` on the ``kind`` item ``item_id`` as WORKER's claim ``attempts``; whether the
    store settled it (a failure: whether it answered a state)."""
    event = kind == "event"
    if action == "complete":
        call = store.complete_event if event else store.complete_job
        return await call(item_id, WORKER, attempts)
    if action == "release":
        release = store.release_event if event else store.release_job
        return await release(item_id, WORKER, attempts, 5.0, "guards unavailable")
    if action == "fail":
        fail = store.fail_event if event else store.fail_job
        state = await fail(item_id, WORKER, attempts, "boom", delay_s=5.0, max_failures=10)
        return state is not None
    if action == "extend":
        extend = store.extend_lease if event else store.extend_job_lease
        return await extend(item_id, WORKER, attempts, 600.0)
    hand_back = store.hand_back_event if event else store.hand_back_job
    return await hand_back(item_id, WORKER, attempts)


async def queued(database_url: str, kind: str, item_id: int) -> dict[str, Any]:
    """The item's queue columns as stored."""
    table = "alert_events" if kind == "event" else "jobs"
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            f"""SELECT state, lease_owner, lease_until, attempts, failures, not_before,
                       last_error, done_at, dead_at
                FROM {table} WHERE id = $1""",
            item_id,
        )
    finally:
        await conn.close()
    assert row is not None
    return dict(row)


async def _event_claimed_twice(store: Store) -> tuple[int, int, int]:
    """An event WORKER claimed, whose lease ran out, claimed again by WORKER: its id, the
    earlier claim's attempts and the later one's."""
    await store.insert_events([new_event(1)])
    (first,) = await store.claim_events(WORKER, 1, 60.0)
    again = await take_over(store, first.event.id, WORKER)
    assert (first.attempts, again.attempts) == (1, 2)
    return first.event.id, first.attempts, again.attempts


async def _job_claimed_twice(store: Store) -> tuple[int, int, int]:
    """``_event_claimed_twice`` for a job."""
    job_id = await store.enqueue_job("resume_run", await new_run(store))
    assert job_id is not None
    (first,) = await store.claim_jobs(WORKER, 1, 60.0)
    again = await take_over_job(store, job_id, WORKER)
    assert (first.attempts, again.attempts) == (1, 2)
    return job_id, first.attempts, again.attempts


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("kind", ["event", "job"])
async def test_the_earlier_claims_settlement_settles_nothing_under_the_same_workers_later_one(
    store: Store, database_url: str, kind: str, action: Action
) -> None:
    claimed_twice = _event_claimed_twice if kind == "event" else _job_claimed_twice
    item_id, earlier, later = await claimed_twice(store)
    held = await queued(database_url, kind, item_id)
    assert (held["state"], held["lease_owner"], held["attempts"]) == ("claimed", WORKER, 2)

    assert not await settle(store, kind, action, item_id, earlier)
    assert await queued(database_url, kind, item_id) == held

    assert await settle(store, kind, action, item_id, later)
    settled = await queued(database_url, kind, item_id)
    expected = {
        "complete": "done",
        "release": "pending",
        "fail": "pending",
        "extend": "claimed",
        "hand_back": "pending",
    }[action]
    assert settled["state"] == expected
    if action == "extend":
        assert settled["lease_until"] > held["lease_until"]


@pytest.mark.parametrize("action", ACTIONS)
async def test_an_operators_retry_gives_no_later_claim_the_number_of_an_earlier_one(
    store: Store, database_url: str, action: Action
) -> None:
    """The event dies under the later claim, is retried, and WORKER claims it again: the
    earlier claim's settlement, later still, finds the new claim and settles nothing."""
    event_id, earlier, later = await _event_claimed_twice(store)
    state = await store.fail_event(event_id, WORKER, later, "boom", delay_s=0, max_failures=2)
    assert state == "dead"  # the expired lease counted one failure, this one the second
    await store.retry_item("event", event_id, actor="ops", reason="cause fixed")
    (retried,) = await store.claim_events(WORKER, 1, 60.0)
    assert retried.event.id == event_id
    held = await queued(database_url, "event", event_id)
    assert (held["state"], held["failures"]) == ("claimed", 0)

    assert not await settle(store, "event", action, event_id, earlier)
    assert await queued(database_url, "event", event_id) == held
    assert await settle(store, "event", action, event_id, retried.attempts)


@pytest.mark.parametrize("action", ACTIONS)
async def test_a_jobs_rerun_gives_no_later_claim_the_number_of_an_earlier_one(
    store: Store, database_url: str, action: Action
) -> None:
    """The job is asked for again while WORKER's later claim holds it, which completes it
    back to pending; WORKER claims it again: the earlier claim's settlement settles nothing."""
    job_id, earlier, later = await _job_claimed_twice(store)
    job = await store.get_job(job_id)
    assert job is not None
    assert await store.enqueue_job("resume_run", job["run_id"]) == job_id
    assert await store.complete_job(job_id, WORKER, later)
    assert (await queued(database_url, "job", job_id))["state"] == "pending"
    (rerun,) = await store.claim_jobs(WORKER, 1, 60.0)
    assert rerun.id == job_id
    held = await queued(database_url, "job", job_id)

    assert not await settle(store, "job", action, job_id, earlier)
    assert await queued(database_url, "job", job_id) == held
    assert await settle(store, "job", action, job_id, rerun.attempts)
