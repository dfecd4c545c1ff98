"""A claim taken over the way a real take-over does it: the holder's lease runs out and another
worker claims the item (``take_over``, ``take_over_job``).

The writes a worker makes under a claim are fenced by it (receiver.store.fence): a pass run as
"worker-b" over an event the store says "worker-a" holds writes nothing and raises LeaseLost.
A test that plays a second worker taking an item up after the first one died therefore takes
the claim over first, as the second worker's claim would, and runs its pass under the lease
this returns. The lease-fence tests play worker "a" claiming an event (``claim_one``) and
worker "b" taking it over (``take_over_fence``), their runs' steps naming ``RESTART``.
"""

from __future__ import annotations

from receiver.store import ClaimedJob, EventLease, LeaseFence, Store

__all__ = ["RESTART", "claim_one", "take_over", "take_over_fence", "take_over_job"]

RESTART = "kubernetes.rollout_restart"


async def take_over(store: Store, event_id: int, owner: str, lease_s: float = 30.0) -> EventLease:
    """Expire the lease on event ``event_id`` (one second ago, the store's clock) and claim it
    as ``owner`` for ``lease_s`` seconds: the lease ``owner``'s pass runs under. The claim
    counts the failed attempt an expired lease is (``last_error`` names the old owner).
    Raises AssertionError when the claim takes another event, or none (the event was not
    claimed, or is not at the head of its alert's queue)."""
    async with store._tx() as conn:
        expired = await conn.execute(
            "UPDATE alert_events SET lease_until = remediator_now() - interval '1 second'"
            " WHERE id = $1 AND state = 'claimed'",
            event_id,
        )
    assert expired == "UPDATE 1", f"event {event_id} is not claimed: {expired}"
    claimed = await store.claim_events(owner, 1, lease_s)
    assert [c.event.id for c in claimed] == [event_id], f"{owner} claimed {list(claimed)}"
    return EventLease(event_id, owner, claimed[0].attempts)


async def take_over_job(store: Store, job_id: int, owner: str, lease_s: float = 30.0) -> ClaimedJob:
    """``take_over`` for job ``job_id``: the job as ``owner`` claimed it (its ``fence`` the
    lease its pass runs under). Raises AssertionError when the claim takes another job, or
    none."""
    async with store._tx() as conn:
        expired = await conn.execute(
            "UPDATE jobs SET lease_until = remediator_now() - interval '1 second'"
            " WHERE id = $1 AND state = 'claimed'",
            job_id,
        )
    assert expired == "UPDATE 1", f"job {job_id} is not claimed: {expired}"
    claimed = await store.claim_jobs(owner, 1, lease_s)
    assert [j.id for j in claimed] == [job_id], f"{owner} claimed {claimed}"
    return claimed[0]


async def claim_one(store: Store, owner: str) -> int:
    """Claim one event as ``owner`` for 60 s: its id. Raises ValueError unless exactly one was
    claimed."""
    (claimed,) = await store.claim_events(owner, 1, 60.0)
    return claimed.event.id


async def take_over_fence(store: Store, event_id: int) -> LeaseFence:
    """A's lease runs out, and B claims the event: B's fence."""
    return (await take_over(store, event_id, "b", 60.0)).fence
