"""A dropped job ends the run that only it would have moved, on a real PostgreSQL.

A ``verify_deadline`` job is all that ends a verification past its deadline; dropped (pending,
or dead after its attempts ran out), its run ended ``verifying`` for good. Now the drop ends the
run ``cancelled`` in its transaction, saying why, with no verdict and no escalation.
"""

from __future__ import annotations

import pytest

from receiver.model import RunOutcome, Target
from receiver.store import JobKind, Store
from tests.support.events import new_run

pytestmark = pytest.mark.postgres


async def verifying_run(store: Store, i: int = 0) -> tuple[str, int]:
    """A run of its own episode in ``verifying``, its deadline job due in an hour: its ids."""
    run_id = await new_run(store, i, target=Target("Deployment", "shop", f"v{i}"))
    assert await store.set_run_outcome(run_id, RunOutcome.RUNNING)
    await store.record_step(run_id, idx=0, action="kubernetes.rollout_restart", outcome="ok")
    assert await store.set_run_outcome(
        run_id,
        RunOutcome.VERIFYING,
        verify_within_s=3600,
        schedule=[(JobKind.VERIFY_DEADLINE, 3600.0)],
    )
    [job], _ = await store.list_jobs(run_id=run_id)
    return run_id, int(job["id"])


async def test_dropping_a_pending_deadline_job_ends_its_verifying_run(store: Store) -> None:
    run_id, job_id = await verifying_run(store)

    dropped = await store.drop_item("job", job_id, actor="alice", reason="stuck")

    assert (dropped["state"], dropped["run_ended"]) == ("done", "cancelled")
    run = await store.get_run(run_id)
    assert run is not None
    assert run.outcome is RunOutcome.CANCELLED
    assert run.verify_result is None
    assert run.finished_at is not None
    assert run.error == (
        f"verification not done: its deadline job {job_id} was dropped by alice (stuck); "
        "no verdict, no escalation"
    )
    kinds = [a["kind"] for a in await store.audit_entries(run_id)]
    assert kinds[-2:] == ["job.drop", "run.outcome"]
    [ended] = [a for a in await store.audit_entries(run_id) if a["kind"] == "run.outcome"][-1:]
    assert ended["data"] == {
        "outcome": "cancelled",
        "error": run.error,
        "job_id": job_id,
        "by": "alice",
    }
    # Fail closed: nothing is queued to act on the run, and no escalation step is recorded.
    # The finish_end job only asks whether the run's budget slot can be given back: a step
    # of it acted, so it cannot (pipeline/finish_end.py).
    open_jobs = [j for j in (await store.list_jobs(run_id=run_id))[0] if j["state"] != "done"]
    assert [(j["kind"], j["payload"]) for j in open_jobs] == [("finish_end", {"refund": True})]
    assert [s.phase for s in run.steps] == ["run"]


async def test_dropping_a_dead_deadline_job_ends_its_verifying_run(store: Store) -> None:
    run_id, job_id = await verifying_run(store, 1)
    async with store._pool.acquire() as conn:
        await conn.execute("UPDATE jobs SET not_before = remediator_now() WHERE id = $1", job_id)
    [claim] = await store.claim_jobs("w", 1, lease_s=60)
    assert claim.id == job_id
    assert (
        await store.fail_job(job_id, "w", claim.attempts, "boom", delay_s=0, max_failures=1)
        == "dead"
    )
    # Dead, it still holds the run for an operator's retry.
    run = await store.get_run(run_id, with_steps=False)
    assert run is not None
    assert run.outcome is RunOutcome.VERIFYING

    dropped = await store.drop_item("job", job_id, actor="bob", reason="the rule is gone")

    assert dropped["run_ended"] == "cancelled"
    run = await store.get_run(run_id, with_steps=False)
    assert run is not None
    assert run.outcome is RunOutcome.CANCELLED
    assert run.error is not None
    assert "dropped by bob (the rule is gone)" in run.error


async def test_a_run_that_another_deadline_job_holds_is_left_to_it(store: Store) -> None:
    """A dead deadline job dropped after the same work was asked for again: the open one ends
    the verification, not the drop."""
    run_id, job_id = await verifying_run(store, 2)
    async with store._pool.acquire() as conn:
        await conn.execute(
            "UPDATE jobs SET state = 'dead', dead_at = remediator_now() WHERE id = $1", job_id
        )
    again = await store.enqueue_job(JobKind.VERIFY_DEADLINE, run_id, delay_s=3600)
    assert again is not None
    assert again != job_id

    dropped = await store.drop_item("job", job_id, actor="ops", reason="superseded")

    assert "run_ended" not in dropped
    run = await store.get_run(run_id, with_steps=False)
    assert run is not None
    assert run.outcome is RunOutcome.VERIFYING


async def test_a_run_that_ended_otherwise_is_not_touched_by_a_drop(store: Store) -> None:
    run_id, job_id = await verifying_run(store, 3)
    assert await store.close_run(run_id, None) == RunOutcome.VERIFIED
    before = await store.get_run(run_id, with_steps=False)

    dropped = await store.drop_item("job", job_id, actor="ops", reason="done anyway")

    assert "run_ended" not in dropped
    after = await store.get_run(run_id, with_steps=False)
    assert after is not None
    assert before is not None
    assert (after.outcome, after.error) == (RunOutcome.VERIFIED, before.error)
