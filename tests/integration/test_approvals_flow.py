"""Approvals through the pipeline on real PostgreSQL and Redis, with a real HTTP peer: the step
is a counter on a local server (``tests.support.approvals``), so "it ran once" is counted there."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest
from pydantic import BaseModel

from receiver.approvals.policy import Identity
from receiver.approvals.state import (
    AlertResolved,
    AlreadyDecided,
    ApprovalExpired,
    Channel,
    Decision,
    NotAllowed,
    Origin,
)
from receiver.guards.policy import AdmissionRequest
from receiver.guards.redis_guards import Guards
from receiver.model import ApprovalState, GuardSpec, RunOutcome
from remediations.base import ActionContext, Change, Outcome, Result, Risk
from remediations.targets import Target
from remediations.template_work import TemplateFailed
from tests.support.approvals import (
    POKE_RULE_HEAD,
    POKE_RULES,
    MakeApprovalEnv,
    Peer,
    Poke,
    poke_labels,
)
from tests.support.payloads import alert, notification
from tests.support.polling import eventually

ALICE = Identity("alice", "operator-token", "alice")
BOB = Identity("bob", "operator-token", "bob")
CAROL = Identity("carol", "operator-token", "carol")
API = Origin(Channel.API, "10.1.1.1", "pytest")
UP_TO_ONE = "- action: test.poke\n        params: {up_to: 1}"


async def test_a_risky_step_asks_binds_its_preview_and_notifies(
    approval_env: MakeApprovalEnv,
) -> None:
    env = await approval_env()
    env.peer.value = 7
    run, approval = await env.pending_run()

    assert run.outcome is RunOutcome.AWAITING_APPROVAL
    assert [(s.action, s.outcome) for s in run.steps] == [("test.poke", "awaiting_approval")]
    assert approval.state is ApprovalState.PENDING
    assert approval.plan["preconditions"] == {"value": 7}
    assert approval.plan["before"] == {"value": 7}
    assert approval.plan["after"] == {"value": 8}
    assert approval.context["alertname"] == "Poke"
    assert (approval.expires_at - approval.requested_at).total_seconds() == pytest.approx(1800)
    assert env.peer.pokes == 0
    assert env.peer.kinds() == ["approval.requested"]
    link = env.peer.notices[0]["link"]
    assert link.startswith("http://remediator.test/approve/k1.")
    # A wakeup before any decision changes nothing and asks nobody again.
    await env.harness.store.enqueue_job("resume_run", run.id)
    await env.harness.drain()
    assert env.peer.kinds() == ["approval.requested"]
    assert (await env.desk.store.latest_approval(run.id, 0)) == approval


async def test_approved_step_runs_once_and_the_decision_is_audited(
    approval_env: MakeApprovalEnv,
) -> None:
    env = await approval_env()
    run, approval = await env.pending_run()
    decided = await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API, reason="go")
    assert (decided.state, decided.decided_by, decided.channel) == (
        ApprovalState.APPROVED,
        "alice",
        "api",
    )
    await env.harness.drain()

    assert env.peer.pokes == 1
    done = await env.harness.only_run()
    assert done.outcome is RunOutcome.SUCCEEDED
    # Taken up by a job after the decision, the step still sees the alert behind its run.
    assert [(s.outcome, s.before, s.message) for s in done.steps] == [
        ("ok", {"value": 0}, "poked for 'api'")
    ]
    audit = await env.harness.store.audit_entries(run.id)
    decision = next(e for e in audit if e["kind"] == "approval.approved")
    assert decision["data"] | {"at": None} == {
        "approval_id": approval.id,
        "step": 0,
        "action": "test.poke",
        "state": "approved",
        "plan_hash": approval.plan_hash,
        "by": "alice",
        "at": None,
        "channel": "api",
        "source_ip": "10.1.1.1",
        "user_agent": "pytest",
        "reason": "go",
    }
    assert (await env.harness.store.verify_audit()).ok
    # Replayed: the approval was used.
    with pytest.raises(AlreadyDecided, match="already approved by alice"):
        await env.desk.decide(approval.id, Decision.APPROVE, BOB, API)


async def test_ten_concurrent_approvals_run_the_step_once(approval_env: MakeApprovalEnv) -> None:
    env = await approval_env()
    run, approval = await env.pending_run()
    who = [ALICE, BOB] * 5
    results = await asyncio.gather(
        *(env.desk.decide(approval.id, Decision.APPROVE, w, API) for w in who),
        return_exceptions=True,
    )
    wins = [r for r in results if not isinstance(r, BaseException)]
    assert len(wins) == 1
    assert all(isinstance(r, AlreadyDecided) for r in results if isinstance(r, BaseException))
    await env.harness.drain()
    assert env.peer.pokes == 1
    audit = await env.harness.store.audit_entries(run.id)
    assert [e["kind"] for e in audit].count("approval.approved") == 1


async def test_not_an_approver_may_neither_approve_nor_reject(
    approval_env: MakeApprovalEnv,
) -> None:
    env = await approval_env()
    _, approval = await env.pending_run()
    for decision in Decision:
        with pytest.raises(NotAllowed):
            await env.desk.decide(approval.id, decision, CAROL, API)
    assert (await env.desk.store.get_approval(approval.id)) == approval


async def test_rejected_step_ends_the_run_rejected_with_who_and_why(
    approval_env: MakeApprovalEnv,
) -> None:
    env = await approval_env()
    _run, approval = await env.pending_run()
    await env.desk.decide(approval.id, Decision.REJECT, BOB, API, reason="deploy is fine")
    await env.harness.drain()
    done = await env.harness.only_run()
    assert done.outcome is RunOutcome.REJECTED
    assert done.error == "rejected by bob: deploy is fine"
    assert done.finished_at is not None
    assert [(s.outcome, s.message) for s in done.steps] == [
        ("rejected", "rejected by bob: deploy is fine")
    ]
    assert env.peer.pokes == 0
    assert env.peer.kinds() == ["approval.requested", "approval.rejected"]


async def test_an_undecided_approval_expires_and_says_so(approval_env: MakeApprovalEnv) -> None:
    env = await approval_env()
    run, approval = await env.pending_run()
    # The expiry is the resume job due at expires_at; move both into the past.
    async with env.harness.store._tx() as conn:
        await conn.execute(
            "UPDATE approvals SET expires_at = now() - interval '1 second' WHERE id = $1::uuid",
            approval.id,
        )
        await conn.execute("UPDATE jobs SET not_before = now() WHERE run_id = $1::uuid", run.id)
    await env.harness.drain()

    done = await env.harness.only_run()
    assert done.outcome is RunOutcome.EXPIRED
    assert "expired" in (done.error or "")
    assert [s.outcome for s in done.steps] == ["expired"]
    assert (await env.desk.store.get_approval(approval.id)).state is ApprovalState.EXPIRED  # type: ignore[union-attr]
    assert env.peer.kinds() == ["approval.requested", "approval.expired"]
    with pytest.raises(ApprovalExpired):
        await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    assert env.peer.pokes == 0


async def test_the_expiry_job_woken_early_waits(approval_env: MakeApprovalEnv) -> None:
    env = await approval_env()
    run, approval = await env.pending_run()
    async with env.harness.store._tx() as conn:
        await conn.execute("UPDATE jobs SET not_before = now() WHERE run_id = $1::uuid", run.id)
    await env.harness.drain()
    assert (await env.harness.only_run()).outcome is RunOutcome.AWAITING_APPROVAL
    assert (await env.desk.store.get_approval(approval.id)).state is ApprovalState.PENDING  # type: ignore[union-attr]
    due = await env.harness.store.next_job_due()
    assert due is not None
    assert abs((due - approval.expires_at).total_seconds()) < 1


async def test_a_resolved_alert_cancels_and_approving_after_is_refused(
    approval_env: MakeApprovalEnv,
) -> None:
    env = await approval_env()
    _run, approval = await env.pending_run()
    # Stored but not yet taken up by the worker: already too late to approve.
    await env.harness.intake.accept(notification(alert(poke_labels(), status="resolved")))
    with pytest.raises(AlertResolved):
        await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    await env.harness.drain()

    done = await env.harness.only_run()
    assert done.outcome is RunOutcome.CANCELLED
    assert done.resolved_at is not None
    assert (await env.desk.store.get_approval(approval.id)).state is ApprovalState.CANCELLED  # type: ignore[union-attr]
    assert env.peer.kinds() == ["approval.requested", "approval.cancelled"]
    with pytest.raises(AlertResolved):
        await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    assert env.peer.pokes == 0


async def test_target_changed_after_preview_supersedes_and_asks_again(
    approval_env: MakeApprovalEnv,
) -> None:
    env = await approval_env()
    run, approval = await env.pending_run()
    env.peer.value = 41  # someone else changed the target after the preview
    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    await env.harness.drain()

    assert env.peer.pokes == 0
    assert (await env.desk.store.get_approval(approval.id)).state is ApprovalState.SUPERSEDED  # type: ignore[union-attr]
    fresh = await env.desk.store.latest_approval(run.id, 0)
    assert fresh is not None
    assert fresh.id != approval.id
    assert fresh.state is ApprovalState.PENDING
    assert fresh.plan["preconditions"] == {"value": 41}
    assert fresh.plan_hash != approval.plan_hash
    assert (await env.harness.only_run()).outcome is RunOutcome.AWAITING_APPROVAL
    assert env.peer.kinds() == [
        "approval.requested",
        "approval.approved",
        "approval.superseded",
        "approval.requested",
    ]
    # The fresh one, approved, runs against what it showed.
    await env.desk.decide(fresh.id, Decision.APPROVE, BOB, API)
    await env.harness.drain()
    assert env.peer.pokes == 1
    assert env.peer.value == 42


async def test_an_approved_step_goes_through_the_guards_again(
    approval_env: MakeApprovalEnv,
) -> None:
    # Approval is not admission: a pause that began while the engineer was deciding refuses
    # the approved step, as it refuses every run (the kill switch), and says so on the step.
    env = await approval_env()
    run, approval = await env.pending_run()
    await env.harness.guards.pause(None, "change freeze")
    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    await env.harness.drain()

    assert env.peer.pokes == 0
    refused = await env.harness.only_run()
    assert (refused.outcome, refused.refusal_guard) == (RunOutcome.REFUSED, "pause")
    assert [(s.outcome, s.message) for s in refused.steps] == [
        ("not_run", "not run: the pause guard refused the run")
    ]
    # Lifting the pause does not run what was refused.
    await env.harness.guards.resume()
    await env.harness.store.enqueue_job("resume_run", run.id)
    await env.harness.drain()
    assert env.peer.pokes == 0


async def test_an_approved_change_found_in_place_is_a_noop_not_a_new_approval(
    approval_env: MakeApprovalEnv,
) -> None:
    # The approved write landed just before a crash (or someone made it by hand): the fresh
    # preview changes nothing. Nobody is asked to approve nothing; the step records a noop.
    env = await approval_env(rules=POKE_RULES.replace("- action: test.poke", UP_TO_ONE))
    run, approval = await env.pending_run()
    assert (approval.plan["before"], approval.plan["after"]) == ({"value": 0}, {"value": 1})
    env.peer.value = 1
    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    await env.harness.drain()

    assert env.peer.pokes == 0
    done = await env.harness.only_run()
    assert done.outcome is RunOutcome.SUCCEEDED
    assert [(s.outcome, s.message) for s in done.steps] == [("noop", "at 1 already")]
    latest = await env.desk.store.latest_approval(run.id, 0)
    assert latest is not None
    assert latest.state is ApprovalState.APPROVED
    assert env.peer.kinds().count("approval.requested") == 1


async def test_a_held_step_whose_preview_changes_nothing_asks_nobody(
    approval_env: MakeApprovalEnv,
) -> None:
    # The change is in place before anyone is asked (a limit at its cap already, a pod gone):
    # the preview's before is its after. An engineer was asked to approve nothing, and the
    # run sat in awaiting_approval until they did, or expired with it. It is recorded a noop
    # at once, no approval asked; nothing is run for it.
    env = await approval_env(rules=POKE_RULES.replace("- action: test.poke", UP_TO_ONE))
    env.peer.value = 1
    await env.harness.deliver(poke_labels())

    done = await env.harness.only_run()
    assert done.outcome is RunOutcome.SUCCEEDED, done.error
    assert [(s.outcome, s.before, s.after) for s in done.steps] == [
        ("noop", {"value": 1}, {"value": 1})
    ]
    assert "nobody was asked to approve it" in done.steps[0].message
    assert await env.desk.store.latest_approval(done.id, 0) is None
    assert "approval.requested" not in env.peer.kinds()
    assert env.peer.pokes == 0


# A held step already in place (the counter at 1), then a step that acts: held for its own
# approval, or (``+ NO_APPROVAL``) without one.
NOOP_THEN = POKE_RULES.replace("- action: test.poke", UP_TO_ONE) + (
    "      - action: test.poke\n        params: {up_to: 3}\n"
)
NO_APPROVAL = "        approval: never\n"


async def test_a_held_step_that_changes_nothing_lets_the_steps_after_it_run(
    approval_env: MakeApprovalEnv,
) -> None:
    # The held first step's preview changes nothing; the step after it needs no approval.
    # The first was put to an engineer (approving nothing was what let the second run), and
    # the run waited in awaiting_approval. It is a noop at once, and the second step runs.
    env = await approval_env(rules=NOOP_THEN + NO_APPROVAL)
    env.peer.value = 1
    await env.harness.deliver(poke_labels())

    done = await env.harness.only_run()
    assert done.outcome is RunOutcome.SUCCEEDED, done.error
    assert [(s.outcome, s.before, s.after) for s in done.steps] == [
        ("noop", {"value": 1}, {"value": 1}),
        ("ok", {"value": 1}, {"value": 2}),
    ]
    assert "nobody was asked to approve it" in done.steps[0].message
    assert await env.desk.store.latest_approval(done.id, 0) is None
    assert "approval.requested" not in env.peer.kinds()
    assert env.peer.pokes == 1


async def test_the_step_after_a_held_noop_is_held_for_its_own_approval(
    approval_env: MakeApprovalEnv,
) -> None:
    # The step after the held noop needs an approval of its own: it is the one asked for,
    # and it runs once approved; nobody is asked about the first.
    env = await approval_env(rules=NOOP_THEN)
    env.peer.value = 1
    await env.harness.deliver(poke_labels())

    run = await env.harness.only_run()
    assert run.outcome is RunOutcome.AWAITING_APPROVAL, run.error
    assert [s.outcome for s in run.steps] == ["noop", "awaiting_approval"]
    assert await env.desk.store.latest_approval(run.id, 0) is None
    approval = await env.desk.store.latest_approval(run.id, 1)
    assert approval is not None
    assert approval.plan["before"] == {"value": 1}
    assert env.peer.kinds().count("approval.requested") == 1

    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    await env.harness.drain()
    done = await env.harness.only_run()
    assert done.outcome is RunOutcome.SUCCEEDED, done.error
    assert [(s.outcome, s.after) for s in done.steps] == [
        ("noop", {"value": 1}),
        ("ok", {"value": 2}),
    ]
    assert env.peer.pokes == 1


async def test_an_undo_goes_on_past_a_held_step_that_changes_nothing(
    approval_env: MakeApprovalEnv,
) -> None:
    # The same in an undo (its own stage list): the held on_resolved step is in place
    # already, and the one after it, needing no approval, runs once the alert resolved.
    rules = POKE_RULE_HEAD + (
        "    steps:\n"
        "      - action: test.poke\n"
        "        approval: never\n"
        "    on_resolved:\n"
        "      - action: test.poke\n"
        "        params: {up_to: 1}\n"
        "      - action: test.poke\n"
        "        params: {up_to: 3}\n"
        "        approval: never\n"
    )
    env = await approval_env(rules=rules)
    await env.harness.deliver(poke_labels())
    await env.harness.deliver(poke_labels(), status="resolved")

    done = await env.harness.only_run()
    undo = [(s.outcome, s.after) for s in done.steps if s.phase == "resolve"]
    assert undo == [("noop", {"value": 1}), ("ok", {"value": 2})], done.steps
    assert "approval.requested" not in env.peer.kinds()
    assert env.peer.pokes == 2  # the run's own step, and the undo's second


class FreezingPoke(Poke):
    """``test.poke`` whose preview also sets the kill switch: a change freeze that begins
    while the held step is looked at."""

    name: ClassVar[str] = "test.freezing_poke"
    guards: Guards | None = None

    async def preview(self, ctx: ActionContext, target: Target, params: BaseModel) -> Change:
        change = await super().preview(ctx, target, params)
        assert self.guards is not None
        await self.guards.pause(None, "change freeze")
        return change


async def test_a_pause_set_while_a_held_noop_was_looked_at_stops_the_steps_after_it(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    # The kill switch is asked again before a step that follows one this pass settled, as
    # before any step after a run's first: the freeze refuses the next step, nothing acts.
    freezing = FreezingPoke(peer.url)
    rules = NOOP_THEN.replace("action: test.poke\n", "action: test.freezing_poke\n", 1)
    env = await approval_env(rules=rules + NO_APPROVAL, actions=[freezing])
    freezing.guards = env.harness.guards
    env.peer.value = 1
    await env.harness.deliver(poke_labels())

    done = await env.harness.only_run()
    assert done.outcome is RunOutcome.REFUSED, done.error
    assert [s.outcome for s in done.steps] == ["noop", "refused"]
    assert "pause" in (done.steps[1].message or "")
    assert env.peer.pokes == 0


class NoParams(BaseModel):
    """``test.rendered`` takes none."""


class RendersOnce:
    """``test.rendered``: a step whose templates render the first time only (as one near the
    CPU bound under load, or over an event pruned since, might), and whose run does nothing."""

    name: ClassVar[str] = "test.rendered"
    Params: ClassVar[type[BaseModel]] = NoParams
    risk: ClassVar[Risk] = Risk.LOW
    disruptive: ClassVar[bool] = False
    replay_safe: ClassVar[bool] = True
    target_kinds: ClassVar[frozenset[str]] = frozenset({"Deployment"})

    def __init__(self) -> None:
        self.checks = 0

    def requires(self, target: Target) -> frozenset[str]:
        return frozenset()

    def describe(self, target: Target, params: BaseModel) -> str:
        return "rendered"

    def render_check(self, ctx: ActionContext, target: Target, params: BaseModel) -> None:
        self.checks += 1
        if self.checks > 1:
            raise TemplateFailed("rendered a second time")

    async def preview(self, ctx: ActionContext, target: Target, params: BaseModel) -> Change:
        return Change("nothing", {}, {})

    async def run(self, ctx: ActionContext, target: Target, params: BaseModel) -> Result:
        return Result(Outcome.OK, "rendered")


async def test_a_run_pending_again_after_its_approval_is_not_refused_by_a_second_render(
    approval_env: MakeApprovalEnv,
) -> None:
    """Templates are checked once, before a run's first admission. A run admitted once may be
    pending again (approved, then waiting for the target lock) with a step of it already
    acted: checked again, a render that failed the second time would refuse it half done."""
    rendered = RendersOnce()
    rules = POKE_RULES + "      - action: test.rendered\n        approval: never\n"
    env = await approval_env(rules=rules, actions=[rendered], lock_wait_s=0.2)
    run, approval = await env.pending_run()
    assert rendered.checks == 1
    # Another run acts on the same Deployment: the approved run waits for its lock.
    other = AdmissionRequest(
        "00000000-0000-0000-0000-00000000beef",
        "other",
        run.target,
        disruptive=False,
        spec=GuardSpec(),
    )
    held = await env.harness.guards.admit(other)
    assert held.admitted
    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    await env.harness.drain()
    assert (await env.harness.only_run()).outcome is RunOutcome.PENDING
    await env.harness.guards.release(other, held)

    async def finished() -> bool:
        await env.harness.drain()
        return (await env.harness.only_run()).outcome is not RunOutcome.PENDING

    await eventually(finished)
    done = await env.harness.only_run()
    assert done.refusal_guard is None, done
    assert [(s.action, s.outcome) for s in done.steps] == [
        ("test.poke", "ok"),
        ("test.rendered", "ok"),
    ]
    assert env.peer.pokes == 1
    assert rendered.checks == 1
