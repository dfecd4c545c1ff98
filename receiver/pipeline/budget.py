"""A budget slot drawn only for a change, and given back by a run that never used it.

The global budget counts disruptive actions (``receiver.guards.policy``): an admission asks it when
one of its steps is of a disruptive action and does not run dry (``admission_request``). A run
draws its slot when it is admitted, before a step that needs approval parks it: the slot is held
for the change the approver may allow. When the approval expires, is rejected, or is cancelled
because the alert resolved, the run ends having changed nothing, and its slot is given back;
otherwise ten ignored approvals in a storm would refuse every automatic action for an hour, and the
refusal would count ten actions that never happened. The same holds for a run admitted once and
refused by a guard when taken up again (a pause on its way to its approved step, a breaker opened
meanwhile: ``stages.Admit``): it ends there, and a step of it that never ran changed nothing.
Whenever a step of the run may have acted before (one ran, failed, or was stopped in), the slot
stays spent: the run did disrupt. A run whose steps all ended without a change (its disruptive
steps ``noop``, each a held step whose preview changed nothing, recorded without its action
being called, ``approve.RequestApproval``, or an action that found its change in place; none
of them ``ok``, ``failed``, ``simulated`` or stopped in) gives its slot back too, before its
outcome is written (``BudgetRefund.steps_done``, from ``record.Record``): a storm of
rollbacks already in place would otherwise spend the hour's budget on nothing. So does a run
a step's precondition refused (``refused``: the action said no without acting) after steps
that changed nothing, a held one ``noop`` among them: no step of it acted.

"Changed nothing" is known from records written before a step could act, never from a record
missing: a step a worker died in while its action ran has no record of its own when its action
is replay-safe (the Kubernetes actions, ``notify``: no ``started`` mark, ``pipeline.steps``),
and its run, ended by its alert's resolution or refused when taken up again, read as one whose
steps never ran. So the first step of the run without a finished record is asked about: one
whose action must not run twice was marked ``started`` before it acted (a mark found is a
step a worker stopped in: kept); a replay-safe one may have been let through unless the run
parked at an approval after its last admission (``Store.admitted_since_parked``: both rows are
written before any step of theirs runs). Steps after one that stopped the phase (refused,
failed, interrupted) are not asked about: execute never went past it. Otherwise the slot is
kept, and leaves the window with time: knowing more would take a write before every
replay-safe step, on the hot path.

An escalation (``on_failed``) is admitted under its run's id: while the run's slot is in the
window it shares it (the run acted: that slot stays spent), and once the run's slot has left
the window its admission draws one of its own (``Admission.budget_drawn``, audited with the
admission). Ended with none of its steps having acted, by its approval (expired, rejected,
cancelled), refused for good when taken up again (``follow_up.AdmitResolve``: the namespace
policy), overtaken by its alert's resolution (``overtaken.escalation_overtaken``), or done
with its steps ``noop`` or refused by a precondition (``record.RecordEscalation``; all three
``BudgetRefund.follow_up_ended``), it gives back a slot it drew, never the run's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog

from receiver.guards.policy import AdmissionRequest, GuardUnavailable
from receiver.guards.redis_guards import Guards
from receiver.model import GuardSpec, RunOutcome, StepPlan
from receiver.pipeline.context import WORKER_STOPPED, Deps, RunContext, stopped_at
from receiver.pipeline.steps import runs_dry
from receiver.store import RunRecord, Store, StoreUnavailable
from remediations.base import Outcome, Registry

__all__ = ["MAY_HAVE_CHANGED", "REFUND_STORE_TIMEOUT_S", "BudgetRefund", "admission_request"]

# How long the refund's read of the run may wait on the store (seconds): it runs inside an
# approval route's answer too, which must not wait out a frozen store's 30 s command timeout.
# Given up, the slot is kept: it leaves the window with time (the safe side).
REFUND_STORE_TIMEOUT_S = 5.0

# Run outcomes that end a run before the step its admission held a slot for: at an approval,
# or refused by a guard when taken up again. A run refused at its first admission took no slot
# (a refused admission commits nothing), so giving it back finds nothing there.
ENDED_UNUSED = frozenset(
    {RunOutcome.EXPIRED, RunOutcome.REJECTED, RunOutcome.CANCELLED, RunOutcome.REFUSED}
)
# Step outcomes after which something may have changed (a failed call may have, in part, so
# every failed step keeps the slot, whether or not it says it may have acted, the safe side; a
# step a worker stopped in may have acted: interrupted, or still marked started).
MAY_HAVE_CHANGED: frozenset[str] = (
    frozenset({Outcome.OK, Outcome.FAILED, Outcome.SIMULATED}) | WORKER_STOPPED
)
# A step that ended with one of these was recorded when it did: whatever else a step says
# (pending, awaiting_approval, not_run, cancelled) tells nothing of whether its action began.
_FINISHED: frozenset[str] = frozenset(o.value for o in Outcome)


def admission_request(
    deps: Deps, ctx: RunContext, steps: Sequence[StepPlan], spec: GuardSpec
) -> AdmissionRequest:
    """The guards' question (``spec``) before ``steps`` of stored run ``ctx.run_id``: counted
    by the budget when one is of a disruptive action and does not run dry (a dry step changes
    nothing: no slot). ``stages.Admit`` and ``follow_up.AdmitResolve`` ask it."""
    assert ctx.run_id is not None  # stored
    return AdmissionRequest(
        run_id=ctx.run_id,
        rule=ctx.rule,
        target=ctx.target,
        disruptive=any(
            deps.registry.get(s.action).disruptive and not runs_dry(deps, ctx, s) for s in steps
        ),
        spec=spec,
    )


class BudgetRefund:
    """``await refund(run_id)`` after an approval of the run ended it, or a guard refused it
    when taken up again: gives the run's budget slot back when the run ended expired,
    rejected, cancelled or refused and none of its steps may have changed anything; after an
    approval of its escalation ended (the run stays failed), the slot the escalation drew of
    its own, when none of the escalation's steps may have changed anything. Never
    raises for the guards (Redis unreachable: the slot is kept, and leaves the window with
    time, the safe side); a store error propagates. ``registry``: the actions, to tell a
    step that is marked before it acts from a replay-safe one (module docstring). ``log`` (a
    structlog logger): where to say so; default the one given at construction, else the
    pipeline's. ``raises=True``: Redis unreachable raises GuardUnavailable instead, for a
    caller that asks again until it answers (a ``finish_end`` job: a second ``ZREM`` of the
    run's id after one that took it out finds nothing)."""

    def __init__(self, store: Store, guards: Guards, registry: Registry, log: Any = None) -> None:
        self._store = store
        self._guards = guards
        self._registry = registry
        self._log: Any = log if log is not None else structlog.get_logger("remediator.pipeline")

    async def __call__(self, run_id: str, *, log: Any = None, raises: bool = False) -> None:
        log = self._log if log is None else log
        run = await self._store.get_run(run_id)
        if run is not None and run.outcome is RunOutcome.FAILED:
            # An escalation's approval ended it: the run's own steps acted, and the slot they
            # share with the escalation stays; one the escalation drew of its own comes back.
            await self._follow_up_unused(run, "on_failed", log, raises)
            return
        if run is None or run.outcome not in ENDED_UNUSED:
            return
        if any(step.outcome in MAY_HAVE_CHANGED for step in run.steps):
            return
        if await self._may_have_begun(run, "run"):
            log.info("budget slot kept: a step may have acted unrecorded", run_id=run_id)
            return
        await self._give_back(
            run_id, log, "budget slot given back: the run changed nothing", str(run.outcome), raises
        )

    async def steps_done(self, run_id: str, outcome: RunOutcome, log: Any) -> None:
        """Before run ``run_id``'s outcome ``outcome`` (its steps done: succeeded, verifying
        or dry_run; or refused by a step's precondition) is written: gives its budget slot
        back when the run's records say none of its steps may have changed anything
        (``MAY_HAVE_CHANGED``, ``_may_have_begun``): its disruptive steps ended ``noop``, or
        the refused step stopped it before any acted. Written before the outcome so that no
        escalation of the run (``on_failed``, after its verification) can be admitted under
        the run's slot and lose it here; a worker that dies in between takes the run up
        again, finds its steps done (its admission then counts none) and comes here again:
        the second ``ZREM`` of the run id finds nothing. A store that cannot be read, or Redis
        unreachable, is logged: the slot is kept (it leaves the window with time)."""
        try:
            run = await self._store.get_run(run_id)
            if run is None or any(step.outcome in MAY_HAVE_CHANGED for step in run.steps):
                return
            if await self._may_have_begun(run, "run"):
                log.info("budget slot kept: a step may have acted unrecorded", run_id=run_id)
                return
        except StoreUnavailable as exc:
            log.warning("budget slot not given back: store unavailable", error=str(exc))
            return
        said = "budget slot given back: the run's steps changed nothing"
        await self._give_back(run_id, log, said, str(outcome))

    async def _give_back(
        self, run_id: str, log: Any, said: str, ended: str, raises: bool = False
    ) -> None:
        """Take the run's id out of the budget's window, saying ``said`` with ``ended`` (how it
        ended) when a slot was there; Redis unreachable: logged, the slot kept (``raises``:
        GuardUnavailable raised)."""
        try:
            given_back = await self._guards.refund_budget(run_id)
        except GuardUnavailable as exc:
            if raises:
                raise
            log.warning(
                "budget slot not given back: guards unavailable", run_id=run_id, error=str(exc)
            )
            return
        if given_back:
            log.info(said, run_id=run_id, outcome=ended)

    async def refused(self, run_id: str, log: Any) -> None:
        """After a guard refused run ``run_id`` taken up again (``stages.Admit``): as calling
        it, but a store that cannot be read is logged, not raised: the refusal is recorded
        and stands, and the slot is kept (it leaves the window with time, the safe side)."""
        try:
            await self(run_id, log=log)
        except StoreUnavailable as exc:
            log.warning("budget slot not given back: store unavailable", error=str(exc))

    async def follow_up_ended(self, ctx: RunContext) -> None:
        """After the follow-up ``ctx.phase`` of run ``ctx.run_id`` ended with steps left: a
        guard refused it for good (``follow_up.AdmitResolve``), or its alert resolved during
        an escalation (``overtaken.escalation_overtaken``, once per ending: a retry finds
        nothing left to end and does not come here); or after an escalation's steps ran as
        far as they could and none of that pass's acted (``record.RecordEscalation``: its
        disruptive steps ``noop``, or a precondition refused it). Gives back the budget slot
        an admission of that follow-up drew of its own (``Store.follow_up_drew_budget``: an
        escalation taken up after its run's slot left the window) when none of its steps may
        have changed anything. A slot it shares with its run stays (the run acted); so does every
        slot of an undo, whose guards never ask the budget. A store that cannot be read, or
        Redis unreachable, is logged: the ending stands, and the slot is kept (it leaves the
        window with time)."""
        assert ctx.run_id is not None  # ended: the run is stored
        try:
            run = await self._store.get_run(ctx.run_id)
            if run is not None:
                await self._follow_up_unused(run, ctx.phase, ctx.log)
        except StoreUnavailable as exc:
            ctx.log.warning("budget slot not given back: store unavailable", error=str(exc))

    async def _follow_up_unused(
        self, run: RunRecord, phase: str, log: Any, raises: bool = False
    ) -> None:
        """Give back the slot an admission of the follow-up ``phase`` of ``run`` drew of its
        own, when none of that phase's steps may have changed anything. A store error
        propagates (and GuardUnavailable with ``raises``)."""
        if any(step.phase == phase and step.outcome in MAY_HAVE_CHANGED for step in run.steps):
            return
        if await self._may_have_begun(run, phase):
            log.info("budget slot kept: a step may have acted unrecorded", run_id=run.id)
            return
        if not await self._store.follow_up_drew_budget(run.id, phase):
            return
        said = f"budget slot given back: the {phase} steps changed nothing"
        await self._give_back(run.id, log, said, str(run.outcome), raises)

    async def _may_have_begun(self, run: RunRecord, phase: str) -> bool:
        """Whether the first step of ``run``'s ``phase`` without a finished record may have
        been let through to its action all the same (module docstring): a replay-safe one
        (or one of an action no longer known) after an admission the phase did not park
        since. A store error propagates."""
        stop = stopped_at(run.steps, phase)
        # The steps after one that stopped the phase never ran (execute goes in order and
        # stops there): pending until the outcome ends them, they tell nothing.
        steps = sorted(
            (s for s in run.steps if s.phase == phase and (stop is None or s.idx < stop)),
            key=lambda s: s.idx,
        )
        first = next((s for s in steps if s.outcome not in _FINISHED), None)
        if first is None:
            return False
        if first.action in self._registry and not self._registry.get(first.action).replay_safe:
            # Marked `started` before it acts (pipeline.steps): no mark, no call.
            return False
        return await self._store.admitted_since_parked(run.id, phase)
