"""An alert event whose labels or annotations someone edited in the database to hold what Python
cannot read back (an integer of more than 4,300 digits, arrays nested 3,000 deep) or another
shape than intake writes (a list, a number as a label's value).

``claim_events`` read them with json.loads after the claim committed: the claim raised, every
event of its batch stayed leased and unworked, and was claimed again (and raised again) once
the lease ran out. Matching the event against empty labels instead would act on a guess. Now
the event is settled on its own, dead at once with a ``last_error`` that says which field and
why (``remediator events --state dead`` shows it; an operator drops it), audited
``event.dead``, and the rest of the claim is worked.

A run taken up again (after its approval, its undo's approval, its escalation's) reads back the
event that created it (``RunContext.origin``), for what its steps say about the alert: the job
raised on every attempt until it was dead. Now the steps it takes up fail without acting, their
message naming the field, and a parked run ends ``failed``: audited."""

from __future__ import annotations

import pytest

from receiver.model import RunOutcome
from tests.integration.test_escalation_approval import LADDER
from tests.integration.test_resolve_approval import UNDO, resolved
from tests.support.approvals import MakeApprovalEnv, poke_labels
from tests.support.payloads import alert, notification
from tests.support.unreadable import DEEP, HUGE, approve, audit_of_kind, edit, jobs_done
from tests.support.unreadable import EDITS as SHAPES

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

EDITS = {**SHAPES, "a value not a string": '\'{"alertname": "Poke", "deployment": 7}\'::jsonb'}
SAID = "cannot be read: it was edited after it was written"


@pytest.mark.parametrize("value", EDITS.values(), ids=EDITS.keys())
@pytest.mark.parametrize("field", ["labels", "annotations"])
async def test_an_event_that_cannot_be_read_is_dead_and_the_rest_of_its_claim_is_worked(
    approval_env: MakeApprovalEnv, database_url: str, field: str, value: str
) -> None:
    env = await approval_env()
    h = env.harness
    for name in ("api", "cart"):
        await h.intake.accept(notification(alert(poke_labels(name))))
    pending, _ = await h.store.list_events(state="pending")
    [bad] = [e for e in pending if e["labels"]["deployment"] == "api"]
    await edit(database_url, f"UPDATE alert_events SET {field} = {value} WHERE id = {bad['id']}")

    claimed = await h.store.claim_events(h.owner, 10, 30.0)
    assert [c.event.labels["deployment"] for c in claimed] == ["cart"]
    for c in claimed:
        assert (await h.pipeline(c.event)).is_done
        await h.store.complete_event(c.event.id, h.owner, c.attempts)

    # The rest of the claim was worked: its run parks for its approval.
    [run] = await h.runs()
    assert run.target.name == "cart"
    # The edited one is dead at once, saying why, for an operator to see and drop.
    [dead], _ = await h.store.list_events(state="dead")
    assert dead["id"] == bad["id"]
    assert dead["last_error"].startswith(f"{field} {SAID} (")
    assert "not matched against any rule" in dead["last_error"]
    assert dead["failures"] == 1
    assert dead["lease_owner"] is None
    [audited] = await audit_of_kind(h.store, "event.dead")
    assert audited["data"]["event_id"] == bad["id"]
    assert audited["data"]["last_error"] == dead["last_error"]
    assert await h.store.claim_events(h.owner, 10, 30.0) == []
    dropped = await h.store.drop_item("event", bad["id"], actor="alice", reason="edited")
    assert dropped["state"] == "done"


@pytest.mark.parametrize("value", EDITS.values(), ids=EDITS.keys())
async def test_a_parked_run_whose_alert_cannot_be_read_ends_failed_without_acting(
    approval_env: MakeApprovalEnv, database_url: str, value: str
) -> None:
    env = await approval_env()
    run, approval = await env.pending_run()
    await edit(database_url, f"UPDATE alert_events SET labels = {value}")

    await approve(env, approval)

    assert env.peer.pokes == 0
    done = await env.harness.store.get_run(run.id)
    assert done is not None
    assert done.outcome is RunOutcome.FAILED
    [step] = done.steps
    assert step.outcome == "failed"
    assert f"the alert's labels {SAID}" in step.message
    assert step.message.endswith("; not run")
    audit = await env.harness.store.audit_entries(run.id)
    assert any(SAID in str(e["data"]) for e in audit if e["kind"] == "step")
    assert audit[-1]["data"]["outcome"] == "failed"
    assert await jobs_done(env, run.id)


async def test_an_undo_taken_up_whose_alert_cannot_be_read_is_not_done(
    approval_env: MakeApprovalEnv, database_url: str
) -> None:
    env = await approval_env(rules=UNDO)
    _, approval = await resolved(env)
    await edit(database_url, f"UPDATE alert_events SET labels = {DEEP}")

    await approve(env, approval)

    assert env.peer.pokes == 1  # the run's own step only
    run = await env.harness.only_run()
    undo = next(s for s in run.steps if s.phase == "resolve")
    assert undo.outcome == "failed"
    assert f"the alert's labels {SAID}" in undo.message
    assert run.outcome is RunOutcome.SUCCEEDED  # the run's own outcome stands
    assert await jobs_done(env, run.id)


async def test_an_escalation_taken_up_whose_alert_cannot_be_read_is_not_done(
    approval_env: MakeApprovalEnv, database_url: str
) -> None:
    env = await approval_env(rules=LADDER)
    run, approval = await env.escalated()
    await edit(database_url, f"UPDATE alert_events SET annotations = {HUGE}")

    await approve(env, approval)

    assert env.peer.pokes == 1  # the run's own step only
    run = await env.harness.only_run()
    ladder = next(s for s in run.steps if s.phase == "on_failed")
    assert ladder.outcome == "failed"
    assert f"the alert's annotations {SAID}" in ladder.message
    assert run.outcome is RunOutcome.FAILED
    assert await jobs_done(env, run.id)
