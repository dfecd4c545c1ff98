"""What follows the end of a run or of its approvals, once that end committed: the
``finish_end`` job.

The transaction that ends a run or an approval queues this job on the run
(receiver/store/finish.py): an operator's drop of the job a run waited on (``Queues.drop_item``:
``POST /api/v1/jobs/{id}/drop``, ``remediator jobs drop``; the job is due at once, and does all
of it), an approval approved (``Store.decide_approval``: the run goes on), expired, rejected, or
cancelled by its alert's resolution (``Approvals``, store/approval_ends.py), withdrawn because
its alert fired again (store/withdrawal.py) or superseded (``Store.supersede_approval``), a run
its alert's resolution overtook (``Store.end_resolved_run``, pipeline/overtaken.py) or a guard
refused as it was taken up again (``Store.record_refusal``), an escalation overtaken
(store/escalation_ends.py), stopped or refused for good (store/phase_stop.py).
Before, all of it was done in process after the commit: a crash, Redis
or the approvers' channel not answering in between lost it (the budget slot stayed spent for the
budget's window, the approvers' message said "waiting" for good, the target lock held the target
until ``guards.lock_ttl``). The paths other than the drop still do it at once (the usual case stays
immediate), and their job, due ``FINISH_AFTER_S`` later, finds it done; the HTTP drop releases the
target lock at once too, its job due at once finding it released or not. Its payload says what to
do:

- ``refund`` (``FINISH_REFUND``): the budget slot the run, or its escalation, drew given back
  when none of its steps may have acted (``BudgetRefund``, which decides from the run's
  records, failing closed). Idempotent: the slot is the run's id in the budget's sorted set,
  and an ended run is never admitted again, so a second ``ZREM`` after one that took it out
  finds nothing, and never removes another run's slot.
- ``notice:<approval id>`` (``FINISH_NOTICE``): the approvers told of the approval's end, the
  notice's kind read from its state (approved, expired, rejected, cancelled, superseded:
  replaced by a new request, ``Store.supersede_approval``), through the approval desk's
  channel. A notice delivered is audited (``notification.sent``) and a retry does not send it again
  (``Store.approval_notice_sent``); one the channel did not take is audited
  (``notification.failed``) and sent at the next attempt. A worker that dies between a
  delivery and its row sends it once more: at least once. With no approval desk or notifier
  configured there is nobody to tell.
- ``token:<token>`` and ``held_by_run``: the target lock given back by its exact token
  (compare-and-delete: never a later admission's), or held by the ended run under any token
  (``lock_release.release_queued``).

Redis, or a channel that did not answer (or answered 429/5xx): a retry, not counted as a
failure (waiting is not failing), after ``guards_down_retry_s`` or ``NOTICE_RETRY_S`` (the
worker's backoff may make it longer); what was done stays done. A channel that refused a
notice (4xx, a redirect: a wrong URL, a bad token) would refuse it at every retry: a failed
attempt (``NoticeRefused``, once the rest is done: while the slot or the lock still waits for
Redis, the refusal waits with them, so that a dead job never leaves them undone), so that
``worker.max_attempts`` of them make the job dead, listed for an operator; before, it was
retried for good, never counted.
The store not answering raises, and the worker releases the job as for any outage. The counts
of the ended run and approvals (``remediator_runs_total``, ``remediator_approvals_total``) stay
the ending process's: a counter is its own process's, and the job may run on another replica.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from receiver.approvals.messages import Notice, NoticeKind
from receiver.approvals.notify import notice_name, send_recorded
from receiver.guards.policy import GuardUnavailable
from receiver.model import ApprovalState, Disposition
from receiver.pipeline.budget import BudgetRefund
from receiver.pipeline.context import Deps
from receiver.pipeline.lock_release import GIVE_BACK, HELD_BY_RUN, release_queued
from receiver.store import FINISH_NOTICE, FINISH_REFUND

__all__ = ["NOTICE_RETRY_S", "NoticeRefused", "finish_end"]

# The notice of each state an approval ends in.
_NOTICE_OF_END = {
    ApprovalState.APPROVED: NoticeKind.APPROVED,
    ApprovalState.EXPIRED: NoticeKind.EXPIRED,
    ApprovalState.REJECTED: NoticeKind.REJECTED,
    ApprovalState.CANCELLED: NoticeKind.CANCELLED,
    ApprovalState.SUPERSEDED: NoticeKind.SUPERSEDED,
}

# How long to wait before telling the approvers again when their channel did not take a
# notice (seconds): the channel's own retries (its HTTP policy) have been spent by then.
NOTICE_RETRY_S = 30.0


class NoticeRefused(Exception):
    """The approvers' channel refused a notice (a 4xx or a redirect): sending it again as it
    is will not help. The message names the approvals and the channel's answer; fix the
    channel's URL or credentials (``notify.channels``), then retry the dead job."""


async def finish_end(deps: Deps, run_id: str, payload: Mapping[str, Any], log: Any) -> Disposition:
    """The ``finish_end`` job of run ``run_id``: give its unused budget slot back when
    ``payload`` asks (``FINISH_REFUND``), give back the target lock entries it names
    (``token:``, ``held_by_run``), then tell the approvers of each approval it names
    (``FINISH_NOTICE``) of its end, as the module says. Done when all are; a retry naming what
    waits when Redis or the channel did not answer. Raises NoticeRefused (after the rest was
    done) when the channel refused a notice, GuardError (a Lua error) and StoreUnavailable."""
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
    if any(key.startswith(GIVE_BACK) or key == HELD_BY_RUN for key in payload):
        released = await release_queued(deps, run_id, payload, log)
        if not released.is_done:
            waiting.append("the target lock, guards unavailable")
            delay = deps.settings.guards_down_retry_s
    ids = sorted(key[len(FINISH_NOTICE) :] for key in payload if key.startswith(FINISH_NOTICE))
    not_taken, refused = await _tell(deps, run_id, ids, log)
    if refused:
        said = (
            "the approvers' channel refused the notice of " + "; ".join(refused) + ": check "
            "its URL and credentials (notify.channels)"
        )
        if waiting:
            # Counted, the refusal would make the job dead with the slot or the lock still
            # waiting for Redis: it counts once they are done.
            why = f"not done yet: {'; '.join(waiting)}; and {said}; retried"
            return Disposition.retry(delay, why)
        raise NoticeRefused(said + "; retried, and dead after worker.max_attempts")
    if not_taken:
        waiting.append("the approvers' notice of " + "; ".join(not_taken))
        delay = max(delay, NOTICE_RETRY_S)
    if waiting:
        return Disposition.retry(delay, f"not done yet: {'; '.join(waiting)}; retried")
    return Disposition.done()


async def _tell(deps: Deps, run_id: str, ids: list[str], log: Any) -> tuple[list[str], list[str]]:
    """Send the notice of the end of each approval in ``ids`` not delivered yet; what the
    channel did not take (``approval <id>: <error>``), to be sent again, and what it refused
    (the same), which it would refuse again."""
    desk = deps.approvals
    if desk is None or desk.notifier is None:
        if ids:
            log.info("approvals ended; no approvers' channel to tell", ids=ids)
        return [], []
    not_taken: list[str] = []
    refused: list[str] = []
    for approval_id in ids:
        approval = await deps.store.get_approval(approval_id)
        kind = None if approval is None else _NOTICE_OF_END.get(approval.state)
        if approval is None or kind is None:  # nothing left to say anything of
            continue
        notice = Notice(kind, approval, buttons=desk.buttons)
        if await deps.store.approval_notice_sent(run_id, approval.id, notice_name(notice)):
            continue
        log.info(f"approval {kind.value}", approval_id=approval.id, reason=approval.reason)
        error = await send_recorded(desk.notifier, deps.store, notice, log)
        if error is not None:
            (refused if error.lasting else not_taken).append(f"approval {approval.id}: {error}")
    return not_taken, refused
