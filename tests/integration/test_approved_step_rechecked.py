"""An approved step is looked at again before it runs, through the pipeline: a target changed since
the preview supersedes the approval and asks again, the guards are asked again, a change found in
place is a noop, and a run pending again after its approval is not refused by a second render of its
templates. Real PostgreSQL and Redis, with a real HTTP peer: the step is a counter on a local server
(``tests.support.approvals``), so "it ran once" is counted there."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from receiver.approvals.state import Decision
from receiver.guards.policy import AdmissionRequest
from receiver.model import ApprovalState, GuardSpec, RunOutcome
from remediations.base import ActionContext, Change, Outcome, Result, Risk
from remediations.targets import Target
from remediations.template_work import TemplateFailed
from tests.support.approval_deciders import ALICE, API, BOB, UP_TO_ONE
from tests.support.approvals import POKE_RULES, MakeApprovalEnv
from tests.support.polling import eventually


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
