"""A dropped ``resume_run`` job of a ``running`` run ends the run, and one of an escalation
says what it leaves undone, on a real PostgreSQL (store/job_ends.py).

The job is the one a resolution queues for a run still ``running`` (``close_run``), so that a
run whose worker stopped in it ends ``cancelled`` rather than stay open. Before, dropping it
left the run ``running`` for good, its steps ``pending`` and ``started``. An escalation's job
feeds the breaker and announces the failure: before, its drop said nothing of either.
"""

from __future__ import annotations

import pytest

from receiver.model import Announcement, RunOutcome
from receiver.store import JobKind, Store
from receiver.store.job_ends import ESCALATION_NOT_DONE
from receiver.store.steps import ENDED_WHILE_STARTED
from tests.integration.test_dropped_resume_jobs import RESTART, open_job, target
from tests.support.events import new_event, new_run

pytestmark = pytest.mark.postgres


async def stopped_run(store: Store, i: int) -> str:
    """A run that did step 0, stopped in step 1 (``started``), step 2 still ``pending``, whose
    alert then resolved (``close_run`` queued its ``resume_run`` job)."""
    run_id = await new_run(store, i, target=target(i))
    assert await store.set_run_outcome(run_id, RunOutcome.RUNNING)
    await store.record_step(run_id, idx=0, action=RESTART, outcome="ok")
    await store.record_step(run_id, idx=1, action=RESTART, outcome="started", message="went")
    await store.record_step(run_id, idx=2, action=RESTART, outcome="pending")
    assert await store.close_run(run_id, None) == RunOutcome.RUNNING
    return run_id


async def test_a_dropped_resume_run_cancels_the_running_run(store: Store) -> None:
    run_id = await stopped_run(store, 10)
    job_id = await open_job(store, run_id, JobKind.RESUME_RUN)

    dropped = await store.drop_item("job", job_id, actor="alice", reason="stuck")

    error = f"cancelled while running: its resume_run job {job_id} was dropped by alice (stuck)"
    assert dropped["run_ended"] == "cancelled"
    assert dropped["steps_ended"] == [1, 2]
    assert dropped["target_lock"] == {
        "rule": "r",
        "target": {"kind": "Deployment", "namespace": "shop", "name": "d10"},
    }
    run = await store.get_run(run_id)
    assert run is not None
    assert (run.outcome, run.error) == (RunOutcome.CANCELLED, error)
    assert run.finished_at is not None
    assert [(s.idx, s.outcome, s.message) for s in run.steps] == [
        (0, "ok", ""),
        (1, "interrupted", f"{ENDED_WHILE_STARTED}went; {error}"),
        (2, "not_run", f"not run: {error}"),
    ]
    entries = await store.audit_entries(run_id)
    assert [a["kind"] for a in entries][-4:] == ["job.drop", "step", "step", "run.outcome"]
    assert entries[-1]["data"] == {
        "outcome": "cancelled",
        "error": error,
        "job_id": job_id,
        "by": "alice",
    }


async def test_a_running_run_whose_firing_event_is_queued_is_left_to_it(store: Store) -> None:
    assert await store.insert_events([new_event(11)]) == (1, 0)
    [event], _ = await store.list_events(state="pending")
    run_id = await stopped_run(store, 11)
    async with store._pool.acquire() as conn:
        await conn.execute("UPDATE runs SET event_id = $2 WHERE id = $1", run_id, int(event["id"]))
    job_id = await open_job(store, run_id, JobKind.RESUME_RUN)

    dropped = await store.drop_item("job", job_id, actor="alice", reason="stuck")

    assert "run_ended" not in dropped
    run = await store.get_run(run_id, with_steps=False)
    assert run is not None
    assert run.outcome is RunOutcome.RUNNING


async def failed_run(store: Store, i: int) -> str:
    """A run whose verification failed with no on_failed step: its escalation's job queued."""
    run_id = await new_run(store, i, target=target(i))
    assert await store.set_run_outcome(run_id, RunOutcome.RUNNING)
    assert await store.set_run_outcome(run_id, RunOutcome.VERIFYING, verify_within_s=60)
    async with store._pool.acquire() as conn:  # its deadline has passed
        await conn.execute(
            "UPDATE runs SET verify_within_s = 60,"
            " verify_deadline = remediator_now() - interval '1 minute'"
            " WHERE id = $1",
            run_id,
        )
    assert await store.conclude_verification(run_id, [], grace_s=0) is not None
    return run_id


async def test_a_dropped_escalation_says_its_failure_went_unannounced(store: Store) -> None:
    """No step to end: before, the drop said nothing, though the breaker feed and the
    announcement its job would have made are lost with it."""
    run_id = await failed_run(store, 12)
    job_id = await open_job(store, run_id, JobKind.RESUME_RUN)

    dropped = await store.drop_item("job", job_id, actor="alice", reason="noisy")

    assert dropped["not_done"] == ESCALATION_NOT_DONE
    assert "steps_ended" not in dropped
    [*_, row] = await store.audit_entries(run_id)
    assert (row["kind"], row["data"]["job_id"]) == ("run.escalation_dropped", job_id)
    run = await store.get_run(run_id, with_steps=False)
    assert run is not None
    assert run.outcome is RunOutcome.FAILED


async def test_an_escalation_already_announced_is_not_said_undone(store: Store) -> None:
    run_id = await failed_run(store, 13)
    await store.record_announcement(
        run_id,
        fingerprint=None,
        event=Announcement.VERIFICATION_FAILED.value,
        channel="slack",
        delivered=True,
        detail="ok",
    )
    job_id = await open_job(store, run_id, JobKind.RESUME_RUN)

    dropped = await store.drop_item("job", job_id, actor="alice", reason="noisy")

    assert "not_done" not in dropped
