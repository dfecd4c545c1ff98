"""Running one step of a run: the action, its dry-run decision, its result, its record.

Dry-run is decided per action: in the service's dry-run mode the action validates without
changing anything (Kubernetes: server-side dry-run), and an action whose system is not
configured (no client of the name it requires) plans and records ``dry_run``, saying which
system is missing. An action's own bug never takes the worker down: it is a failed step.

An action that must not run twice for one step (``Action.replay_safe`` False: the PostgreSQL
signals, the Redis requeue, ``http.call``) acts only once its step is durably marked
``started`` with an attempt id (``Store.start_step``, one statement; the only extra store write
of an admitted step, and none for the Kubernetes actions or ``notify``, nor in dry-run mode).
A worker that stops between the action and its record leaves the mark. The run taken up again
(another worker, once the lease ran out) does not call the action a second time, which could
signal or requeue up to the cap again: it records the step ``interrupted``, saying that it may
have acted and what to check, and the step stops the run, which ends ``failed`` (and counts in
the rule's breaker). Failing is the explainable choice: the effect is unknown, a human must
look, and the run's own record says why; asking for an approval instead would offer to act a
second time on a state nobody has read. Only a mark another attempt left is interrupted: when the
mark's statement committed but its answer was lost (StoreUnavailable: the store went away, or
the statement outlived the pool's command timeout), the event is retried and this process's next
try at the step names the same attempt (``StepRunner._start``), finds its own mark and acts.
What remains reads as interrupted although nothing acted, the conservative side (a mark cannot
say whether its action was called): a process that stops after sending the mark and before
acting, and a retry after a lost answer that another replica takes, or that comes after this
process restarted. The Kubernetes actions need no mark: a step taken up
finds its own write record on the object and writes nothing more.

A step that fails says whether it may have acted (``Result.may_have_acted``, from the action's
``ActionError.may_have_acted``; an action's own bug, which cannot tell, may have): one whose
request may have reached its system (a POST sent and never answered) is recorded ``failed``
with the flag and a message saying to check the target by hand, and counts as a possible
change (``context.possible_change``); a refusal after an earlier request of the same call may
have acted is such a failure too, not ``refused``. Nothing that fails before the action is
called (bad params, a preview) may have acted.
A step whose action gave up before anything reached
its system (``TransientActionError`` that did not act: connection refused) is not recorded
failed while it may still wait (``pipeline.unreachable``; its start mark, if any, cleared with
the deferral): the runner raises StepDeferred, and the execute stage has its event or job retried.

In a simulation (``PipelineSettings.simulate``, a rule test) no action is called: every system
counts as configured, a step is recorded ``simulated`` with the action's description of what it
would do, and a preview is that description (so approvals are asked for, bound and checked as in
production). A test can script a step's end through its fixtures (``Deps.fixtures``, the fact
``STEP_OUTCOME_FACT``): a refused or failed step then ends so, and its preview is refused or
fails too.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from receiver.model import StepPlan
from receiver.pipeline.context import (
    STEP_OUTCOME_FACT,
    Deps,
    RunContext,
    record_step,
)
from receiver.pipeline.marked import not_started
from receiver.pipeline.unreachable import Unreachable
from receiver.pipeline.unreachable import unreached as is_unreached
from receiver.store import StepStart, StoreUnavailable
from remediations.base import (
    Action,
    ActionContext,
    ActionError,
    ActionRefused,
    AlertFacts,
    Change,
    Outcome,
    ParamsError,
    Result,
)
from remediations.template_work import TemplateFailed

__all__ = ["StepRunner", "acted", "alert_facts", "failed", "missing_clients", "runs_dry"]


def missing_clients(deps: Deps, step: StepPlan, ctx: RunContext) -> list[str]:
    """The client names ``step``'s action needs that the service has not configured (none in
    a simulation: every system counts as configured)."""
    if deps.settings.simulate:
        return []
    action = deps.registry.get(step.action)
    return deps.clients.missing(action.requires(ctx.target))


def runs_dry(deps: Deps, ctx: RunContext, step: StepPlan) -> bool:
    """True when the step cannot change anything: dry-run mode or its system is missing."""
    return deps.settings.dry_run or bool(missing_clients(deps, step, ctx))


def alert_facts(ctx: RunContext) -> AlertFacts:
    """The alert behind the run (``RunContext.alert``), for actions and messages that write to
    people or services (notify, http.call, announcements); empty when its event was pruned."""
    event = ctx.alert
    if event is None:
        return AlertFacts()
    return AlertFacts(
        labels=event.labels,
        annotations=event.annotations,
        status=str(event.status),
        starts_at=event.starts_at,
        generator_url=event.generator_url,
    )


class StepRunner:
    """``await runner(ctx, step) -> Result``: runs the action and records the step."""

    def __init__(self, deps: Deps) -> None:
        self._deps = deps
        self._unreachable = Unreachable(deps)
        # (run id, phase, step index) -> the attempt id of a mark sent whose answer never came
        # (``_start``): the step's next try in this process names the same attempt, so a mark
        # that did commit is recognised as its own rather than read as a stopped worker's.
        self._unconfirmed: dict[tuple[str, str, int], str] = {}
        # The same key -> how a step this process marked and ran ended, its record lost to an
        # unreachable store: its next try here says so, not that a worker stopped.
        self._unrecorded: dict[tuple[str, str, int], Result] = {}

    def runs_dry(self, ctx: RunContext, step: StepPlan) -> bool:
        """True when the step cannot change anything: dry-run mode or its system is missing."""
        return runs_dry(self._deps, ctx, step)

    def action_context(
        self, ctx: RunContext, step: StepPlan, retried: bool = False
    ) -> ActionContext:
        """What the step's action is called with (``approved``: the step's approved
        preconditions, when an engineer approved it; ``step``/``phase``: which step of the run
        it is, so a step taken up again after a crash recognises its own earlier write;
        ``retried``: a failure that reaches nothing is not its end, ``Unreachable.waits``)."""
        assert ctx.run_id is not None  # the plan stage recorded the run before any step
        return ActionContext(
            run_id=ctx.run_id,
            dry_run=self._deps.settings.dry_run,
            clients=self._deps.clients,
            recorded=ctx.recorded,
            rule=ctx.rule,
            alert=alert_facts(ctx),
            approved=ctx.approved.get(step.index),
            step=step.index,
            phase=ctx.phase,
            retried_if_unreached=retried,
        )

    async def preview(self, ctx: RunContext, step: StepPlan) -> Change:
        """The step's exact change against live state (``Action.preview``). Raises ParamsError
        or the action's ActionError (ActionRefused when a precondition says no)."""
        action = self._deps.registry.get(step.action)
        params = _params(self._deps, ctx, step)
        if self._deps.settings.simulate:
            result = await self._simulated(ctx, step, action, params)
            if result.outcome is Outcome.REFUSED:
                raise ActionRefused(result.message)
            if result.outcome is Outcome.FAILED:
                raise ActionError(result.message)
            # Deterministic, like a real preview: the approved plan hashes the same later.
            return Change(summary=_simulated_message(action, ctx, params))
        return await action.preview(self.action_context(ctx, step), ctx.target, params)

    async def _simulated(
        self, ctx: RunContext, step: StepPlan, action: Action, params: BaseModel
    ) -> Result:
        """What a simulated step records: ``simulated``, or the end the fixtures script."""
        fixtures = self._deps.fixtures
        scripted = None
        if fixtures is not None:
            scripted = await fixtures.get(f"{STEP_OUTCOME_FACT}:{step.action}", ctx.target)
        if isinstance(scripted, Mapping):
            return _scripted(scripted, action, ctx, params)
        return Result(Outcome.SIMULATED, _simulated_message(action, ctx, params))

    async def __call__(self, ctx: RunContext, step: StepPlan) -> Result:
        deps = self._deps
        assert ctx.run_id is not None  # the plan stage recorded the run before any step
        started = deps.clock()
        t0 = time.perf_counter()
        action = deps.registry.get(step.action)
        # Decided once, before the action runs: it is told whether this is its last try.
        waits = self._unreachable.waits(ctx, step, started)
        action_ctx = self.action_context(ctx, step, retried=waits)
        result, params = await self._without_acting(ctx, step, action)
        record = True
        # Set before any branch: a step that ends without acting has no start mark, and a
        # store gone as its result is written must raise StoreUnavailable below (an outage,
        # retried), not UnboundLocalError (a failure, counted toward the dead letter).
        start: StepStart | None = None
        if result is None:
            assert params is not None
            typed = params
            if not (action.replay_safe or deps.settings.dry_run):
                # Not guarded: a store error is the store's (the event is retried), not a
                # failed step; the action has not been called.
                start = await self._start(ctx, step, action.describe(ctx.target, typed), started)
            if start is not None and not start.started:
                ran = self._unrecorded.pop((ctx.run_id, ctx.phase, step.index), None)
                result, record = not_started(ctx, start, ran)
            else:
                unreached: list[ActionError] = []

                async def act() -> Result:
                    try:
                        return await action.run(action_ctx, ctx.target, typed)
                    except ActionError as exc:
                        # A start mark is cleared as the step waits (pipeline.unreachable).
                        if is_unreached(exc):
                            unreached.append(exc)
                        raise

                result = await _guarded(ctx, step, act, acting=True)
                if unreached:
                    # Raises StepDeferred while the step may still wait for its system.
                    system = ", ".join(sorted(action.requires(ctx.target)))
                    mark = start.message if start is not None else None
                    result = await self._unreachable(ctx, step, system, unreached[0], mark, waits)
        elapsed = time.perf_counter() - t0
        deps.metrics.action_finished(step.action, result.outcome, elapsed)
        if record:
            try:
                await record_step(
                    deps,
                    ctx,
                    step,
                    result.outcome,
                    result.message,
                    before=dict(result.before),
                    after=dict(result.after),
                    attempts=1,
                    started_at=started,
                    finished_at=deps.clock(),
                    may_have_acted=result.may_have_acted,
                )
            except StoreUnavailable:
                if start is not None and start.started:
                    _remember(self._unrecorded, (ctx.run_id, ctx.phase, step.index), result)
                raise
        ctx.log.info(
            "step",
            action=step.action,
            phase=ctx.phase,
            outcome=str(result.outcome),
            message=result.message,
            seconds=round(elapsed, 3),
        )
        return result

    async def _without_acting(
        self, ctx: RunContext, step: StepPlan, action: Action
    ) -> tuple[Result | None, BaseModel | None]:
        """(result, None) for a step that ends without its action being called (bad params,
        a simulation, its system not configured); (None, params) when the action is to run."""
        deps = self._deps
        params: BaseModel | None = None

        async def settle() -> Result:
            nonlocal params
            params = _params(deps, ctx, step)
            if deps.settings.simulate:
                return await self._simulated(ctx, step, action, params)
            missing = missing_clients(deps, step, ctx)
            if missing:
                return Result(
                    Outcome.DRY_RUN,
                    f"dry-run ({', '.join(missing)} not configured): "
                    f"{action.describe(ctx.target, params)}",
                )
            return _ACTS

        result = await _guarded(ctx, step, settle)
        return (None, params) if result is _ACTS else (result, None)

    async def _start(
        self, ctx: RunContext, step: StepPlan, what: str, started: datetime
    ) -> StepStart:
        """Mark the step started (``Store.start_step``), naming a new attempt id, or the one
        of this step's last try in this process when that try's mark was sent and its answer
        never came (the store was unreachable, or the statement outlived its timeout: it may
        have committed). Raises what ``start_step`` raises, the attempt id then kept."""
        assert ctx.run_id is not None
        key = (ctx.run_id, ctx.phase, step.index)
        # Taken out while its mark is on its way: another task of this process that tries the
        # same step meanwhile (a lease lost and claimed again) names an attempt of its own.
        attempt = self._unconfirmed.pop(key, None) or uuid.uuid4().hex[:12]
        try:
            return await self._deps.store.start_step(
                ctx.run_id,
                phase=ctx.phase,
                idx=step.index,
                action=step.action,
                attempt=attempt,
                what=what,
                started_at=started,
                lease=ctx.lease,
            )
        except BaseException:
            # Forgotten, the oldest reads as interrupted if it comes back: the safe side.
            _remember(self._unconfirmed, key, attempt)
            raise


_K = TypeVar("_K")
_V = TypeVar("_V")


def _remember(memo: dict[_K, _V], key: _K, value: _V) -> None:
    """``memo[key] = value``, the oldest entry forgotten first past ``_MAX_UNCONFIRMED``
    (``StepRunner``'s ``_unconfirmed`` and ``_unrecorded``: a step forgotten reads as a
    stopped worker's, the safe side)."""
    if len(memo) >= _MAX_UNCONFIRMED:
        del memo[next(iter(memo))]
    memo[key] = value


# The most steps whose mark's answer was lost that a StepRunner remembers (``_start``): each is
# taken up again within seconds (the event's retry), or by another replica, which never asks.
_MAX_UNCONFIRMED = 1024

# Not a result: the step's action is to be called (``StepRunner._without_acting``).
_ACTS = Result(Outcome.NOOP, "")


def _params(deps: Deps, ctx: RunContext, step: StepPlan) -> BaseModel:
    """The step's params as its action takes them. ParamsError, nothing sent, for params that
    do not fit, and for a step taken up again whose stored params cannot be read
    (``StepPlan.unreadable``) or whose run's alert cannot (``RunContext.origin_unreadable``):
    it is not run on a guess (no params, the defaults, no labels)."""
    if unreadable := step.unreadable or ctx.origin_unreadable:
        raise ParamsError(step.action, f"{unreadable}; not run")
    return deps.registry.parse_params(step.action, step.params)


async def _guarded(
    ctx: RunContext,
    step: StepPlan,
    call: Callable[[], Awaitable[Result]],
    *,
    acting: bool = False,
) -> Result:
    """``await call()``, its ActionError a refused or failed step, and any other exception
    (an action's bug) a failed step logged with its traceback: it must not take the worker
    down. ``acting``: ``call`` is the action's ``run``, so its failure may have acted as the
    error says (``ActionError.may_have_acted``; a bug cannot tell, so it may have): a refusal
    that may have acted is a failure; any failure of anything else has not acted."""
    try:
        return await call()
    except ActionRefused as exc:
        if acting and exc.may_have_acted:
            return acted(ctx, failed(exc, exc.message))
        return Result(Outcome.REFUSED, exc.message)
    except ActionError as exc:
        result = failed(exc, exc.message)
        return acted(ctx, result) if acting and exc.may_have_acted else result
    except Exception as exc:
        ctx.log.exception("action crashed", action=step.action)
        result = Result(Outcome.FAILED, f"{type(exc).__name__}: {exc}")
        return acted(ctx, result) if acting else result


def acted(ctx: RunContext, result: Result) -> Result:
    """The failed ``result`` of a step that may have acted before it failed: flagged
    (``may_have_acted``), its message saying so and what to check, as an interrupted step's
    does."""
    return dataclasses.replace(
        result,
        may_have_acted=True,
        message=(
            f"{result.message}; it may have acted: the failure came after its request may "
            f"have reached its system; check {ctx.target.key} by hand"
        ),
    )


def failed(exc: ActionError, message: str) -> Result:
    """The FAILED result of a step that raised ``exc``, saying ``message``; marked
    ``alert_fault`` when a template in its params could not be rendered over the alert
    (TemplateFailed, raised before the action reaches its system). Not ``may_have_acted``:
    the caller that ran the action says so (``acted``)."""
    return Result(Outcome.FAILED, message, alert_fault=isinstance(exc, TemplateFailed))


def _simulated_message(action: Action, ctx: RunContext, params: BaseModel) -> str:
    return f"simulated: {action.describe(ctx.target, params)}"


def _scripted(
    scripted: Mapping[str, Any], action: Action, ctx: RunContext, params: BaseModel
) -> Result:
    """The Result a test's fixture scripts: ``{"outcome": ..., "message": ...}``."""
    outcome = Outcome(str(scripted.get("outcome", Outcome.SIMULATED)))
    message = str(scripted.get("message") or _simulated_message(action, ctx, params))
    return Result(outcome, message)
