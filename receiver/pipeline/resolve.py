"""The resolve path: close -> admit -> approve -> execute -> request -> record, for a run whose
alert resolved.

``Close`` stamps the run resolved and hands its pending on_resolved steps on; ``AdmitResolve``
(follow_up.py, which admits the on_failed steps of a failed verification too) puts them through
the guards that still apply to undoing a change (``RESOLVE_GUARDS``: pause, namespace policy,
target lock); ``Approve`` and ``RequestApproval`` (approve.py) hold a step that needs an
engineer's approval (``approval: required``, or a high-risk action) as they hold a run's own step,
and ``Execute`` (stages.py) runs the others before it; ``RecordResolve`` (undo.py) parks the held
one (``awaiting_approval``) until its approval is decided or expires, and ends and announces an undo
that stopped (a step refused, failed or interrupted: the steps after it ``not_run``). The engine
plans on_resolved steps only for runs whose steps changed something, so a refused, failed, dry-run
or held run is closed and nothing is undone (the resolved event's ``skips`` say so). A run one of
whose steps a worker stopped in (``interrupted``, or still ``started``), or failed after its request
may have reached its system (``failed`` with ``may_have_acted``: a POST sent and never answered),
may have changed something (``context.possible_change``): its on_resolved steps are planned, pass
the same guards, and each record of them says that the change it undoes may not have happened
(``RunContext.caveat``). A failed step known not to have acted (a refused connection, a 4xx answer)
changed nothing.

A run of an earlier episode whose resolution never came is closed the same way when a later episode
of its alert arrives (``receiver.episodes``; ``ResolvePlan.inferred_from``): by its firing with the
undo deferred (``undo_deferred``: the alert fires again), by its resolution with the undo at once; a
deferred undo is carried out when the alert next resolves (``ResolvePlan.carried``:
``Store.carry_undo`` records the steps, with a ``resume_resolve`` job that finishes them should this
pass stop; only the pass whose carry wrote them runs them, one that finds them carried leaves them
to that carry's job). A firing also withdraws a closed run's undo that waits for its approval
(``ResolvePlan.withdraw``); any take-up of a step not started yet after the alert fired again
(approved, or held by a guard) withdraws it (pipeline.refired): deferred.

A step the guards hold is not lost (follow_up.py): it stays ``pending`` and a ``resume_resolve``
job takes it up again (withdrawn if its alert fired again meanwhile); a namespace refusal ends
the undo, announced as not done (``undo.UndoNotice``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from receiver.alertmanager import parse_rfc3339
from receiver.model import (
    AlertEvent,
    Announce,
    GuardSpec,
    RunOutcome,
    Verdict,
    VerifyResult,
)
from receiver.pipeline.context import (
    STEP_AWAITING_APPROVAL,
    STEP_PENDING,
    STEP_STARTED,
    Deps,
    RunContext,
    read_origin,
    stopped_at,
)
from receiver.pipeline.overtaken import release_admitted_lock
from receiver.pipeline.undo import caveat
from receiver.store import RunRecord, Store
from remediations.base import Outcome

__all__ = [
    "Close",
    "resolved_at",
    "resolving_context",
    "taken_up_resolving",
]


class Close:
    """The alert resolved: stamp the run closed and take up its pending on_resolved steps.

    The steps are recorded before the run is closed: a crash in between leaves pending resolve
    steps that the retried event (or a ``resume_resolve`` job) finishes, instead of losing them.
    A run closed earlier is not closed again; only its pending steps run. ``ctx.resolving``
    says how: closed on a later episode's evidence (resolved at its startsAt), its steps
    deferred (not recorded: the engine plans them again, from the steps kept with the run,
    when the alert next resolves), or a deferred undo carried out now, numbered after the
    run's steps as any undo is (``Store.carry_undo``, ``Store.record_undo``; carried by
    another pass already, none is taken up here: that carry's job runs them), or a held undo
    withdrawn because the alert fires again (``Store.withdraw_undo``: deferred, its approval
    cancelled and announced)."""

    name = "close"

    def __init__(self, deps: Deps) -> None:
        self._deps = deps

    async def __call__(self, ctx: RunContext) -> Verdict:
        store = self._deps.store
        assert ctx.run_id is not None
        ctx.bind(run_id=ctx.run_id, rule=ctx.rule, target=ctx.target.key)
        outcome: str | None = None
        take_up = True
        plan = ctx.resolving
        if ctx.event is not None and plan is not None and plan.withdraw:
            # The alert fires again while the run's undo waits for its approval: withdrawn,
            # under the run's row lock, and carried to the next resolution.
            withdrawn = await store.withdraw_undo(ctx.run_id, event_id=ctx.event.id)
            if withdrawn is not None:
                ctx.log.info("held undo withdrawn: the alert fired again", approvals=len(withdrawn))
                if self._deps.approvals is not None:
                    await self._deps.approvals.withdrawn(withdrawn)
        elif ctx.event is not None and plan is not None and plan.carried:
            # Closed earlier by a later episode; the alert has now resolved: its undo is due.
            # Carried by another pass (a withdrawal's, a first try of this event), its steps
            # are that carry's job's to run: taken up here too, both would run them at once.
            take_up = await store.carry_undo(
                ctx.run_id,
                ctx.steps,
                event_id=ctx.event.id,
                retry_s=self._deps.settings.resolve_retry_s,
            )
            if take_up:
                ctx.log.info("deferred undo taken up: the alert resolved", steps=len(ctx.steps))
        elif ctx.event is not None:
            deferred = plan is not None and plan.deferred
            if not deferred:
                await store.record_undo(ctx.run_id, ctx.steps)
            inferred = plan.inferred_from if plan is not None else None
            outcome = await store.close_run(
                ctx.run_id,
                resolved_at(ctx.event) if inferred is None else _time(inferred),
                inferred_from=inferred,
                defer_undo=deferred and bool(ctx.steps),
            )
            if outcome is not None:
                ctx.log.info(
                    "run closed: alert resolved"
                    if inferred is None
                    else "run closed: a later episode of its alert began",
                    ends_at=ctx.event.ends_at if inferred is None else inferred,
                    outcome=outcome,
                    undo_deferred=deferred and bool(ctx.steps),
                )
        if self._deps.approvals is not None:
            # A step still waiting for its approval is no longer wanted (idempotent); not an
            # on_resolved step's: the resolution is what it waits on.
            await self._deps.approvals.cancel(ctx.run_id)
        run = await store.get_run(ctx.run_id)
        if run is None:
            return Verdict.stop(RunOutcome.VERIFIED, "run no longer exists")
        if run.outcome is RunOutcome.PENDING and run.started_at is None:
            # Never admitted (it waited for the target lock, or Redis): nothing ran, the alert is
            # over; it ends here, if still pending (a job may have admitted it since the read).
            # One admitted before (approved) is its job's (pipeline.jobs).
            if await store.set_run_outcome(
                run.id,
                RunOutcome.CANCELLED,
                error="the alert resolved before the run was admitted; nothing ran",
                lease=ctx.lease,
                expect=RunOutcome.PENDING,
                finish=True,
            ):
                self._deps.metrics.run_finished(ctx.rule, RunOutcome.CANCELLED)
                # A job's admission of it that Redis took, and whose worker died before
                # recording it, holds the target lock under its id: given back now, not at
                # its TTL (the job, retried, leaves an ended run alone); and by the
                # finish_end job queued with the end, with its slot, when this pass cannot.
                await release_admitted_lock(self._deps, run.id, ctx.rule, ctx.target, ctx.log)
            run = await store.get_run(ctx.run_id) or run
        if outcome is not None:
            self._ended(run, outcome)
        ctx.prior = run
        ctx.caveat = caveat(run)
        if ctx.caveat:
            ctx.log.warning("undoing a change that may not have happened", caveat=ctx.caveat)
        for step in run.steps:
            # What the run's own steps changed: an on_resolved step undoes that, and only that.
            if step.phase == "run" and step.outcome == Outcome.OK and step.before:
                ctx.remember(step.action, step.before, step.after or {})
        # Numbered before this change, from 0 like the rule's list, an on_resolved step may
        # share its index with a run step, and so that step's approval: it runs as it was
        # planned then, without one (``Verification.record_undo`` numbers them apart now).
        shared = {s.idx for s in run.steps if s.phase != "resolve"}
        stop = stopped_at(run.steps, "resolve")
        ctx.steps = ctx.runnable = tuple(
            s.as_plan(needs_approval=s.needs_approval and s.idx not in shared)
            for s in sorted(run.steps, key=lambda s: s.idx)
            # A started one too: its worker stopped in it; the step runner records it
            # interrupted rather than undoing a second time. A held one: the approve stage
            # lets it through once approved. None after one that stopped the undo: it ended.
            if take_up
            and s.phase == "resolve"
            and s.outcome in _OPEN
            and (stop is None or s.idx < stop)
        )
        return Verdict.next()

    def _ended(self, run: RunRecord, outcome: str) -> None:
        """The metrics of a run closed just now (``outcome``: as ``close_run`` left it): a
        verification it ended, and its time to resolve when its steps ran and could have
        caused the resolution (one dated before they acted says nothing of them)."""
        metrics = self._deps.metrics
        early = run.verify_result is VerifyResult.RESOLVED_BEFORE_ACTION
        if outcome == RunOutcome.VERIFIED or (outcome == RunOutcome.SUCCEEDED and early):
            # This close decided it: a run closed before (resolved_at set) is not closed again.
            metrics.run_finished(run.rule, RunOutcome(outcome))
            metrics.verification_ended(run.rule, run.verify_result or VerifyResult.VERIFIED)
        if run.time_to_resolve_s is not None and run.outcome in _ACTED and not early:
            metrics.run_resolved(run.rule, run.time_to_resolve_s)


# On_resolved steps still to settle: planned, held for an approval, or started by a worker
# that stopped (the step runner records that one interrupted, without acting).
_OPEN = (STEP_PENDING, STEP_AWAITING_APPROVAL, STEP_STARTED)


# Outcomes of runs whose steps ran: their time to resolve says how the remediation did.
_ACTED = frozenset(
    {RunOutcome.VERIFIED, RunOutcome.VERIFYING, RunOutcome.SUCCEEDED, RunOutcome.FAILED}
)


async def taken_up_resolving(
    store: Store, run: RunRecord, log: Any, announce: Announce | None = None
) -> RunContext:
    """``resolving_context`` with the alert that created the run read back from the store
    (``RunContext.origin``; its labels are the resolved one's): an on_resolved step taken up
    again (after its approval, a guard's hold) previews and writes about the same alert as it
    did when its approval was asked for, so the approved plan hashes the same."""
    ctx = resolving_context(run, log, announce)
    await read_origin(store, ctx, run.event_id)
    return ctx


def resolving_context(run: RunRecord, log: Any, announce: Announce | None = None) -> RunContext:
    """The resolve-path context of a closed run, to finish its pending on_resolved steps (a
    retried resolved event, or a ``resume_resolve`` job): ``Close`` reads the steps.
    ``announce``: the ``notify`` of the run's rule as loaded now (None: it is gone, or has
    none), where an undo that did not happen is announced."""
    return RunContext(
        rule=run.rule,
        target=run.target,
        steps=(),
        guards=GuardSpec(),
        verify_within_s=run.verify_within_s,
        log=log,
        phase="resolve",
        run_id=run.id,
        prior=run,
        announce=announce,
    )


def _time(text: str) -> datetime | None:
    try:
        return parse_rfc3339(text)
    except ValueError:
        return None


def resolved_at(event: AlertEvent) -> datetime | None:
    """When the alert resolved, as it says: its endsAt; None when it carries none (Go's zero
    time) or an unreadable one. The store dates one far ahead of its own clock when it is stored
    (``Verification.close_run``), on the clock the run's creation and deadline were set by."""
    try:
        ends = parse_rfc3339(event.ends_at)
    except ValueError:
        return None
    return None if ends.year == 1 else ends
