"""approve: which steps may run now, and asking an engineer for the one that may not.

Two stages around ``Execute``:

- ``Approve`` (before it): steps run in order until one needs an approval (a step a stopped
  worker left started is let through without one: it will be recorded ``interrupted``, not
  run; pipeline.steps) (a step that would
  run dry changes nothing and needs none). That step holds itself and every later step
  (``ctx.awaiting``), unless it is the step the run was parked on and its approval was given:
  then its preview is computed again against live state (told the approved preconditions,
  ``ActionContext.approved``: a rollback done by hand and renumbered since is found by its
  approved ReplicaSet), and only if that plan hashes the same
  as the approved one does it run, bound to the approved preconditions. A different hash means
  the target changed since the engineer looked: the approval becomes ``superseded`` and a fresh
  one is asked for, with the new preview; unless the new preview changes nothing (the approved
  change is in place already, e.g. written just before a crash): then the step runs, bound to
  the state it sees, and records a noop; nobody is asked to approve nothing. An approved
  on_resolved step first asks (again, after its preview: ``AdmitResolve`` asked once the
  guards admitted it) whether its alert fired again since it was approved: then it does not
  run, its undo is withdrawn and carried to the alert's next resolution
  (receiver.pipeline.refired; the rule for every not-yet-started undo step is
  receiver.episodes'). An approved step of the run's own asks, at the same point, whether its
  alert resolved since the run was taken up (the resolution is another worker's, not ordered
  with the job that takes the approval up): then it does not run, and the run ends
  ``cancelled``, its approval ``cancelled`` and the approvers told
  (receiver.pipeline.overtaken). An approved
  step of the run's escalation (``on_failed``) asks the same of the alert it escalated on:
  then it does not run, nor does any step of the ladder that acts or asks, their approvals
  cancelled; its messages still run (receiver.pipeline.overtaken). An approved
  ``on_resolved`` step never asks it: the resolution is why it runs.
- ``RequestApproval`` (after it, so a held step is previewed after the steps before it ran):
  computes the held step's preview, stores a pending approval bound to its hash, and notifies.
  ``Record`` then parks the run in ``awaiting_approval``. A held step whose preview changes
  nothing (its before, not empty, is its after: a limit at its cap already, no pod left to
  delete, the revision to roll back to already running) is recorded ``noop`` instead, not run
  and nobody asked, and the steps after it take their turn through both stages again, each
  let through or held on its own merits (``turns.StepTurns``).

A preview that is refused (the target cannot be changed that way now) or fails ends the step
like a run would: there is nothing to approve. Except a preview whose system could not be
reached (retries run out: ``TransientActionError``; a preview only reads, so none of its tries
changed anything): the step waits for its system as a step whose action could not reach it
does (receiver.pipeline.unreachable): no approval asked yet, the step ``pending`` (an approved
one ``awaiting_approval``, its approval kept) with a message saying why, the event or job
retried, and ended ``failed`` only once it has waited its bound (``unreachable_retry_for``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from receiver.approvals.desk import StepRequest
from receiver.approvals.plan import bound_plan, plan_hash
from receiver.model import ApprovalRecord, ApprovalState, RunOutcome, StepPlan, Verdict
from receiver.pipeline.context import STEP_STARTED, STOPS_RUN, Deps, RunContext, record_step
from receiver.pipeline.overtaken import escalation_overtaken, run_overtaken
from receiver.pipeline.refired import withdrawn_on_refire
from receiver.pipeline.steps import StepRunner, failed
from receiver.pipeline.unreachable import StepDeferred, Unreachable
from receiver.unreadable import unreadable_text
from remediations.base import ActionError, ActionRefused, Outcome, Result, TransientActionError

__all__ = ["Approve", "RequestApproval"]


class Approve:
    """approve: see the module docstring. Without an approval desk nothing is ever approved."""

    name = "approve"

    def __init__(self, deps: Deps, runner: StepRunner) -> None:
        self._deps = deps
        self._runner = runner

    async def __call__(self, ctx: RunContext) -> Verdict:
        runnable: list[StepPlan] = []
        started = _started(ctx)
        # Steps this pass settled already (taken again past a held step that changed nothing:
        # ``turns.StepTurns``): the turn begins after them.
        settled = {s.index for s, _ in ctx.results}
        for step in ctx.steps:
            if step.index in settled:
                continue
            if step.index in started:
                # It was approved and began to act before its worker stopped: no approval
                # is asked again; the step runner records it interrupted without acting.
                runnable.append(step)
                continue
            if step.needs_approval and not self._runner.runs_dry(ctx, step):
                # Only the first held step can have been asked for: later ones never were.
                try:
                    verdict = await self._approval_of(ctx, step) if not runnable else _HOLD
                except StepDeferred as deferred:
                    # Its fresh preview could not reach its system: it waits, approved still.
                    ctx.approved.pop(step.index, None)
                    return deferred.verdict()
                if verdict == _RESOLVED:
                    return Verdict.stop(RunOutcome.CANCELLED, "the alert resolved before it ran")
                if verdict == _OVERTAKEN:
                    # The ladder's steps that act or ask ended (ctx.steps keeps the rest):
                    # its messages still run.
                    runnable = list(ctx.steps)
                    break
                if verdict == _RUN:
                    runnable.append(step)
                    continue
                if verdict == _HOLD:
                    ctx.awaiting = step
                # _STOP, _WITHDRAWN (this step and the later ones are recorded not_run): it
                # was asked for only with nothing before it runnable, so nothing runs.
                break
            runnable.append(step)
        ctx.runnable = tuple(runnable)
        return Verdict.next()

    async def _approval_of(self, ctx: RunContext, step: StepPlan) -> str:
        """_RUN (approved, plan unchanged), _HOLD (ask, or wait), _STOP (cannot preview)."""
        desk = self._deps.approvals
        if desk is None or ctx.run_id is None:
            return _HOLD
        approval = await desk.store.latest_approval(ctx.run_id, step.index)
        if approval is None or approval.state is not ApprovalState.APPROVED:
            return _HOLD
        if "plan" in approval.unreadable:
            # What the engineer approved (the preconditions the step is bound to) is unknown:
            # the step ends, recorded, rather than run bound to nothing.
            note = unreadable_text({"approved plan": approval.unreadable["plan"]})
            result = Result(Outcome.FAILED, f"{note}; not run")
            await record_step(self._deps, ctx, step, result.outcome, result.message)
            ctx.results.append((step, result))
            ctx.log.warning("approved plan cannot be read", step=step.index)
            return _STOP
        # The preview is told what was approved (``ActionContext.approved``): an action whose
        # live state moved to exactly the approved change by another hand (a rollback done by
        # hand, its revision renumbered since) can say so, a noop, where a plan from scratch
        # would no longer find the change. Kept only for a step that runs, below.
        ctx.approved[step.index] = dict(approval.plan.get("preconditions") or {})
        verdict = await self._approved_verdict(ctx, step, approval)
        if verdict != _RUN:
            ctx.approved.pop(step.index, None)
        return verdict

    async def _approved_verdict(
        self, ctx: RunContext, step: StepPlan, approval: ApprovalRecord
    ) -> str:
        """``_approval_of`` for a step whose ``approval`` was given: its fresh preview against
        it. ``ctx.approved`` holds the approved preconditions; it is set anew when what was
        approved is found in place already."""
        desk = self._deps.approvals
        assert desk is not None
        planned = await _plan(self._deps, self._runner, ctx, step)
        if planned is None:
            return _STOP
        # Looked at last, after the preview's round trip to the target, so that only store
        # writes stand between the look and the step acting: a firing stored after it came
        # after the undo was taken up to act (what a firing does to a started step).
        # An approval given moments before the re-fire is no longer pending, so the firing
        # does not withdraw it, whichever of the two a worker takes up first; this look does.
        if ctx.phase == "resolve" and await withdrawn_on_refire(self._deps, ctx):
            return _WITHDRAWN
        # The same look for a run's own step: its alert may have resolved since the job that
        # took it up read the run (the resolution is another worker's, not ordered with it).
        if ctx.phase == "run" and await self._overtaken(ctx, step):
            return _RESOLVED
        # And for an escalation's step: the alert it escalated on may have resolved since.
        if ctx.phase == "on_failed" and await escalation_overtaken(self._deps, ctx):
            return _OVERTAKEN
        plan, live_hash = planned
        if live_hash != approval.plan_hash and _changes_nothing(plan):
            # What was approved is in place already (written just before a crash, or by
            # someone else): nothing is left to approve. The step runs bound to the state it
            # sees now, so it records a noop, and is refused if that state moves meanwhile.
            ctx.approved[step.index] = dict(plan.get("preconditions") or {})
            ctx.log.info(
                "approved step has nothing left to change", step=step.index, summary=plan["summary"]
            )
            return _RUN
        if live_hash != approval.plan_hash:
            await desk.supersede(approval, live_hash)
            ctx.previews[step.index] = (plan, live_hash)
            return _HOLD
        ctx.log.info("approved step runs", step=step.index, approval_id=approval.id)
        return _RUN

    async def _overtaken(self, ctx: RunContext, step: StepPlan) -> bool:
        """Whether the alert of ``ctx``'s run resolved before its approved ``step`` ran: then
        the step does not run and the run ends ``cancelled``, its approval cancelled and the
        approvers told, the budget slot it never used given back (``run_overtaken``), as when
        a resolution cancels a pending approval. Nothing is written while the alert still
        fires."""
        assert ctx.run_id is not None
        if not await run_overtaken(
            self._deps, ctx.run_id, ctx.rule, ctx.target, ctx.log, ctx.lease
        ):
            return False
        ctx.log.info("approved step not run: its alert resolved", step=step.index)
        return True


# _WITHDRAWN: an approved on_resolved step whose alert fired again (``withdrawn_on_refire``);
# _RESOLVED: an approved step of the run whose alert resolved before it ran (``_overtaken``);
# _OVERTAKEN: the same for an approved on_failed step (``escalation_overtaken``).
_RUN, _HOLD, _STOP, _WITHDRAWN = "run", "hold", "stop", "withdrawn"
_RESOLVED, _OVERTAKEN = "resolved", "overtaken"


def _started(ctx: RunContext) -> frozenset[int]:
    """The indexes of the steps of ``ctx.phase`` that a worker marked started and never
    finished, as the store held them when the run was taken up (``ctx.prior``)."""
    if ctx.prior is None:
        return frozenset()
    return frozenset(
        s.idx for s in ctx.prior.steps if s.phase == ctx.phase and s.outcome == STEP_STARTED
    )


def _changes_nothing(plan: Mapping[str, Any]) -> bool:
    """The preview changes nothing: its before is its after (already set, already at the
    revision, no session left to end)."""
    return bool(plan.get("before") == plan.get("after"))


class RequestApproval:
    """request: a pending approval of the held step, bound to its preview, announced."""

    name = "request-approval"

    def __init__(self, deps: Deps, runner: StepRunner) -> None:
        self._deps = deps
        self._runner = runner

    async def __call__(self, ctx: RunContext) -> Verdict:
        desk = self._deps.approvals
        step = ctx.awaiting
        if desk is None or step is None or ctx.run_id is None:
            return Verdict.next()
        if any(r.outcome in STOPS_RUN for _, r in ctx.results):
            return Verdict.next()  # an earlier step stopped the run: nothing to ask for
        latest = await desk.store.latest_approval(ctx.run_id, step.index)
        if latest is not None and latest.state is ApprovalState.PENDING:
            # Asked already: a wakeup before the decision, or a pass taken up again after its
            # process died between storing the approval and its notice reaching the channel,
            # whose approvers would otherwise never hear of it.
            await desk.announce_undelivered(latest)
            return Verdict.next()
        try:
            planned = ctx.previews.get(step.index) or await _plan(
                self._deps, self._runner, ctx, step
            )
        except StepDeferred as deferred:
            # Its preview could not reach its system: nobody is asked yet; the step waits.
            ctx.awaiting = None
            return deferred.verdict()
        if planned is None:
            ctx.awaiting = None
            return Verdict.next()
        plan, digest = planned
        if _nothing_to_approve(plan):
            await self._noop(ctx, step, plan)
            return Verdict.next()
        action = self._deps.registry.get(step.action)
        await desk.request(
            StepRequest(
                run_id=ctx.run_id,
                step_idx=step.index,
                rule=ctx.rule,
                action=step.action,
                risk=action.risk.value,
                plan=plan,
                plan_hash=digest,
                context=await _why(self._deps, ctx),
            ),
            ctx.target,
            lease=ctx.lease,
        )
        ctx.requested_approval = True
        return Verdict.next()

    async def _noop(self, ctx: RunContext, step: StepPlan, plan: Mapping[str, Any]) -> None:
        """Record the held ``step`` a noop without asking anyone: its preview (``plan``)
        changes nothing. It is not run: nothing acts without an approval. The steps after it
        take their turn (``turns.StepTurns``)."""
        before = dict(plan.get("before") or {})
        message = f"{plan['summary']}: nothing to change, so nobody was asked to approve it"
        await record_step(self._deps, ctx, step, Outcome.NOOP, message, before=before, after=before)
        ctx.results.append((step, Result(Outcome.NOOP, message, before, before)))
        ctx.awaiting = None
        ctx.log.info("held step changes nothing: not put to an approver", step=step.index)


def _nothing_to_approve(plan: Mapping[str, Any]) -> bool:
    """A held step's preview changes nothing (``_changes_nothing``) and says what it found:
    a preview with nothing in its before (a simulated one, an action that shows only what
    it will send) is put to an approver as ever."""
    return bool(plan.get("before")) and _changes_nothing(plan)


async def _plan(
    deps: Deps, runner: StepRunner, ctx: RunContext, step: StepPlan
) -> tuple[Mapping[str, Any], str] | None:
    """The step's bound plan and its hash; None when its preview was refused or failed, which
    is then recorded on the step and in ``ctx.results`` (the run ends with it). Raises
    StepDeferred, recorded so, when the preview could not reach its system and the step may
    still wait for it (``pipeline.unreachable``); past that bound, a failed step as any.
    Raises what the store raises."""
    try:
        change = await runner.preview(ctx, step)
    except ActionError as exc:
        message = f"cannot preview the step for approval: {exc.message}"
        if isinstance(exc, TransientActionError):
            # Retries ran out on a read (a preview never writes): nothing changed, so the step
            # waits for its system (raises StepDeferred) until its bound, then fails saying so.
            system = ", ".join(sorted(deps.registry.get(step.action).requires(ctx.target)))
            waited = await Unreachable(deps)(ctx, step, system, exc)
            result = Result(
                waited.outcome, f"cannot preview the step for approval: {waited.message}"
            )
        elif isinstance(exc, ActionRefused):
            result = Result(Outcome.REFUSED, message)
        else:
            result = failed(exc, message)
        await record_step(deps, ctx, step, result.outcome, result.message)
        ctx.results.append((step, result))
        ctx.log.info("step preview refused", step=step.index, error=exc.message)
        return None
    plan = bound_plan(action=step.action, target=ctx.target, params=step.params, change=change)
    return plan, plan_hash(plan)


async def _why(deps: Deps, ctx: RunContext) -> dict[str, Any]:
    """What the approver is shown about why: the alert that started the run."""
    labels: Mapping[str, Any] = {}
    annotations: Mapping[str, Any] = {}
    generator_url = ""
    alert = ctx.alert
    if alert is not None:
        labels, annotations, generator_url = alert.labels, alert.annotations, alert.generator_url
    return {
        "rule": ctx.rule,
        "alertname": labels.get("alertname", ctx.prior.alertname if ctx.prior else ""),
        "labels": dict(labels),
        "annotations": dict(annotations),
        "generator_url": generator_url,
    }
