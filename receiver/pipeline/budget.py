"""A budget slot given back by a run that never used it.

The global budget counts disruptive actions (``receiver.guards.policy``). A run draws its slot
when it is admitted, before a step that needs approval parks it: the slot is held for the
change the approver may allow. When the approval expires, is rejected, or is cancelled because
the alert resolved, the run ends having changed nothing, and its slot is given back; otherwise
ten ignored approvals in a storm would refuse every automatic action for an hour, and the
refusal would count ten actions that never happened.
"""

from __future__ import annotations

from typing import Any

from receiver.guards.policy import GuardUnavailable
from receiver.guards.redis_guards import Guards
from receiver.model import RunOutcome
from receiver.pipeline.context import WORKER_STOPPED
from receiver.store import Store
from remediations.base import Outcome

__all__ = ["REFUND_STORE_TIMEOUT_S", "BudgetRefund"]

# How long the refund's read of the run may wait on the store (seconds): it runs inside an
# approval route's answer too, which must not wait out a frozen store's 30 s command timeout.
# Given up, the slot is kept: it leaves the window with time (the safe side).
REFUND_STORE_TIMEOUT_S = 5.0

# Run outcomes that end a run at an approval, none of whose own steps may then have acted.
ENDED_AT_APPROVAL = frozenset({RunOutcome.EXPIRED, RunOutcome.REJECTED, RunOutcome.CANCELLED})
# Step outcomes after which something may have changed (a failed call may have, in part, so
# every failed step keeps the slot, whether or not it says it may have acted, the safe side; a
# step a worker stopped in may have acted: interrupted, or still marked started).
MAY_HAVE_CHANGED: frozenset[str] = (
    frozenset({Outcome.OK, Outcome.FAILED, Outcome.SIMULATED}) | WORKER_STOPPED
)


class BudgetRefund:
    """``await refund(run_id)`` after an approval of the run ended it: gives the run's budget
    slot back when the run ended expired, rejected or cancelled and none of its steps may have
    changed anything. Never raises for the guards (Redis unreachable: the slot is kept, and
    leaves the window with time, the safe side); a store error propagates."""

    def __init__(self, store: Store, guards: Guards, log: Any) -> None:
        self._store = store
        self._guards = guards
        self._log = log

    async def __call__(self, run_id: str) -> None:
        run = await self._store.get_run(run_id)
        if run is None or run.outcome not in ENDED_AT_APPROVAL:
            return  # an escalation's approval leaves its run failed: its own steps acted
        if any(step.outcome in MAY_HAVE_CHANGED for step in run.steps):
            return
        try:
            given_back = await self._guards.refund_budget(run_id)
        except GuardUnavailable as exc:
            self._log.warning(
                "budget slot not given back: guards unavailable", run_id=run_id, error=str(exc)
            )
            return
        if given_back:
            self._log.info(
                "budget slot given back: the run changed nothing",
                run_id=run_id,
                outcome=str(run.outcome),
            )
