"""The reads of stored JSON that ended steps, carried undos and took runs up still made with
json.loads, on a row edited in the database to hold what Python cannot read back (an integer of
more than 4,300 digits, arrays nested 3,000 deep) or another shape (a list).

- A step held for its approval whose params were edited: rejecting the approval (its step
  audit row, approval_ends) and the alert resolving (``end_steps``: the run ended
  ``cancelled``) raised, the decision answered 500 and the resolution failed until it was
  dead. Now the step ends as it would, its audit row giving ``params`` as ``{}`` and
  ``params_unreadable`` why.
- The alert event's ``skips`` edited: taking its run up (``get_event``) raised until the job was
  dead, though the run never reads them. Now the run goes on.
- A job's ``payload`` edited: ``get_job`` raised. Now it is given as the queue API gives it:
  the stored text, ``payload_unreadable`` why.
- An undo step done whose params were edited: a carry comparing the steps done with the steps
  planned (``resolve_steps_done``) raised. Now the done step stands for every planned step of
  its action (it may be the same): those are left out rather than done twice on a guess."""

from __future__ import annotations

from typing import Any

import pytest

from receiver.approvals.state import Decision
from receiver.model import RunOutcome, StepPlan
from receiver.store import JobKind
from receiver.store.pending_steps import resolve_steps_done, was_done
from tests.integration.test_kept_undo import POKE_BACK, RULE
from tests.support.approvals import MakeApprovalEnv, poke_labels
from tests.support.unreadable import ALICE, API, DEEP, EDITS, HUGE, approve, edit

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

UNDO = RULE.format(name="poke", undo=POKE_BACK)


def _step_rows(audit: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["data"] for e in audit if e["kind"] == "step"]


@pytest.mark.parametrize("value", EDITS.values(), ids=EDITS.keys())
async def test_a_held_step_whose_params_cannot_be_read_ends_with_its_rejection(
    approval_env: MakeApprovalEnv, database_url: str, value: str
) -> None:
    env = await approval_env()
    run, approval = await env.pending_run()
    await edit(database_url, f"UPDATE steps SET params = {value}")

    await env.desk.decide(approval.id, Decision.REJECT, ALICE, API, reason="no")

    done = await env.harness.store.get_run(run.id)
    assert done is not None
    assert done.outcome is RunOutcome.REJECTED
    ended = _step_rows(await env.harness.store.audit_entries(run.id))[-1]
    assert ended["outcome"] == "rejected"
    assert ended["params"] == {}
    assert ended["params_unreadable"].startswith("the stored ")


@pytest.mark.parametrize("value", EDITS.values(), ids=EDITS.keys())
async def test_a_held_step_whose_params_cannot_be_read_ends_when_its_alert_resolves(
    approval_env: MakeApprovalEnv, database_url: str, value: str
) -> None:
    env = await approval_env()
    run, _ = await env.pending_run()
    await edit(database_url, f"UPDATE steps SET params = {value}")

    await env.harness.deliver(poke_labels(), status="resolved")

    done = await env.harness.store.get_run(run.id)
    assert done is not None
    assert done.outcome is RunOutcome.CANCELLED
    assert [s.outcome for s in done.steps] == ["cancelled"]
    ended = _step_rows(await env.harness.store.audit_entries(run.id))[-1]
    assert (ended["outcome"], ended["params"]) == ("cancelled", {})
    assert ended["params_unreadable"].startswith("the stored ")
    assert await env.harness.store.dead_counts() == {"events": 0, "jobs": 0}


@pytest.mark.parametrize("value", [HUGE, DEEP], ids=["a huge number", "deep nesting"])
async def test_a_run_whose_alerts_skips_cannot_be_read_is_taken_up(
    approval_env: MakeApprovalEnv, database_url: str, value: str
) -> None:
    env = await approval_env()
    run, approval = await env.pending_run()
    await edit(database_url, f"UPDATE alert_events SET skips = {value}")

    await approve(env, approval)

    assert env.peer.pokes == 1
    done = await env.harness.store.get_run(run.id)
    assert done is not None
    assert done.outcome is RunOutcome.SUCCEEDED
    event = await env.harness.store.get_event(run.event_id or 0)
    assert event is not None
    assert event["skips_unreadable"].startswith("the stored data cannot be read back")


@pytest.mark.parametrize("value", [HUGE, DEEP], ids=["a huge number", "deep nesting"])
async def test_a_job_whose_payload_cannot_be_read_is_given_as_stored(
    approval_env: MakeApprovalEnv, database_url: str, value: str
) -> None:
    env = await approval_env()
    run, _ = await env.pending_run()
    store = env.harness.store
    await store.enqueue_job(JobKind.RESUME_RUN, run.id)
    [job], _ = await store.list_jobs(run_id=run.id, state="pending")
    await edit(database_url, f"UPDATE jobs SET payload = {value}")

    got = await store.get_job(job["id"])

    assert got is not None
    assert got["run_id"] == run.id
    assert isinstance(got["payload"], str)
    assert got["payload_unreadable"].startswith("the stored data cannot be read back")


@pytest.mark.parametrize("value", EDITS.values(), ids=EDITS.keys())
async def test_an_undo_step_done_whose_params_cannot_be_read_is_not_planned_again(
    approval_env: MakeApprovalEnv, database_url: str, value: str
) -> None:
    env = await approval_env(rules=UNDO)
    await env.harness.deliver(poke_labels())
    await env.harness.deliver(poke_labels(), status="resolved")
    run = await env.harness.only_run()
    assert [(s.phase, s.outcome) for s in run.steps] == [("run", "ok"), ("resolve", "ok")]
    await edit(database_url, f"UPDATE steps SET params = {value} WHERE phase = 'resolve'")

    async with env.harness.store._pool.acquire() as conn:
        done = await resolve_steps_done(conn, run.id)

    poke = StepPlan(index=0, action="test.poke", params={}, needs_approval=False)
    other = StepPlan(index=1, action="test.other", params={}, needs_approval=False)
    assert was_done(poke, done)
    assert not was_done(other, done)
