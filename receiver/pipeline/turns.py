"""approve -> execute -> request, taken again past a held step that changes nothing.

A step that needs an engineer's approval holds itself and the steps after it (``Approve``);
once the steps before it ran, its preview is computed (``RequestApproval``). A preview that
changes nothing (its before, not empty, is its after: a limit at its cap already, no pod left
to delete, the revision to roll back to already running) is recorded ``noop`` without asking
anyone, wherever the step stands in its phase. The steps after it then take their turn, each
on its own merits: approve lets through those that need no approval (or run dry) and holds
the next that needs one, execute runs those let through (asking the kill switch first, as
before any step after the first of a pass), and request asks for the held one or, changing
nothing too, records it ``noop`` and goes on again. Before, a held step that changed nothing
was recorded noop only as the last of its phase; with steps after it, an engineer was asked to
approve nothing so that they could run.

One stage for the three stage lists (a run, its undo, its escalation), each with its own
execute (a follow-up's holds the steps a pause meets; ``runner.Stages``).
"""

from __future__ import annotations

from receiver.model import StepPlan, Verdict, VerdictKind
from receiver.pipeline.context import RunContext, Stage
from remediations.base import Outcome

__all__ = ["StepTurns"]


class StepTurns:
    """``approve``, ``execute`` and ``request`` in order, again while ``request`` settled the
    held step as a ``noop`` (nobody asked) and steps of the phase come after it. Stops at the
    first verdict that is not ``continue``, and returns it."""

    name = "steps"

    def __init__(self, approve: Stage, execute: Stage, request: Stage) -> None:
        self._approve = approve
        self._execute = execute
        self._request = request

    async def __call__(self, ctx: RunContext) -> Verdict:
        while True:
            for stage in (self._approve, self._execute):
                verdict = await stage(ctx)
                if verdict.kind is not VerdictKind.CONTINUE:
                    return verdict
            held = ctx.awaiting
            verdict = await self._request(ctx)
            if verdict.kind is not VerdictKind.CONTINUE:
                return verdict
            if held is None or not _passed(ctx, held):
                return verdict
            ctx.log.info("held step changes nothing: the steps after it take their turn")


def _passed(ctx: RunContext, held: StepPlan) -> bool:
    """Whether the held step ``held`` was settled ``noop`` without an approval this turn and
    steps of the phase come after it."""
    if ctx.awaiting is not None:
        return False
    settled = next((r for s, r in reversed(ctx.results) if s.index == held.index), None)
    if settled is None or settled.outcome is not Outcome.NOOP:
        return False
    return any(s.index > held.index for s in ctx.steps)
