"""A pass running a run's on_resolved steps keeps the run's safety-net job from coming due.

The safety net is the run's ``resume_resolve`` job: written with the steps, due
``resolve_retry_s`` later (a carried undo, ``Store.carry_undo``; a guard's hold), it finishes
them should the pass stop. Jobs of one run never run at once, and events of one alert never
do, but an event pass and a job of the same run are not kept apart by the queue: a pass still
inside a slow step (an HTTP call, a PostgreSQL action, a Kubernetes wait) when the job came due
would meet the job's pass, which runs the step again or records the ``started`` one
``interrupted`` (ending the undo, announced ``undo_failed``) while the first pass acts as usual.
The target lock does not keep them apart: it is re-entrant for the run.

``HoldBack``, the stage after ``AdmitResolve``, starts a heartbeat once the steps are admitted
(and so will run): at once, then every third of ``resolve_retry_s``, it moves the run's pending
``resume_resolve`` job to ``resolve_retry_s`` from now (``Store.hold_back_job``: only later,
never a claimed job). The heartbeat is a cleanup of the pipeline (``RunContext.cleanups``), so it
stops when the pass ends, whatever way it ends (done, parked, an exception, cancelled).

Why a live pass and the job never overlap: the job is written ``resolve_retry_s`` ahead of
the steps and the first beat is made before any step runs (only the rest of ``Close`` and the
admission lie between); each beat leaves the job at least two beats' worth of time ahead, so
it is never due while the heartbeat lives, even with one beat lost to a database error (logged;
the next one tries again). Why a dead pass is still taken over: a worker that died, or whose
pass was cancelled, beats no more; the job comes due at most ``resolve_retry_s`` after the last
beat, as before, and finds the step ``started`` (recorded ``interrupted``) or still pending.

Only the ``resume_resolve`` job is held: an escalation's (``on_failed``) steps run only in
``resume_run`` jobs (a failed verification records them and queues that job: store.verification),
and one run's jobs are claimed one at a time, so no other pass meets them. For the same reason a
job's pass (``resume_resolve`` itself, or ``resume_run`` taking up an approved undo) needs no
hold: the beat finds its own job claimed and leaves it alone, and moves a pending
``resume_resolve`` of the run no further than ``resolve_retry_s`` past that pass's end.
"""

from __future__ import annotations

import asyncio

from receiver.model import Verdict
from receiver.pipeline.context import Deps, RunContext
from receiver.store import JobKind, describe

__all__ = ["HoldBack"]

# Beats per resolve_retry_s: the job is left at least two beats ahead, so one lost beat (a
# database error) does not let it come due under a live pass.
_BEATS = 3


class HoldBack:
    """Keep the run's ``resume_resolve`` job in the future while this pass runs its steps."""

    name = "hold_back"

    def __init__(self, deps: Deps) -> None:
        self._deps = deps

    async def __call__(self, ctx: RunContext) -> Verdict:
        if ctx.run_id is None or not ctx.runnable:
            return Verdict.next()
        # The first beat here, before any step of this pass runs; the next ones in the background.
        await self._hold(ctx, ctx.run_id)
        beating = asyncio.create_task(self._beat(ctx, ctx.run_id))

        async def stop() -> None:
            beating.cancel()
            # wait() rather than awaiting the task: it never raises the task's cancellation,
            # so a cancellation of this pass itself is not swallowed here.
            await asyncio.wait([beating])

        ctx.cleanups.append(stop)
        return Verdict.next()

    async def _beat(self, ctx: RunContext, run_id: str) -> None:
        while True:
            await asyncio.sleep(self._deps.settings.resolve_retry_s / _BEATS)
            await self._hold(ctx, run_id)

    async def _hold(self, ctx: RunContext, run_id: str) -> None:
        retry_s = self._deps.settings.resolve_retry_s
        try:
            await self._deps.store.hold_back_job(JobKind.RESUME_RESOLVE, run_id, retry_s)
        except Exception as exc:
            # A lost beat is survived (the job stays ahead); the pass goes on regardless.
            ctx.log.warning("could not hold the safety-net job back", error=describe(exc))
