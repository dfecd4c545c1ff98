"""What the worker does with one claimed alert event: plan it, then run each planned run (or
resolve) through its stages.

The decision (which rule, which target, which steps) is the pure ``engine.plan``; everything
here is the I/O around it: the history it reads, the live facts its rules' conditions need
(read just before planning, ``facts.py``), and what follows from the plan. A firing that fails
a settling run's verification (it recurred) is acted on first, so the failure counts in the
breaker before a new run of the same rule asks it.

A new run's id follows from its rule and occurrence, its guards are asked under it, and then
it is stored with the steps it was planned with, in one statement: refused when a guard said
no; admitted and RUNNING (its admission audited with it) before its first step; PENDING when
the guards could not answer or the target lock is held, so the outage or the wait is recorded
on the run itself (stages.py). When the event is retried (Redis was down, a worker crashed), a
run of its occurrence that is still PENDING or RUNNING is taken up again with its recorded
steps, from the ones it had not finished, its guards asked again; it is never planned again,
so a retry cannot change what the run does.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from receiver import engine
from receiver.guards.policy import GuardUnavailable
from receiver.model import (
    AlertEvent,
    Disposition,
    GuardSpec,
    Recurrence,
    ResolvePlan,
    RunOutcome,
    RunPlan,
    Skip,
    Status,
    Verdict,
    VerdictKind,
    VerifyResult,
)
from receiver.pipeline.context import Deps, RunContext
from receiver.pipeline.facts import FactReader
from receiver.pipeline.resolve import taken_up_resolving
from receiver.pipeline.runner import Stages, run_stages, take_up
from receiver.rules.loader import RuleHolder
from receiver.rules.model import RuleSet
from receiver.store import (
    EventLease,
    LeaseFence,
    LeaseLost,
    StoreUnavailable,
    describe,
    is_unavailable,
)

__all__ = ["EventHandler", "disposition_of"]

# Outcomes of a run that an event's retry takes up again: its guards could not answer or it
# waits for the target lock (pending), or a crash came after its admission, before or during
# its steps (running: a new admitted run is stored running).
_TAKEN_UP = frozenset({RunOutcome.PENDING, RunOutcome.RUNNING})


class EventHandler:
    """``await handler(event) -> Disposition``: done, or retry when the guards could not be
    asked (nothing ran; the run stays pending)."""

    def __init__(self, deps: Deps, stages: Stages, rules: RuleHolder, log: Any) -> None:
        self._deps = deps
        self._stages = stages
        self._rules = rules
        self._log = log
        self._facts = FactReader(deps)

    async def __call__(self, event: AlertEvent, lease: EventLease | None = None) -> Disposition:
        """Plan ``event`` and carry out the plan. With ``lease`` (the worker's claim of it),
        the event's last write may complete it too (``RunContext.completes``): the
        disposition then says it is settled already."""
        deps = self._deps
        log = self._log.bind(
            event_id=event.id,
            fingerprint=event.fingerprint,
            alertname=event.alertname,
            status=str(event.status),
        )
        # Every write of the event's runs is fenced by its claim (receiver.store.fence).
        fence = lease.fence if lease is not None else None
        ruleset = self._rules.current
        widest = ruleset.widest_window_s
        within = (
            deps.settings.min_history_s
            if widest is None
            else max(deps.settings.min_history_s, widest)
        )
        repeats = engine.repeat_keys(event, ruleset, deps.settings.policy)
        settling = engine.settle_keys(event, ruleset, deps.settings.policy)
        await deps.priority.turn()
        history = await deps.store.history(
            event,
            within,
            repeats=repeats,
            settling=settling,
            recent=engine.recent_limit(event, ruleset),
        )
        settled = engine.settled_at_intake(event.status, event.labels, ruleset)
        if settled is not None and not history.other_runs:
            # Usually settled at intake already; here when the rules changed since it was
            # queued. With runs of other occurrences on record (which intake keeps an event
            # pending for), the plan still closes or withdraws them (receiver.episodes).
            log.debug("skipped", reason=settled)
            await deps.store.record_skips(event.id, [Skip(settled)])
            return Disposition.done()

        verdicts: list[Verdict] = []
        # Faults of one run (not outages), kept until the event's other runs have had their
        # turn: one rule's run that cannot be stored or carried out never holds back another
        # rule's on the same alert. The event then fails this attempt with the first of them
        # and is retried (only what is still undone: the runs stored meanwhile are not planned
        # again) until it is dead, where an operator sees the error.
        faults: list[Exception] = []
        # A run an earlier attempt created is finished first, with the steps it was planned
        # with; the engine sees it as existing and will not plan it again.
        for prior in history.episode_runs:
            if event.status is Status.FIRING and prior.outcome in _TAKEN_UP:
                await _isolated(
                    self._resume(prior.run_id, log, fence), verdicts, faults, log, prior.rule
                )
            elif event.status is Status.RESOLVED and prior.closed:
                await _isolated(
                    self._finish_resolve(prior.run_id, log, fence),
                    verdicts,
                    faults,
                    log,
                    prior.rule,
                )

        needs = engine.fact_needs(event, ruleset, deps.settings.policy)
        # Only what no earlier attempt decided: a run it created keeps the steps it was
        # planned with, and the engine will not plan it again.
        planned = {p.rule for p in history.episode_runs if p.occurrence == event.occurrence}
        needs = [
            (kind, target)
            for kind, target in needs
            if any(
                r.name not in planned and kind in r.facts for r in ruleset.matching(event.labels)
            )
        ]
        facts = await self._facts(needs, log) if needs else None
        plan = engine.plan(
            event, ruleset, history, deps.settings.policy, now=deps.clock(), facts=facts
        )
        # A firing of a later episode closes the alert's open runs of earlier ones first (their
        # undo deferred), so that one it recurred is settling when the recurrence fails it.
        superseded = [r for r in plan.resolves if r.deferred]
        for resolve in superseded:
            verdicts.append(await self._close_earlier(event, resolve, ruleset, log, fence))
        for recurrence in plan.recurrences:
            await self._recurred(recurrence, ruleset, log)
        for skip in plan.skips:
            log.info("skipped", rule=skip.rule, reason=skip.reason)
        if plan.skips:
            # On the event, so a reviewer sees through the API why an alert did nothing.
            await deps.store.record_skips(event.id, plan.skips)
        for n, run_plan in enumerate(plan.runs, start=1):
            ctx = _new_run(event, run_plan, log)
            ctx.lease = fence
            if (
                n == len(plan.runs)
                and len(superseded) == len(plan.resolves)
                and not _retrying(verdicts)
                and not faults
            ):
                # Nothing follows this run: if it is refused at once (and no message of it is
                # to be sent), the statement that stores it completes the event too.
                ctx.completes = lease
            await _isolated(run_stages(self._stages.run, ctx), verdicts, faults, log, ctx.rule)
        for resolve in plan.resolves:
            if not resolve.deferred:
                ctx = _resolving(event, resolve, ruleset, log)
                ctx.lease = fence
                await _isolated(
                    run_stages(self._stages.resolve, ctx), verdicts, faults, log, ctx.rule
                )
        if faults:
            raise faults[0]
        disposition = disposition_of(verdicts)
        if lease is not None and lease.completed and disposition.is_done:
            return Disposition.done(settled=True)
        return disposition

    async def _close_earlier(
        self,
        event: AlertEvent,
        resolve: ResolvePlan,
        ruleset: RuleSet,
        log: Any,
        fence: LeaseFence | None,
    ) -> Verdict:
        """Close an earlier episode's run (or withdraw its held undo) before the new one is
        planned. A fault of the statement itself (not an outage, which retries the event)
        does not hold the new episode back behind it: one bad run never stops another alert.
        It is logged, and the earlier run stays as it was (its deadline decides it)."""
        try:
            ctx = _resolving(event, resolve, ruleset, log)
            ctx.lease = fence
            return await run_stages(self._stages.resolve, ctx)
        except Exception as exc:
            if _outage(exc) or isinstance(exc, LeaseLost):
                raise
            log.error(
                "could not close the run of an earlier episode; the new episode goes on",
                earlier_run=resolve.run_id,
                error=describe(exc),
            )
            return Verdict.next()

    async def _recurred(self, recurrence: Recurrence, ruleset: RuleSet, log: Any) -> None:
        """The alert fired again on a settling run's target: its verification failed. The
        breaker hears of it now (the escalation job tells it again under the same name)."""
        deps = self._deps
        rule = ruleset.by_name(recurrence.rule)
        escalation = [s.to_plan() for s in rule.on_failed] if rule is not None else []
        ended = await deps.store.fail_recurred(recurrence.run_id, recurrence.event_id, escalation)
        if ended is None:
            return  # verified or failed already (a retried event)
        deps.metrics.run_finished(recurrence.rule, RunOutcome.FAILED)
        deps.metrics.verification_ended(recurrence.rule, VerifyResult.RECURRED)
        log.warning("verification failed: the alert recurred", failed_run=recurrence.run_id)
        try:
            await deps.guards.record_result(
                recurrence.rule, False, failure_id=f"verify:{recurrence.run_id}"
            )
        except GuardUnavailable as exc:
            log.warning("could not feed the circuit breaker yet", error=str(exc))

    async def _resume(self, run_id: str, log: Any, fence: LeaseFence | None) -> Verdict:
        run = await self._deps.store.get_run(run_id)
        if run is None:
            return Verdict.next()
        rule = self._rules.current.by_name(run.rule)
        ctx = await take_up(self._deps.store, run, rule, log)
        ctx.lease = fence
        ctx.log.warning(
            "taking up a run an earlier attempt created",
            outcome=str(run.outcome),
            remaining=len(ctx.steps),
        )
        return await run_stages(self._stages.run, ctx)

    async def _finish_resolve(self, run_id: str, log: Any, fence: LeaseFence | None) -> Verdict:
        run = await self._deps.store.get_run(run_id, with_steps=False)
        if run is None:
            return Verdict.next()
        rule = self._rules.current.by_name(run.rule)
        announce = rule.announce if rule is not None else None
        ctx = await taken_up_resolving(self._deps.store, run, log, announce)
        ctx.lease = fence
        return await run_stages(self._stages.resolve, ctx)


async def _isolated(
    work: Coroutine[Any, Any, Verdict],
    verdicts: list[Verdict],
    faults: list[Exception],
    log: Any,
    rule: str,
) -> None:
    """Await one run's ``work`` and keep its verdict; a fault of that run alone is logged and
    kept in ``faults`` for the caller to raise once the event's other runs are done. An outage
    (the store or the guards out of reach) is raised at once: every other run would meet it
    too, and the event is retried whole."""
    try:
        verdicts.append(await work)
    except Exception as exc:
        if _outage(exc) or isinstance(exc, LeaseLost):
            # LeaseLost: another worker has the event now; nothing more is written for it.
            raise
        log.error(
            "a run failed; the event's other runs go on, and the event is retried",
            rule=rule,
            error=describe(exc),
        )
        faults.append(exc)


def _outage(exc: Exception) -> bool:
    """``exc`` says the store or the guards are out of reach (the event is retried whole, and
    no failure counted), not that one run is at fault."""
    return isinstance(exc, StoreUnavailable | GuardUnavailable) or is_unavailable(exc)


def _retrying(verdicts: list[Verdict]) -> bool:
    return any(v.kind is VerdictKind.RETRY for v in verdicts)


def disposition_of(verdicts: list[Verdict]) -> Disposition:
    """Done, unless a run must be retried: then after the longest delay any of them asked,
    and no later than the soonest any of them must be (``Verdict.within_s``)."""
    retries = [v for v in verdicts if v.kind is VerdictKind.RETRY]
    if not retries:
        return Disposition.done()
    within = [v.within_s for v in retries if v.within_s is not None]
    after = max(v.after_s or 0.0 for v in retries)
    if within:
        after = min(after, min(within))
    return Disposition.retry(after, retries[0].reason, min(within) if within else None)


def _new_run(event: AlertEvent, plan: RunPlan, log: Any) -> RunContext:
    return RunContext(
        rule=plan.rule,
        target=plan.target,
        steps=plan.steps,
        guards=plan.guards,
        verify_within_s=plan.verify_within_s,
        log=log,
        event=event,
        occurrence=plan.occurrence,
        settle_s=plan.settle_s,
        decision=plan.decision,
        announce=plan.announce,
        undo=plan.on_resolved,
    )


def _resolving(event: AlertEvent, plan: ResolvePlan, ruleset: RuleSet, log: Any) -> RunContext:
    # The rule as loaded now says where an undo that did not happen is announced.
    rule = ruleset.by_name(plan.rule)
    return RunContext(
        rule=plan.rule,
        target=plan.target,
        steps=plan.steps,
        guards=GuardSpec(),
        verify_within_s=None,
        log=log,
        phase="resolve",
        run_id=plan.run_id,
        event=event,
        resolving=plan,
        announce=rule.announce if rule is not None else None,
    )
