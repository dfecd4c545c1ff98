"""What follows an operator's drop of a job, once the drop committed: the ``finish_drop`` job.

The drop (``Queues.drop_item``: ``POST /api/v1/jobs/{id}/drop``, ``remediator jobs drop``) ends
in its own transaction what only the dropped job would have moved (store/job_ends.py), and
queues this job on the run in the same transaction. The job does what every other ending of a
run or an approval does beyond the store. The HTTP drop used to do it after its commit: a
crash, Redis or the approvers' channel not answering in between lost it (the budget slot stayed
spent for the budget's window, the approvers' message said "waiting" for good), and a slow
channel held the drop's answer. Its payload says what to do:

- ``refund`` (``FINISH_REFUND``): the budget slot the run, or its escalation, drew given back
  when none of its steps may have acted (``BudgetRefund``, which decides from the run's
  records, failing closed). Idempotent: the slot is the run's id in the budget's sorted set,
  and an ended run is never admitted again, so a second ``ZREM`` after one that took it out
  finds nothing, and never removes another run's slot.
- ``notice:<approval id>`` (``FINISH_NOTICE``): the approvers told that the approval is
  cancelled, its reason naming the dropped job, through the approval desk's channel. A notice
  delivered is audited (``notification.sent``) and a retry does not send it again
  (``Store.approval_notice_sent``); one the channel did not take is audited
  (``notification.failed``) and sent at the next attempt. A worker that dies between a
  delivery and its row sends it once more: at least once. With no approval desk or notifier
  configured there is nobody to tell.

Redis or the channel not answering: a retry, not counted as a failure (waiting is not
failing), after ``guards_down_retry_s`` or ``NOTICE_RETRY_S`` (the worker's backoff may make it
longer); what was done stays done. The store not answering raises, and the worker releases the
job as for any outage. The counts of the ended run and approvals (``remediator_runs_total``,
``remediator_approvals_total``) stay the drop's, made by the process that answered it: a
counter is its own process's, and the job may run on another replica.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from receiver.approvals.messages import Notice, NoticeKind
from receiver.approvals.notify import notice_name, send_recorded
from receiver.guards.policy import GuardUnavailable
from receiver.model import Disposition
from receiver.pipeline.budget import BudgetRefund
from receiver.pipeline.context import Deps
from receiver.store import FINISH_NOTICE, FINISH_REFUND

__all__ = ["NOTICE_RETRY_S", "finish_drop"]

# How long to wait before telling the approvers again when their channel did not take a
# notice (seconds): the channel's own retries (its HTTP policy) have been spent by then.
NOTICE_RETRY_S = 30.0


async def finish_drop(deps: Deps, run_id: str, payload: Mapping[str, Any], log: Any) -> Disposition:
    """The ``finish_drop`` job of run ``run_id``: give its unused budget slot back when
    ``payload`` asks (``FINISH_REFUND``), then tell the approvers of each approval it names
    (``FINISH_NOTICE``) that it is cancelled, as the module says. Done when both are; a retry
    naming what waits when Redis or the channel did not answer. Raises StoreUnavailable."""
    waiting: list[str] = []
    delay = 0.0
    if payload.get(FINISH_REFUND):
        try:
            refund = BudgetRefund(deps.store, deps.guards, deps.registry)
            await refund(run_id, log=log, raises=True)
        except GuardUnavailable as exc:
            log.warning("budget slot not given back yet: guards unavailable", error=str(exc))
            waiting.append(f"the budget slot, guards unavailable ({exc})")
            delay = deps.settings.guards_down_retry_s
    ids = sorted(key[len(FINISH_NOTICE) :] for key in payload if key.startswith(FINISH_NOTICE))
    not_taken = await _tell(deps, run_id, ids, log)
    if not_taken:
        waiting.append("the approvers' notice of " + "; ".join(not_taken))
        delay = max(delay, NOTICE_RETRY_S)
    if waiting:
        return Disposition.retry(delay, f"not done yet: {'; '.join(waiting)}; retried")
    return Disposition.done()


async def _tell(deps: Deps, run_id: str, ids: list[str], log: Any) -> list[str]:
    """Send the cancelled notice of each approval in ``ids`` not delivered yet; what the
    channel did not take (``approval <id>: <error>``), to be sent again."""
    desk = deps.approvals
    if desk is None or desk.notifier is None:
        if ids:
            log.info("approvals cancelled by a drop; no approvers' channel to tell", ids=ids)
        return []
    not_taken = []
    for approval_id in ids:
        approval = await deps.store.get_approval(approval_id)
        if approval is None:  # nothing left to say anything of
            continue
        notice = Notice(NoticeKind.CANCELLED, approval, buttons=desk.buttons)
        if await deps.store.approval_notice_sent(run_id, approval.id, notice_name(notice)):
            continue
        log.info("approval cancelled", approval_id=approval.id, reason=approval.reason)
        error = await send_recorded(desk.notifier, deps.store, notice, log)
        if error is not None:
            not_taken.append(f"approval {approval.id}: {error}")
    return not_taken
