"""The escalation ladder's stronger step waits for an engineer like a run step does, and the
run announcements and the approval desk's notices do not say the same thing twice.

Real PostgreSQL, Redis and a local HTTP peer (``tests.support.approvals``): the step is a
counter on the peer, so "it ran" is counted there, and the peer takes every notification.
"""

from __future__ import annotations

import pytest

from receiver.approvals.policy import Identity
from receiver.approvals.state import AlertResolved, Channel, Decision, Origin
from receiver.model import ApprovalState, RunOutcome, VerifyResult
from receiver.store import RunRecord
from tests.support.approvals import MakeApprovalEnv, poke_labels
from tests.support.polling import eventually

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ALICE = Identity("alice", "operator-token", "alice")
API = Origin(Channel.API, "10.1.1.1", "pytest")

LADDER = """
rules:
  - name: poke
    match: ['alertname="Poke"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: test.poke
        approval: never
    verify: {resolved_within: 1s}
    on_failed:
      - action: test.poke
        approval: required
    notify: {channel: ops}
"""

HELD = """
rules:
  - name: poke
    match: ['alertname="Poke"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: test.poke
    notify: {channel: ops}
"""


async def test_the_ladders_risky_step_asks_and_runs_once_approved(
    approval_env: MakeApprovalEnv,
) -> None:
    env = await approval_env(rules=LADDER)
    run, _ = await env.escalated()
    assert (run.outcome, run.verify_result) == (RunOutcome.FAILED, VerifyResult.NOT_RESOLVED)
    assert env.peer.pokes == 1  # the run's own step only
    held = next(s for s in run.steps if s.phase == "on_failed")
    approval = await env.desk.store.latest_approval(run.id, held.idx)
    assert approval is not None
    assert approval.state is ApprovalState.PENDING
    assert held.idx == 1  # not the run step's index: its approval cannot be mistaken for this
    assert await env.desk.store.latest_approval(run.id, 0) is None
    assert env.peer.kinds() == ["approval.requested"]
    assert env.peer.announced() == ["run_started", "run_finished", "verification_failed"]

    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    await env.harness.drain()
    run = await env.harness.only_run()
    assert env.peer.pokes == 2
    assert [(s.phase, s.outcome) for s in run.steps] == [("run", "ok"), ("on_failed", "ok")]
    # The verification's verdict stands whatever the ladder does.
    assert (run.outcome, run.verify_result) == (RunOutcome.FAILED, VerifyResult.NOT_RESOLVED)
    assert env.peer.announced().count("verification_failed") == 1


async def test_an_undecided_ladder_step_expires_and_the_run_stays_failed(
    approval_env: MakeApprovalEnv,
) -> None:
    env = await approval_env(rules=LADDER, ttl_s=1.0)
    run, _ = await env.escalated()

    async def probe() -> RunRecord:
        await env.harness.drain()
        return await env.harness.only_run()

    run = await eventually(probe, lambda r: [s.outcome for s in r.steps] == ["ok", "expired"])
    assert run.outcome is RunOutcome.FAILED
    assert env.peer.pokes == 1
    assert env.peer.kinds() == ["approval.requested", "approval.expired"]


async def test_the_alert_resolving_cancels_the_ladders_approval(
    approval_env: MakeApprovalEnv,
) -> None:
    env = await approval_env(rules=LADDER)
    run, _ = await env.escalated()
    held = next(s for s in run.steps if s.phase == "on_failed")
    approval = await env.desk.store.latest_approval(run.id, held.idx)
    assert approval is not None
    await env.harness.deliver(poke_labels(), status="resolved")
    run = await env.harness.only_run()
    assert [s.outcome for s in run.steps] == ["ok", "cancelled"]
    assert run.outcome is RunOutcome.FAILED
    with pytest.raises(AlertResolved):
        await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    assert env.peer.pokes == 1


async def test_waiting_for_approval_is_said_once_by_the_desk_on_its_channel(
    approval_env: MakeApprovalEnv,
) -> None:
    env = await approval_env(rules=HELD)
    run, _ = await env.pending_run()
    assert run.outcome is RunOutcome.AWAITING_APPROVAL
    # The desk's request (with its link) on 'ops'; the run's announcement does not repeat it.
    assert env.peer.kinds() == ["approval.requested"]
    assert env.peer.announced() == ["run_started"]


async def test_without_the_desks_notices_the_announcement_says_it(
    approval_env: MakeApprovalEnv,
) -> None:
    env = await approval_env(rules=HELD, notify=False)
    run, _ = await env.pending_run()
    assert run.outcome is RunOutcome.AWAITING_APPROVAL
    assert env.peer.kinds() == []
    assert env.peer.announced() == ["run_started", "awaiting_approval"]
    waiting = next(n for n in env.peer.notices if n.get("event") == "awaiting_approval")
    assert "remediator approvals list --state pending --rule poke" in waiting["text"]


async def test_after_a_recurrence_the_ladder_can_be_approved_while_the_alert_fires_again(
    approval_env: MakeApprovalEnv,
) -> None:
    env = await approval_env(
        rules=LADDER.replace("{resolved_within: 1s}", "{resolved_within: 10m, settle: 30m}")
    )
    env.harness.store.late_delivery_window_s = 0.0  # a re-fire is a new occurrence at once
    await env.harness.deliver(poke_labels())
    await env.harness.deliver(poke_labels(), status="resolved")
    await env.harness.deliver(poke_labels())  # fired again: the first run recurred
    first = next(r for r in await env.harness.runs() if r.refire == 0)
    run = await env.harness.store.get_run(first.id)
    assert run is not None
    assert (run.outcome, run.verify_result) == (RunOutcome.FAILED, VerifyResult.RECURRED)
    held = next(s for s in run.steps if s.phase == "on_failed")
    assert held.outcome == "awaiting_approval"
    approval = await env.desk.store.latest_approval(run.id, held.idx)
    assert approval is not None
    # Its own occurrence resolved long ago; what fires now is the re-fire: still wanted.
    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    await env.harness.drain()
    run = await env.harness.store.get_run(first.id)
    assert run is not None
    assert [(s.phase, s.outcome) for s in run.steps][-1] == ("on_failed", "ok")


async def test_a_rejected_ladder_step_leaves_no_job_pending(
    approval_env: MakeApprovalEnv,
) -> None:
    """The ladder ends at its rejected step. Its ``resume_run`` job, queued for the approval's
    expiry (half an hour away), stayed pending until then, counted as unfinished work in the
    queue's gauges and listings, and then took up a ladder with no step left."""
    env = await approval_env(rules=LADDER)
    run, approval = await env.escalated()

    async def open_jobs() -> list[tuple[str, str]]:
        async with env.harness.store._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT kind, state FROM jobs WHERE run_id = $1::uuid AND state <> 'done'",
                run.id,
            )
        return [(r["kind"], r["state"]) for r in rows]

    assert await open_jobs() == [("resume_run", "pending")]
    await env.desk.decide(approval.id, Decision.REJECT, ALICE, API, reason="not now")

    ended = await env.harness.only_run()
    assert [s.outcome for s in ended.steps] == ["ok", "rejected"]
    assert ended.outcome is RunOutcome.FAILED
    # Only the safety net of the slot and the notice, both done already (finish.py).
    assert await open_jobs() == [("finish_end", "pending")]
    assert env.peer.pokes == 1
