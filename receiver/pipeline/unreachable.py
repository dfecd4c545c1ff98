"""A step whose system could not be reached at all waits for it, for a while, instead of failing.

An action's call is retried a few times over a second or two (``remediations.retrying``); an
outage of the system it acts on (a kube-apiserver restarting, a DNS blip, a database failing
over) lasts longer. A step whose action gave up on such a failure before anything reached its
system (``TransientActionError`` with ``may_have_acted`` False: a connection refused, a name
that did not resolve, a connect timeout, a TLS handshake that failed (a certificate refused:
remediations/tls.py, said as such), a 503 or 429 answered to a read; a Kubernetes write
whose every try failed to connect, ``remediations.kubernetes.retry``) changed nothing, and
failing it for good ended the run, or worse an undo, leaving a scaled Deployment with nothing
left to take the change back. Such a step is now handled as a step whose guards could not be
asked (execute.py): it is not recorded ``failed``; it stays ``pending`` (an approved one stays
``awaiting_approval``, its approval kept) with a message saying why, which system, since when
and how many tries, the run keeps its outcome (``running``; a follow-up's run its own), and
the event or job is retried after ``guards_down_retry_s``, backing off as any retried item
does (receiver.worker: doubling up to 5 minutes), but due at the latest when the step's bound
(below) runs out (``StepDeferred.within_s``), so the step fails at its bound, not a backoff
after it. The pass's target lock is given back as
the pass ends (its cleanup, ``context.release_when_done``), as on the guards' outage, and the
retry takes it again at its admission: a target nobody can reach is not held from the runs
that may find it back first.

Bounded: once the step has waited ``unreachable_retry_s`` (``actions.unreachable_retry_for``, 5
minutes by default) since its first failed try, its next failure records it ``failed`` as
before, the message naming the system, the first and the last failure's times, the number of
tries and what the last one met (``remediations.unreached``): it never connected, timed out
connecting, was answered 429 (with its Retry-After, if any) or another status, or failed
reading the answer. A system that answered was reached: it refused, it did not act. An
on_resolved step (an undo) waits ``undo_unreachable_retry_s``
(``actions.undo_unreachable_retry_for``, 30 minutes): the change it takes back stays in place
until it runs, and a run's step that gives up only leaves the alert to the people it pages
anyway, while an undo that gives up leaves a change nobody will take back unless told
(``undo_failed``). ``0s`` fails at the first such failure, as before. The wait is the one the
step's record says (``_waited``: its message begins ``UNREACHED``): a guard that held the step
since (a pause, the target lock) rewrote that message, and the next failure begins a new wait,
its first try and count written over the older one's (``Store.defer_step``).

A step that may have acted (a write sent and never answered, a timeout after the request went
out) is never deferred: it is recorded ``failed`` with ``may_have_acted``, as before. A step
whose action is marked ``started`` before it acts (``Action.replay_safe`` False: the PostgreSQL
signals, the Redis requeue, ``http.call``) waits the same way: its action said it did not act,
so the deferral clears this try's mark (``Store.defer_step``, in the same transaction, and only
a mark with this try's attempt id), the step ``pending`` again (``awaiting_approval`` when
approved), and the retry runs it rather than read the mark as a stopped worker's. Each of its
tries is audited: the mark's ``step`` row (``started``) and a ``step.deferred`` row saying it
did not act. A mark the deferral could not clear (the store failed) is read as interrupted, the
safe side. A step's preview for its approval (receiver.pipeline.approve ``_plan``: before the
approval is asked for, and again as an approved step is taken up) waits the same way: a
preview only reads, so any failure its retries ran out on changed nothing.

The waiting is said once in the audit log (one ``step.deferred`` row at the step's first
deferral, ``Store.defer_step``); the retries only update the step's row (its message,
``attempts``, and ``started_at``: when the first try failed), so an outage that meets a storm
of runs does not add a row per run per retry. The step's end (it ran, or failed past its
bound) is recorded and audited as any step's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from receiver.durations import format_duration
from receiver.model import StepPlan, Verdict
from receiver.pipeline.context import STEP_AWAITING_APPROVAL, STEP_PENDING, Deps, RunContext
from remediations.base import ActionError, Outcome, Result, TransientActionError
from remediations.unreached import how_unreached

__all__ = [
    "UNREACHED",
    "StepDeferred",
    "Unreachable",
    "unreached",
]

# The start of the message of a step that waits for its system (read back by the next try).
UNREACHED = "waiting for its system: "


class StepDeferred(Exception):
    """The step could not reach its system and waits (recorded so): the pass ends here, its
    event or job retried after ``after_s`` seconds and at the latest after ``within_s`` (when
    its bound runs out: a later retry, after the worker's backoff, would fail it that much
    past its bound); ``reason`` says why (for the item's error and the log)."""

    def __init__(self, reason: str, after_s: float, within_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.after_s = after_s if within_s is None else min(after_s, within_s)
        self.within_s = within_s

    def verdict(self) -> Verdict:
        """The pass's verdict: its event or job retried, due by the end of the bound."""
        return Verdict.retry(self.after_s, self.reason, self.within_s)


def unreached(exc: BaseException) -> bool:
    """Whether ``exc``, raised by an action's ``run``, says its system could not be reached
    and nothing was sent that could act: retries exhausted (TransientActionError) on failures
    that changed nothing (``may_have_acted`` False)."""
    return isinstance(exc, TransientActionError) and not exc.may_have_acted


@dataclass(frozen=True, slots=True)
class _Waited:
    """What the step's earlier deferrals left: when the first try failed, and how many."""

    first: datetime
    tries: int


def _waited(ctx: RunContext, step: StepPlan) -> _Waited | None:
    """The step's waiting so far, read from its record as this pass took the run up
    (``ctx.prior``); None when it has not waited (a new run, or a step that never did)."""
    if ctx.prior is None:
        return None
    for record in ctx.prior.steps:
        if record.phase != ctx.phase or record.idx != step.index:
            continue
        if (
            record.outcome in (STEP_PENDING, STEP_AWAITING_APPROVAL)
            and record.message.startswith(UNREACHED)
            and record.started_at is not None
        ):
            return _Waited(record.started_at, max(1, record.attempts))
        return None
    return None


def _at(when: datetime) -> str:
    return when.isoformat(timespec="seconds")


class Unreachable:
    """``await unreachable(ctx, step, system, exc)``: the step's action could not reach
    ``system`` (``unreached(exc)``). Raises StepDeferred once the step's waiting is recorded
    (``Store.defer_step``); returns the FAILED result to record once it has waited its bound.
    Raises what the store raises (StoreUnavailable, LeaseLost)."""

    def __init__(self, deps: Deps) -> None:
        self._deps = deps

    def bound_s(self, phase: str) -> float:
        """The longest a step of ``phase`` waits for its system, in seconds."""
        settings = self._deps.settings
        if phase == "resolve":
            return settings.undo_unreachable_retry_s
        return settings.unreachable_retry_s

    def waits(self, ctx: RunContext, step: StepPlan, now: datetime) -> bool:
        """Whether ``step`` would still wait for its system if a try of it at ``now`` could
        not reach it: False once it has waited its bound since its first failed try (that
        failure then ends it). Told to the action before it runs
        (``ActionContext.retried_if_unreached``), and passed back as ``waits``."""
        waited = _waited(ctx, step)
        first = waited.first if waited is not None else now
        return (now - first).total_seconds() < self.bound_s(ctx.phase)

    async def __call__(
        self,
        ctx: RunContext,
        step: StepPlan,
        system: str,
        exc: ActionError,
        mark: str | None = None,
        waits: bool | None = None,
    ) -> Result:
        """``mark``: the message of this try's start mark, for an action marked ``started``
        before it acts (``Action.replay_safe`` False): the deferral clears it
        (``Store.defer_step``), so the retry runs the step instead of reading it as
        interrupted; past the bound the step is recorded ``failed`` over it, as any marked
        step's end. ``waits``: the step's ``waits`` as its action was told before it ran
        (the decision kept, though the bound ran out while it ran); None: decided now."""
        deps = self._deps
        assert ctx.run_id is not None
        now = deps.clock()
        waited = _waited(ctx, step)
        first = waited.first if waited is not None else now
        tries = (waited.tries if waited is not None else 0) + 1
        bound = self.bound_s(ctx.phase)
        if waits is None:
            waits = self.waits(ctx, step, now)
        how = how_unreached(exc) if isinstance(exc, TransientActionError) else None
        headline = how.headline if how is not None else "could not be reached"
        if not waits:
            # What the last try met, not "failed before anything was sent": a 429 was sent,
            # reached the system and was refused (remediations/unreached.py).
            last = f", the last {how.last}" if how is not None else ""
            return Result(
                Outcome.FAILED,
                f"{system} {headline}: {tries} {'try' if tries == 1 else 'tries'} from "
                f"{_at(first)} to {_at(now)}{last}; it did not act, and this step waits at "
                f"most {format_duration(bound)} (actions."
                f"{'undo_' if ctx.phase == 'resolve' else ''}unreachable_retry_for): "
                f"{exc.message}",
            )
        until = format_duration(bound)
        message = (
            f"{UNREACHED}{system} {headline} ({tries} "
            f"{'try' if tries == 1 else 'tries'} since {_at(first)}, the last at {_at(now)}): "
            f"{exc.message}; it did not act; tried again for up to {until} from the first"
        )
        await deps.store.defer_step(
            ctx.run_id,
            phase=ctx.phase,
            idx=step.index,
            action=step.action,
            message=message,
            tries=tries,
            first_at=first,
            audit=waited is None,
            lease=ctx.lease,
            mark=mark,
            back_to=STEP_AWAITING_APPROVAL if step.index in ctx.approved else STEP_PENDING,
        )
        ctx.log.warning(
            "step's system unreachable; the step waits",
            step=step.index,
            action=step.action,
            system=system,
            how=headline,
            tries=tries,
            error=exc.message,
        )
        raise StepDeferred(
            f"{system} {headline}: step {step.index} ({step.action}) of the "
            f"{ctx.phase} steps waits, and the steps after it; it will be retried",
            deps.settings.guards_down_retry_s,
            bound - (now - first).total_seconds(),
        )
