"""A worker taking up a run whose stored step params, or whose approved plan, someone edited in
the database to hold what Python cannot read back (an integer of more than 4,300 digits, arrays
nested 3,000 deep) or another shape (a list).

The job that takes the run up after its approval raised (ValueError, RecursionError, or a
TypeError/AttributeError reading the list as params or plan) on every attempt: the run stayed
``awaiting_approval`` or ``running`` until its job went dead, and nothing in the audit log said
why. Acting on a guess (no params, no approved preconditions) would be worse. Now the step
fails without acting, its message naming the field, and the run ends ``failed``: both audited.

A job whose payload cannot be read back raised in ``claim_jobs`` after the claim committed:
every job of that claim was leased and never handed to the worker, and claimed again in the
same batch once the lease ran out. Nothing reads a job's payload to act: it is now claimed."""

from __future__ import annotations

import pytest

from receiver.approvals.state import Decision
from receiver.model import RunOutcome
from receiver.store import JobKind, Store
from tests.support.approvals import MakeApprovalEnv, poke_labels
from tests.support.unreadable import ALICE, API, EDITS, approve, edit


@pytest.mark.parametrize("value", EDITS.values(), ids=EDITS.keys())
@pytest.mark.parametrize("column", ["steps.params", "approvals.plan"])
async def test_an_approved_step_whose_params_or_plan_cannot_be_read_fails_without_acting(
    approval_env: MakeApprovalEnv, database_url: str, column: str, value: str
) -> None:
    env = await approval_env()
    run, approval = await env.pending_run()
    table, field = column.split(".")
    if table == "approvals":
        # Edited before the decision, the plan cannot be approved at all
        # (http/test_unreadable_plan_decisions.py): edited after it, before the worker.
        await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API, reason="go")
        await edit(database_url, f"UPDATE {table} SET {field} = {value}")
        await env.harness.drain()
    else:
        await edit(database_url, f"UPDATE {table} SET {field} = {value}")
        await approve(env, approval)

    assert env.peer.pokes == 0
    done = await env.harness.store.get_run(run.id)
    assert done is not None
    assert done.outcome is RunOutcome.FAILED
    [step] = done.steps
    named = "params" if field == "params" else "approved plan"
    assert step.outcome == "failed"
    assert f"{named} cannot be read: it was edited after it was written" in step.message
    assert step.message.endswith("; not run")
    audit = await env.harness.store.audit_entries(run.id)
    said = [e for e in audit if "cannot be read" in str(e["data"])]
    assert said, [e["kind"] for e in audit]
    assert audit[-1]["data"]["outcome"] == "failed"
    jobs, _ = await env.harness.store.list_jobs(run_id=run.id)
    # The job that took the approval up, done; the decision's notice job may still wait.
    [job] = [j for j in jobs if j["kind"] == "resume_run"]
    assert job["state"] == "done"


@pytest.mark.parametrize("value", EDITS.values(), ids=EDITS.keys())
async def test_a_job_whose_payload_cannot_be_read_is_claimed(
    store: Store, approval_env: MakeApprovalEnv, database_url: str, value: str
) -> None:
    env = await approval_env()
    for name in ("api", "cart"):
        await env.harness.deliver(poke_labels(name))
    runs = [r.id for r in await env.harness.runs()]
    assert len(runs) == 2
    for run_id in runs:
        await store.enqueue_job(JobKind.RESUME_RUN, run_id)
    await edit(database_url, f"UPDATE jobs SET payload = {value} WHERE run_id = '{runs[0]}'")

    claimed = await store.claim_jobs("w1", 10, 30.0)

    assert sorted(j.run_id for j in claimed) == sorted(runs)
    assert all(j.payload == {} for j in claimed)
