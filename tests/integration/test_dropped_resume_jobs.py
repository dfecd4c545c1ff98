"""A dropped ``resume_run`` or ``resume_resolve`` job ends what only it would have moved, on a
real PostgreSQL (store/job_ends.py).

Before, each of these was left for good: a run ``awaiting_approval`` whose approval nothing
would expire, a ``pending`` run waiting for its target lock, an escalation's and an undo's
steps ``pending`` or held for an approval. And dropping a job locked its row before its run's,
the reverse of a run settling (``close_run``), which could deadlock the two.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from receiver.model import ApprovalState, RunOutcome, StepPlan, Target
from receiver.store import JobKind, Store
from receiver.store.job_ends import ESCALATION_NOT_DONE
from tests.support.events import new_event, new_run
from tests.support.polling import eventually

pytestmark = pytest.mark.postgres

RESTART = "kubernetes.rollout_restart"


def target(i: int) -> Target:
    return Target("Deployment", "shop", f"d{i}")


async def open_job(store: Store, run_id: str, kind: JobKind) -> int:
    [job] = [
        j
        for j in (await store.list_jobs(run_id=run_id, kind=kind.value))[0]
        if j["state"] == "pending"
    ]
    return int(job["id"])


async def parked_run(store: Store, i: int) -> tuple[str, str]:
    """A run that did step 0 and waits for the approval of step 1: its id and the approval's."""
    run_id = await new_run(store, i, target=target(i))
    assert await store.set_run_outcome(run_id, RunOutcome.RUNNING)
    await store.record_step(run_id, idx=0, action=RESTART, outcome="ok")
    await store.record_step(
        run_id, idx=1, action=RESTART, outcome="awaiting_approval", needs_approval=True
    )
    approval, _ = await store.request_approval(
        run_id=run_id,
        step_idx=1,
        rule="r",
        target=target(i),
        action=RESTART,
        risk="high",
        plan={"action": RESTART},
        plan_hash="h",
        context={},
        ttl_s=3600.0,
    )
    assert await store.set_run_outcome(run_id, RunOutcome.AWAITING_APPROVAL)
    return run_id, approval.id


async def test_a_dropped_resume_run_ends_the_run_waiting_for_its_approval(store: Store) -> None:
    run_id, approval_id = await parked_run(store, 0)
    job_id = await open_job(store, run_id, JobKind.RESUME_RUN)

    dropped = await store.drop_item("job", job_id, actor="alice", reason="stale")

    why = f"its resume_run job {job_id} was dropped by alice (stale)"
    error = f"cancelled while waiting for an approval: {why}"
    assert dropped["run_ended"] == "cancelled"
    assert dropped["steps_ended"] == [1]
    assert dropped["approvals_cancelled"] == [approval_id]
    assert dropped["target_lock"] == {
        "rule": "r",
        "target": {"kind": "Deployment", "namespace": "shop", "name": "d0"},
    }
    run = await store.get_run(run_id)
    assert run is not None
    assert (run.outcome, run.error) == (RunOutcome.CANCELLED, error)
    assert run.finished_at is not None
    assert [(s.idx, s.outcome, s.message) for s in run.steps][1] == (1, "cancelled", error)
    approval = await store.get_approval(approval_id)
    assert approval is not None
    assert (approval.state, approval.reason) == (ApprovalState.CANCELLED, why)
    # Its link can no longer decide it.
    decided = await store.decide_approval(approval_id, ApprovalState.APPROVED, by="b", channel="x")
    assert decided is None
    entries = await store.audit_entries(run_id)
    assert [a["kind"] for a in entries][-4:] == [
        "job.drop",
        "step",
        "approval.cancelled",
        "run.outcome",
    ]
    assert entries[-1]["data"] == {
        "outcome": "cancelled",
        "error": error,
        "job_id": job_id,
        "by": "alice",
    }


async def test_an_approved_step_whose_taking_up_was_dropped_ends_with_its_run(
    store: Store,
) -> None:
    run_id, approval_id = await parked_run(store, 1)
    approved = await store.decide_approval(
        approval_id, ApprovalState.APPROVED, by="bob", channel="web"
    )
    assert approved is not None
    job_id = await open_job(store, run_id, JobKind.RESUME_RUN)

    dropped = await store.drop_item("job", job_id, actor="ops", reason="no")

    assert dropped["run_ended"] == "cancelled"
    approval = await store.get_approval(approval_id)
    assert approval is not None
    assert (approval.state, approval.decided_by) == (ApprovalState.CANCELLED, "bob")


async def pending_run(store: Store, i: int, event_id: int | None = None) -> str:
    """A run ``pending``, waiting for its target lock, with its ``resume_run`` job."""
    run_id = await new_run(store, i, target=target(i))
    if event_id is not None:
        async with store._pool.acquire() as conn:
            await conn.execute("UPDATE runs SET event_id = $2 WHERE id = $1", run_id, event_id)
    assert await store.set_run_outcome(
        run_id,
        RunOutcome.PENDING,
        data={"waiting_for": "lock"},
        schedule=[(JobKind.RESUME_RUN, 3600.0)],
    )
    return run_id


async def test_a_dropped_resume_run_cancels_the_run_waiting_for_the_lock(store: Store) -> None:
    run_id = await pending_run(store, 2)
    job_id = await open_job(store, run_id, JobKind.RESUME_RUN)

    dropped = await store.drop_item("job", job_id, actor="carol", reason="gone")

    assert dropped["run_ended"] == "cancelled"
    assert "target_lock" not in dropped
    run = await store.get_run(run_id, with_steps=False)
    assert run is not None
    assert run.outcome is RunOutcome.CANCELLED
    assert run.error == (
        "cancelled while waiting for the target lock: its resume_run job "
        f"{job_id} was dropped by carol (gone)"
    )


async def test_a_run_whose_firing_event_is_still_queued_is_left_to_it(store: Store) -> None:
    assert await store.insert_events([new_event(3)]) == (1, 0)
    [event], _ = await store.list_events(state="pending")
    event_id = int(event["id"])
    run_id = await pending_run(store, 3, event_id)
    job_id = await open_job(store, run_id, JobKind.RESUME_RUN)

    dropped = await store.drop_item("job", job_id, actor="carol", reason="gone")

    assert "run_ended" not in dropped
    run = await store.get_run(run_id, with_steps=False)
    assert run is not None
    assert run.outcome is RunOutcome.PENDING


async def test_a_dropped_escalation_job_ends_the_steps_it_would_have_run(store: Store) -> None:
    run_id = await new_run(store, 4, target=target(4))
    assert await store.set_run_outcome(run_id, RunOutcome.RUNNING)
    await store.record_step(run_id, idx=0, action=RESTART, outcome="ok")
    assert await store.set_run_outcome(run_id, RunOutcome.VERIFYING, verify_within_s=60)
    async with store._pool.acquire() as conn:  # its deadline has passed
        await conn.execute(
            "UPDATE runs SET verify_within_s = 60,"
            " verify_deadline = remediator_now() - interval '1 minute'"
            " WHERE id = $1",
            run_id,
        )
    ladder = [StepPlan(0, "notify", {"text": "x"}, False), StepPlan(1, RESTART, {}, True)]
    ended = await store.conclude_verification(run_id, ladder, grace_s=0)
    assert ended is not None
    assert ended.escalation == 2
    job_id = await open_job(store, run_id, JobKind.RESUME_RUN)

    dropped = await store.drop_item("job", job_id, actor="dave", reason="noisy")

    assert "run_ended" not in dropped
    assert dropped["steps_ended"] == [1, 2]
    # Nor is the failure announced or surely counted by the breaker: the answer says so.
    assert dropped["not_done"] == ESCALATION_NOT_DONE
    run = await store.get_run(run_id)
    assert run is not None
    assert run.outcome is RunOutcome.FAILED
    message = (
        "not run: the escalation was not taken up, its resume_run job "
        f"{job_id} was dropped by dave (noisy)"
    )
    assert [(s.phase, s.outcome, s.message) for s in run.steps][1:] == [
        ("on_failed", "not_run", message),
        ("on_failed", "not_run", message),
    ]
    entries = await store.audit_entries(run_id)
    assert [a["kind"] for a in entries][-4:] == [
        "job.drop",
        "step",
        "step",
        "run.escalation_dropped",
    ]
    assert entries[-1]["data"] == {
        "not_done": ESCALATION_NOT_DONE,
        "why": f"its resume_run job {job_id} was dropped by dave (noisy)",
        "job_id": job_id,
        "by": "dave",
    }


async def test_dropped_undo_jobs_end_the_held_and_pending_on_resolved_steps(
    store: Store,
) -> None:
    run_id = await new_run(store, 5, target=target(5))
    assert await store.set_run_outcome(run_id, RunOutcome.RUNNING)
    await store.record_step(run_id, idx=0, action=RESTART, outcome="ok")
    assert await store.set_run_outcome(run_id, RunOutcome.SUCCEEDED)
    assert await store.close_run(run_id, None, defer_undo=True) is not None
    undo = [StepPlan(0, RESTART, {}, True), StepPlan(1, "notify", {"text": "x"}, False)]
    assert await store.carry_undo(run_id, undo, event_id=1, retry_s=3600)
    await store.record_step(
        run_id,
        idx=1,
        phase="resolve",
        action=RESTART,
        outcome="awaiting_approval",
        needs_approval=True,
    )
    approval, _ = await store.request_approval(
        run_id=run_id,
        step_idx=1,
        rule="r",
        target=target(5),
        action=RESTART,
        risk="high",
        plan={},
        plan_hash="h",
        context={},
        ttl_s=3600.0,
    )
    resolve_job = await open_job(store, run_id, JobKind.RESUME_RESOLVE)
    resume_job = await open_job(store, run_id, JobKind.RESUME_RUN)

    # The held step's approval job still moves the undo: nothing ends with the first drop.
    first = await store.drop_item("job", resolve_job, actor="erin", reason="one")
    assert "steps_ended" not in first
    second = await store.drop_item("job", resume_job, actor="erin", reason="two")

    assert second["steps_ended"] == [1, 2]
    assert second["approvals_cancelled"] == [approval.id]
    run = await store.get_run(run_id)
    assert run is not None
    assert run.outcome is RunOutcome.SUCCEEDED
    assert [(s.phase, s.outcome) for s in run.steps] == [
        ("run", "ok"),
        ("resolve", "not_run"),
        ("resolve", "not_run"),
    ]


async def test_a_resume_resolve_job_dropped_alone_ends_the_undo_it_held(store: Store) -> None:
    run_id = await new_run(store, 6, target=target(6))
    assert await store.set_run_outcome(run_id, RunOutcome.SUCCEEDED)
    assert await store.close_run(run_id, None, defer_undo=True) is not None
    assert await store.carry_undo(
        run_id, [StepPlan(0, RESTART, {}, False)], event_id=1, retry_s=3600
    )
    job_id = await open_job(store, run_id, JobKind.RESUME_RESOLVE)

    dropped = await store.drop_item("job", job_id, actor="f", reason="r")

    assert dropped["steps_ended"] == [0]
    run = await store.get_run(run_id)
    assert run is not None
    assert [(s.phase, s.outcome) for s in run.steps] == [("resolve", "not_run")]


async def test_a_drop_takes_the_run_lock_before_the_job_lock(
    store: Store, database_url: str
) -> None:
    """The order ``close_run`` takes them in (the run, then its job): the drop waits for the
    run and holds no lock on the job meanwhile, so a settling run cannot deadlock with it."""
    run_id = await new_run(store, 7, target=target(7))
    assert await store.set_run_outcome(run_id, RunOutcome.RUNNING)
    assert await store.set_run_outcome(
        run_id,
        RunOutcome.VERIFYING,
        verify_within_s=3600,
        schedule=[(JobKind.VERIFY_DEADLINE, 3600.0)],
    )
    job_id = await open_job(store, run_id, JobKind.VERIFY_DEADLINE)
    holder = await asyncpg.connect(database_url)
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute("SELECT 1 FROM runs WHERE id = $1 FOR UPDATE", run_id)
        drop = asyncio.create_task(store.drop_item("job", job_id, actor="g", reason="r"))

        async def drop_waits() -> bool:
            return bool(
                await holder.fetchval(
                    """SELECT count(*) FROM pg_stat_activity
                       WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()"""
                )
            )

        await eventually(drop_waits)
        # The job's row is free: the run's settling would queue its job without waiting.
        await holder.execute("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE NOWAIT", job_id)
        await tx.commit()
        dropped = await drop
        assert (dropped["state"], dropped["run_ended"]) == ("done", "cancelled")
    finally:
        await holder.close()
