"""What the worker does with one claimed alert event: plan, admit, execute, record.

The stages are the ones in DESIGN.md's data flow. Each is a small method with one job; the
decision (which rule, which target, which steps) is the pure ``engine.plan``, everything here
is the I/O around it. A run is created PENDING before its guards are asked, so a refusal or an
outage is recorded on the run itself, and a run that a crash interrupted is resumed from the
steps it had not finished.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from receiver import engine
from receiver.alertmanager import parse_rfc3339
from receiver.guards import Admission, AdmissionRequest, Guards, GuardUnavailable
from receiver.model import (
    AlertEvent,
    History,
    NamespacePolicy,
    ResolvePlan,
    RunOutcome,
    RunPlan,
    Status,
    StepPlan,
)
from receiver.rules.loader import RuleHolder
from receiver.store import RunRecord, Store
from receiver.telemetry import Metrics
from receiver.worker import Disposition
from remediations.base import (
    ActionContext,
    ActionError,
    ActionRefused,
    Clients,
    Outcome,
    Registry,
    Result,
)
from remediations.targets import Target

# Step outcomes beyond the action outcomes: planned but not yet run, and held for a human.
STEP_PENDING = "pending"
STEP_AWAITING_APPROVAL = "awaiting_approval"
_FINISHED_STEP = frozenset(o.value for o in Outcome) | {STEP_AWAITING_APPROVAL}

# How long an event waits before it is tried again when the guards cannot be asked.
GUARDS_DOWN_RETRY_S = 5.0


@dataclass(frozen=True, slots=True)
class PipelineSettings:
    dry_run: bool
    policy: NamespacePolicy
    # How far back the history reaches when no rule asks for more (repeated windows).
    min_history_s: float = 3600.0


class Pipeline:
    """Callable handed to the Worker: ``await pipeline(event) -> Disposition``."""

    def __init__(
        self,
        *,
        store: Store,
        guards: Guards,
        rules: RuleHolder,
        registry: Registry,
        clients: Clients,
        settings: PipelineSettings,
        metrics: Metrics,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._guards = guards
        self._rules = rules
        self._registry = registry
        self._clients = clients
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self._log = structlog.get_logger("remediator.pipeline")

    def settled_at_intake(self, status: Status, labels: Mapping[str, str]) -> str | None:
        """For ``Intake(settle=...)``: the rules in force when the alert arrives decide, as they
        would in the worker moments later. If deciding fails, the event is queued: the worker
        then meets the same failure where it is retried and recorded, and intake still answers."""
        try:
            return engine.settled_at_intake(status, labels, self._rules.current)
        except Exception:
            self._log.exception("matching at intake failed; the event is queued instead")
            return None

    async def __call__(self, event: AlertEvent) -> Disposition:
        log = self._log.bind(
            event_id=event.id, fingerprint=event.fingerprint, alertname=event.alertname,
            status=str(event.status),
        )
        ruleset = self._rules.current
        settled = engine.settled_at_intake(event.status, event.labels, ruleset)
        if settled is not None:
            # Usually settled at intake already; here when the rules changed since it was queued.
            log.debug("skipped", reason=settled)
            return Disposition.done()
        windows = [r.widest_window_s for r in ruleset.rules if r.widest_window_s]
        within = max([self._settings.min_history_s, *windows])
        repeats = engine.repeat_keys(event, ruleset, self._settings.policy)
        history = await self._store.history(event, within, repeats=repeats)

        # A run that a crash interrupted after its guards admitted it is finished first; the
        # engine sees it as existing and will not plan it again.
        for prior in history.episode_runs:
            if event.status is Status.FIRING and prior.outcome is RunOutcome.RUNNING:
                await self._resume(prior.run_id, log)
            elif event.status is Status.RESOLVED and prior.closed:
                await self._finish_resolve(prior.run_id, log.bind(run_id=prior.run_id))

        view = _engine_view(history) if event.status is Status.FIRING else history
        plan = engine.plan(event, ruleset, view, self._settings.policy, now=self._clock())
        for skip in plan.skips:
            log.info("skipped", rule=skip.rule, reason=skip.reason)

        retry: str | None = None
        for run_plan in plan.runs:
            outcome = await self._start_run(event, run_plan, history, log)
            if outcome is None:
                retry = "guards unavailable (Redis): nothing ran, the event will be retried"
        for resolve in plan.resolves:
            await self._resolve(event, resolve, log)
        if retry is not None:
            return Disposition.retry(GUARDS_DOWN_RETRY_S, retry)
        return Disposition.done()

    # --- firing: create, admit, execute ----------------------------------------------------

    async def _start_run(
        self, event: AlertEvent, plan: RunPlan, history: History, log: Any
    ) -> RunOutcome | None:
        """Returns the run's outcome, or None when the guards could not be asked."""
        run_id = await self._store.create_run(
            rule=plan.rule,
            event=event,
            target=plan.target,
            dry_run=self._settings.dry_run,
            occurrence=plan.occurrence,
            verify_within_s=plan.verify_within_s,
        )
        if run_id is None:
            # Created by an earlier attempt that found the guards unavailable: still PENDING.
            pending = [
                p.run_id for p in history.episode_runs
                if p.rule == plan.rule and p.outcome is RunOutcome.PENDING
            ]
            if not pending:
                return RunOutcome.PENDING  # another path owns it; nothing to do here
            run_id = pending[0]
        log = log.bind(run_id=run_id, rule=plan.rule, target=plan.target.key)
        for step in plan.steps:
            await self._store.record_step(
                run_id, idx=step.index, action=step.action, outcome=STEP_PENDING,
                params=step.params, needs_approval=step.needs_approval,
            )

        request = AdmissionRequest(
            run_id=run_id, rule=plan.rule, target=plan.target,
            disruptive=any(self._disruptive(s) for s in plan.steps), spec=plan.guards,
        )
        try:
            admission = await self._guards.admit(request)
        except GuardUnavailable as exc:
            log.warning("guards unavailable; run stays pending", error=str(exc))
            return None
        if not admission.admitted:
            assert admission.refusal is not None
            refusal = admission.refusal
            await self._store.record_refusal(run_id, refusal.guard, refusal.reason,
                                             refusal.retry_at)
            self._metrics.guard_refused(refusal.guard)
            self._metrics.run_finished(plan.rule, RunOutcome.REFUSED)
            log.info("refused", guard=refusal.guard, reason=refusal.reason,
                     retry_at=refusal.retry_at.isoformat() if refusal.retry_at else None)
            return RunOutcome.REFUSED

        await self._store.set_run_outcome(run_id, RunOutcome.RUNNING)
        log.info("admitted", fence=admission.fence)
        try:
            return await self._execute(run_id, plan.rule, plan.target, plan.steps,
                                       plan.verify_within_s, log)
        finally:
            await self._release(request, admission, log)

    async def _resume(self, run_id: str, log: Any) -> None:
        run = await self._store.get_run(run_id)
        if run is None:
            return
        log = log.bind(run_id=run_id, rule=run.rule, target=run.target.key)
        remaining = tuple(
            StepPlan(index=s.idx, action=s.action, params=s.params or {},
                     needs_approval=s.needs_approval)
            for s in run.steps
            if s.phase == "run" and s.outcome not in _FINISHED_STEP
        )
        log.warning("resuming an interrupted run", remaining=len(remaining))
        await self._execute(run_id, run.rule, run.target, remaining, run.verify_within_s, log,
                            prior=run)

    async def _execute(
        self,
        run_id: str,
        rule: str,
        target: Target,
        steps: Sequence[StepPlan],
        verify_within_s: float | None,
        log: Any,
        *,
        prior: RunRecord | None = None,
    ) -> RunOutcome:
        outcomes: list[str] = [
            s.outcome for s in (prior.steps if prior else ()) if s.outcome in _FINISHED_STEP
        ]
        recorded: dict[str, Mapping[str, Any]] = {}
        final: RunOutcome | None = None
        for step in steps:
            if step.needs_approval and not self._settings.dry_run:
                # Approvals arrive in a later release; until then the run waits, visibly.
                await self._store.record_step(
                    run_id, idx=step.index, action=step.action, outcome=STEP_AWAITING_APPROVAL,
                    params=step.params, needs_approval=True,
                    message="this step needs an engineer's approval",
                )
                final = RunOutcome.AWAITING_APPROVAL
                break
            result = await self._run_step(run_id, "run", step, target, recorded, log)
            outcomes.append(result.outcome)
            if result.before:
                recorded[step.action] = dict(result.before)
            if result.outcome in (Outcome.FAILED, Outcome.REFUSED):
                final = RunOutcome.FAILED if result.outcome is Outcome.FAILED else \
                    RunOutcome.REFUSED
                break

        if final is None:
            if outcomes and all(o == Outcome.DRY_RUN for o in outcomes):
                final = RunOutcome.DRY_RUN
            elif verify_within_s:
                final = RunOutcome.VERIFYING
            else:
                final = RunOutcome.SUCCEEDED
        error = None
        if final is RunOutcome.FAILED:
            error = "a step failed; see the run's steps"
        elif final is RunOutcome.REFUSED:
            error = "a step's precondition refused it; see the run's steps"
        await self._store.set_run_outcome(run_id, final, error=error)
        if final in (RunOutcome.FAILED, RunOutcome.SUCCEEDED, RunOutcome.VERIFYING):
            try:
                await self._guards.record_result(rule, final is not RunOutcome.FAILED)
            except GuardUnavailable as exc:
                log.warning("could not feed the circuit breaker", error=str(exc))
        self._metrics.run_finished(rule, final)
        log.info("run finished", outcome=str(final))
        return final

    async def _run_step(
        self,
        run_id: str,
        phase: str,
        step: StepPlan,
        target: Target,
        recorded: Mapping[str, Mapping[str, Any]],
        log: Any,
    ) -> Result:
        started = self._clock()
        t0 = time.perf_counter()
        action = self._registry.get(step.action)
        ctx = ActionContext(run_id=run_id, dry_run=self._settings.dry_run,
                            clients=self._clients, recorded=recorded)
        try:
            params = self._registry.parse_params(step.action, step.params)
            if not self._clients.has("kubernetes"):
                # No cluster credentials: the service plans and records, and changes nothing.
                result = Result(
                    Outcome.DRY_RUN,
                    f"dry-run (no cluster credentials): {action.describe(target, params)}",
                )
            else:
                result = await action.run(ctx, target, params)
        except ActionRefused as exc:
            result = Result(Outcome.REFUSED, exc.message)
        except ActionError as exc:
            result = Result(Outcome.FAILED, exc.message)
        except Exception as exc:  # an action's bug must not take the worker down
            log.exception("action crashed", action=step.action)
            result = Result(Outcome.FAILED, f"{type(exc).__name__}: {exc}")
        elapsed = time.perf_counter() - t0
        self._metrics.action_finished(step.action, result.outcome, elapsed)
        await self._store.record_step(
            run_id, idx=step.index, phase=phase, action=step.action, outcome=result.outcome,
            params=step.params, needs_approval=step.needs_approval, message=result.message,
            before=dict(result.before), after=dict(result.after), attempts=1,
            started_at=started, finished_at=self._clock(),
        )
        log.info("step", action=step.action, phase=phase, outcome=str(result.outcome),
                 message=result.message, seconds=round(elapsed, 3))
        return result

    async def _release(self, request: AdmissionRequest, admission: Admission, log: Any) -> None:
        try:
            await self._guards.release(request, admission)
        except GuardUnavailable as exc:
            # The lock expires by its TTL; an efficiency lock, not a correctness one.
            log.warning("could not release the target lock", error=str(exc))

    def _disruptive(self, step: StepPlan) -> bool:
        return bool(self._registry.get(step.action).disruptive)

    # --- resolved: close, run on_resolved ----------------------------------------------------

    async def _resolve(self, event: AlertEvent, plan: ResolvePlan, log: Any) -> None:
        log = log.bind(run_id=plan.run_id, rule=plan.rule, target=plan.target.key)
        # Recorded before the run is closed: a crash in between leaves pending resolve steps
        # that the retried event finishes (see _finish_resolve), instead of losing them.
        for step in plan.steps:
            await self._store.record_step(
                plan.run_id, idx=step.index, phase="resolve", action=step.action,
                outcome=STEP_PENDING, params=step.params, needs_approval=step.needs_approval,
            )
        resolved_at = _resolved_at(event, self._clock())
        if await self._store.close_run(plan.run_id, resolved_at):
            log.info("run closed: alert resolved", resolved_at=resolved_at.isoformat())
        await self._finish_resolve(plan.run_id, log)

    async def _finish_resolve(self, run_id: str, log: Any) -> None:
        """Run the on_resolved steps of a closed run that have not run yet."""
        run = await self._store.get_run(run_id)
        if run is None:
            return
        pending = [s for s in run.steps if s.phase == "resolve" and s.outcome == STEP_PENDING]
        if not pending:
            return
        recorded: dict[str, Mapping[str, Any]] = {
            s.action: dict(s.before) for s in run.steps if s.phase == "run" and s.before
        }
        for done in sorted(pending, key=lambda s: s.idx):
            step = StepPlan(index=done.idx, action=done.action, params=done.params or {},
                            needs_approval=done.needs_approval)
            result = await self._run_step(run_id, "resolve", step, run.target, recorded, log)
            if result.outcome in (Outcome.FAILED, Outcome.REFUSED):
                break


def _engine_view(history: History) -> History:
    """PENDING runs never got through their guards: the engine plans them again."""
    runs = tuple(r for r in history.episode_runs if r.outcome is not RunOutcome.PENDING)
    return History(
        episode_runs=runs,
        recent_runs=history.recent_runs,
        episode_resolved=history.episode_resolved,
        extra=history.extra,
    )


def _resolved_at(event: AlertEvent, now: datetime) -> datetime:
    try:
        ends = parse_rfc3339(event.ends_at)
    except ValueError:
        return now
    return ends if ends.year > 1 else now
