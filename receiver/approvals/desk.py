"""The approval desk: ask for an approval, take a decision, end what is no longer wanted.

One object, given the store, the link tokens (None: no links), a notifier (None: no
notifications), the approvers' allow-lists and the service's public URL, used by the pipeline
(request, gate, expire, cancel, supersede) and by the HTTP edge (verify a link, decide). The
store makes every move atomic; the desk adds who may, and tells people.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from receiver.approvals.messages import Notice, NoticeKind
from receiver.approvals.notify import ApprovalNotifier, NoticeSends, notice_name, send_recorded
from receiver.approvals.plan import StepRequest
from receiver.approvals.policy import ApproverPolicy, Identity
from receiver.approvals.state import (
    ApprovalError,
    ApprovalNotFound,
    Decision,
    Gate,
    Origin,
    PlanMismatch,
    refusal_data,
    undecidable,
    why_not_pending,
)
from receiver.approvals.tokens import LinkTokens, TokenClaims, link_expired
from receiver.config.settings import APPROVAL_TTL_S
from receiver.model import ApprovalRecord, ApprovalState, RunOutcome
from receiver.store import JobKind, LeaseFence, RunRecord, Store, describe
from receiver.telemetry import Metrics

__all__ = ["LINK_PATH", "ApprovalDesk", "Gate", "StepRequest"]

# The confirmation page of a link: ``{public_url}/approve/{token}``.
LINK_PATH = "/approve/"

_NOTICE_OF_STATE = {
    ApprovalState.APPROVED: NoticeKind.APPROVED,
    ApprovalState.REJECTED: NoticeKind.REJECTED,
    ApprovalState.EXPIRED: NoticeKind.EXPIRED,
    ApprovalState.CANCELLED: NoticeKind.CANCELLED,
}


class ApprovalDesk:
    """See the module docstring. ``ttl_s``: how long an approval stays open."""

    def __init__(
        self,
        store: Store,
        *,
        policy: ApproverPolicy,
        tokens: LinkTokens | None = None,
        notifier: ApprovalNotifier | None = None,
        public_url: str | None = None,
        ttl_s: float = APPROVAL_TTL_S,
        buttons: bool = False,
        log: Any = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.tokens = tokens
        self.notifier = notifier
        self.public_url = public_url.rstrip("/") if public_url else None
        self.ttl_s = ttl_s
        self.buttons = buttons
        self._log = log or structlog.get_logger("remediator.approvals")
        self._metrics = metrics
        self._notice_sends = NoticeSends(self._log)  # shared with the copies ``over`` makes
        # Told the id of each run an approval ended (expired, rejected, cancelled), to give back
        # its unused slot (pipeline/budget.py); a list ``over``'s copies share: the first set holds.
        self._ended: list[Callable[[str], Awaitable[None]]] = []

    @property
    def ended(self) -> Callable[[str], Awaitable[None]] | None:
        """Called with the id of each run an approval ended; None: nobody is told."""
        return self._ended[0] if self._ended else None

    @ended.setter
    def ended(self, hook: Callable[[str], Awaitable[None]] | None) -> None:
        self._ended[:] = [] if hook is None else [hook]

    async def _run_ended(self, run_id: str) -> None:
        """``ended(run_id)``, whose failure is logged: the decision stands whatever it says."""
        if self.ended is None:
            return
        try:
            await self.ended(run_id)
        except Exception as exc:
            self._log.warning("after the run ended at its approval", run_id=run_id, error=str(exc))

    def over(self, store: Store) -> ApprovalDesk:
        """This desk over another view of the same store (the routes' bounded one,
        ``Store.bounded``); this one is unchanged. Both share ``ended``."""
        desk = copy.copy(self)
        desk.store = store
        return desk

    def _count(self, approval: ApprovalRecord, state: str, run_outcome: str | None = None) -> None:
        """Count an approval's move (and the end of its run, when the move ended it)."""
        if self._metrics is None:
            return
        self._metrics.approval(approval.rule, state)
        if run_outcome is not None:
            self._metrics.run_finished(approval.rule, run_outcome)

    # -- the pipeline's side ------------------------------------------------------------------

    async def request(
        self, step: StepRequest, target: Any, lease: LeaseFence | None = None
    ) -> ApprovalRecord:
        """A pending approval of the step (the one already pending, if any); a new one is
        announced with its link. ``lease``: the claim it is asked under; LeaseLost, nothing
        stored or announced, once its owner lost it (receiver.store.fence)."""
        approval, created = await self.store.request_approval(
            run_id=step.run_id,
            step_idx=step.step_idx,
            rule=step.rule,
            target=target,
            action=step.action,
            risk=step.risk,
            plan=step.plan,
            plan_hash=step.plan_hash,
            context=step.context,
            ttl_s=self.ttl_s,
            lease=lease,
        )
        if created:
            self._count(approval, "requested")
            self._log.info(
                "approval requested",
                approval_id=approval.id,
                run_id=approval.run_id,
                step=approval.step_idx,
                plan_hash=approval.plan_hash,
                expires_at=approval.expires_at.isoformat(),
            )
            await self.notify(NoticeKind.REQUESTED, approval)
        return approval

    async def gate(self, run: RunRecord, *, undo: bool = False) -> str:
        """Whether a run parked for an approval goes through the stages again (``Gate``).

        Called by the resume job before any stage, so a wakeup that has nothing to act on
        (the expiry job of an undecided approval, a spurious resume) takes no guard. The held
        step may be one of the run's own steps (the run is ``awaiting_approval``) or of its
        escalation after a failed verification (the run stays ``failed``); with ``undo``, one
        of its on_resolved steps (phase ``resolve``: the run keeps whatever outcome it has)."""
        if not undo and run.outcome not in (RunOutcome.AWAITING_APPROVAL, RunOutcome.FAILED):
            return Gate.GO
        waiting = [s for s in run.steps if s.outcome == "awaiting_approval"]
        held = next((s for s in waiting if (s.phase == "resolve") is undo), None)
        if held is None:
            return Gate.GO
        latest = await self.store.latest_approval(run.id, held.idx)
        if latest is None or latest.state in (ApprovalState.APPROVED, ApprovalState.SUPERSEDED):
            return Gate.GO
        if latest.state is not ApprovalState.PENDING:
            return Gate.ENDED
        if await self.expire(run.id):
            return Gate.ENDED
        # Woken early: send the request no channel took (``notify``), wake again at its expiry.
        await self.announce_undelivered(latest)
        remaining = (latest.expires_at - await self.store.server_now()).total_seconds()
        await self.store.enqueue_job(JobKind.RESUME_RUN, run.id, delay_s=max(0.0, remaining))
        return Gate.WAIT

    async def expire(self, run_id: str | None = None) -> list[ApprovalRecord]:
        """Expire what is due (of one run, or all) and say so. The store queues, with each
        expiry (as with a rejection and a cancellation), a ``finish_end`` job that gives
        the slot back and sends the notice when ``ended`` or the notice fails here."""
        expired = await self.store.expire_approvals(run_id=run_id)
        for approval in expired:
            self._count(approval, "expired", RunOutcome.EXPIRED.value)
            self._log.info("approval expired", approval_id=approval.id, run_id=approval.run_id)
            await self._run_ended(approval.run_id)
            await self.notify(NoticeKind.EXPIRED, approval)
        return expired

    async def cancel(self, run_id: str) -> list[ApprovalRecord]:
        """The run's alert resolved: cancel its pending approvals and say so."""
        cancelled = await self.store.cancel_approvals(run_id)
        for approval in cancelled:
            self._count(approval, "cancelled", RunOutcome.CANCELLED.value)
            self._log.info("approval cancelled: the alert resolved", approval_id=approval.id)
            await self._run_ended(approval.run_id)
            await self.notify(NoticeKind.CANCELLED, approval)
        return cancelled

    async def withdrawn(self, approvals: list[ApprovalRecord]) -> None:
        """Approvals of on_resolved steps cancelled because their alert fired again
        (``Store.withdraw_undo``, ``Store.withdraw_refired_undo``, which say so in each
        ``reason``): counted, logged and announced. The run keeps its outcome: its undo is
        carried to the next resolution."""
        for approval in approvals:
            self._count(approval, "cancelled")
            self._log.info("approval cancelled: the alert fired again", approval_id=approval.id)
            await self.notify(NoticeKind.CANCELLED, approval)

    async def phase_ended(self, approvals: list[ApprovalRecord]) -> None:
        """Approvals cancelled because what they were for ended without them: a run's undo or
        escalation refused for good (``Store.end_phase``), its alert resolved before an
        escalation step or an approved step of the run ran (``Store.end_resolved_escalation``,
        ``Store.end_resolved_run``), the run refused on its way to its approved step (a
        pause: ``Store.record_refusal``); each ``reason`` says which. Counted, logged and
        announced. The store has ended the run already, where it ends. (Those an operator's
        drop cancelled are announced by its ``finish_end`` job: pipeline/finish_end.py;
        those ``end_resolved_run`` cancelled, by it too when this notice was not taken.)"""
        for approval in approvals:
            self._count(approval, "cancelled")
            self._log.info("approval cancelled", approval_id=approval.id, reason=approval.reason)
            await self.notify(NoticeKind.CANCELLED, approval)

    async def supersede(self, approval: ApprovalRecord, live_hash: str) -> None:
        """The approved plan no longer holds (live state changed since the preview)."""
        if await self.store.supersede_approval(approval.id, live_hash):
            self._count(approval, "superseded")
            self._log.warning(
                "approval superseded: the target changed since it was approved",
                approval_id=approval.id,
                approved_hash=approval.plan_hash,
                live_hash=live_hash,
            )
            await self.notify(NoticeKind.SUPERSEDED, approval)

    # -- the people's side --------------------------------------------------------------------

    def link(self, approval: ApprovalRecord) -> str | None:
        """The signed confirmation-page URL, when links are configured."""
        if self.tokens is None or self.public_url is None:
            return None
        token = self.tokens.issue(approval.id, approval.plan_hash, approval.expires_at)
        return f"{self.public_url}{LINK_PATH}{token}"

    async def open_link(
        self, token: str, *, expired_ok: bool = False
    ) -> tuple[ApprovalRecord, TokenClaims]:
        """The approval a link points to, if the link is valid (and unexpired, unless
        ``expired_ok``: ``decide`` refuses it then) and still for its plan. Raises
        TokenRefused, ApprovalExpired, ApprovalNotFound or PlanMismatch."""
        if self.tokens is None:
            raise ApprovalNotFound("approval links are not configured on this server")
        claims = self.tokens.verify(token, expired_ok=expired_ok)
        approval = await self.store.get_approval(claims.approval_id)
        if approval is None:
            raise ApprovalNotFound("this approval does not exist")
        if claims.plan_hash != approval.plan_hash:
            raise PlanMismatch("this link was issued for another plan; nothing was changed")
        return approval, claims

    async def decide(
        self,
        approval_id: str,
        decision: Decision,
        identity: Identity,
        origin: Origin,
        *,
        reason: str | None = None,
        plan_hash: str | None = None,
        link: TokenClaims | None = None,
    ) -> ApprovalRecord:
        """Approve or reject, once, as ``identity`` (from the page of ``link``, whose expiry
        refuses it as the approval's does). Raises ApprovalNotFound, NotAllowed (not on the
        allow-list), PlanUnreadable (an approve of a plan that cannot be read), or why it
        could not be decided (already decided, expired, alert resolved, another plan)."""
        approval = await self.store.get_approval(approval_id)
        if approval is None:
            raise ApprovalNotFound(f"no approval {approval_id}")
        refusal = undecidable(self.policy, approval, decision, identity)
        if refusal is not None:
            self._log.warning(
                "approval decision refused",
                approval_id=approval.id,
                who=identity.name,
                via=identity.via,
                decision=decision.value,
                why=refusal.message,
            )
            raise await self._refused(approval, decision, identity, origin, refusal)
        if link is not None and self.tokens is not None and self.tokens.expired(link):
            # Refused here, not by the link's own check, so that who tried is recorded.
            raise await self._refused(approval, decision, identity, origin, link_expired(link))
        decided = await self.store.decide_approval(
            approval.id,
            decision.state,
            by=identity.name,
            channel=origin.channel.value,
            source_ip=origin.source_ip,
            user_agent=origin.user_agent,
            token_id=origin.token_id,
            reason=reason,
            plan_hash=plan_hash,
        )
        if decided is None:
            why = await self._why_not(approval.id, plan_hash)
            raise await self._refused(approval, decision, identity, origin, why)
        rejected = decided.state is ApprovalState.REJECTED
        self._count(decided, decided.state.value, RunOutcome.REJECTED.value if rejected else None)
        if rejected:
            await self._run_ended(decided.run_id)
        self._log.info(
            "approval decided",
            approval_id=decided.id,
            run_id=decided.run_id,
            decision=decided.state.value,
            who=identity.name,
            via=identity.via,
            channel=origin.channel.value,
            plan_hash=decided.plan_hash,
        )
        await self._notice_sends.within(self.notify(_NOTICE_OF_STATE[decided.state], decided))
        return decided

    async def refuse_at_edge(
        self,
        approval_id: str,
        decision: Decision,
        identity: Identity,
        origin: Origin,
        why: ApprovalError,
    ) -> ApprovalError:
        """``why``, for a decision the HTTP edge refused before asking the desk (another
        site's; a link page's form without its CSRF token), recorded as ``approval.refused``
        when the approval exists: the reviewer sees who tried beside what they aimed at."""
        log = {"who": identity.name, "via": identity.via, "decision": decision.value}
        self._log.warning(
            "approval decision refused", approval_id=approval_id, why=why.message, **log
        )
        try:
            approval = await self.store.get_approval(approval_id)
        except Exception as exc:  # the refusal is the answer, whatever its record does
            self._log.error("could not record the refused decision", error=describe(exc))
            return why
        if approval is not None:
            await self._refused(approval, decision, identity, origin, why)
        return why

    async def _refused(
        self,
        approval: ApprovalRecord,
        decision: Decision,
        identity: Identity,
        origin: Origin,
        why: ApprovalError,
    ) -> ApprovalError:
        """Record a decision that was refused (``approval.refused``): who tried, how, from
        where, and why not (off the allow-list, decided already, expired, the alert
        resolved); returns ``why``, to be raised. Its failure is logged: the answer stands
        whatever it says."""
        try:
            await self.store.append_audit(
                "approval.refused",
                run_id=approval.run_id,
                data=refusal_data(approval, decision, identity, origin, why),
            )
        except Exception as exc:  # the refusal is the answer, whatever its record does
            self._log.error("could not record the refused decision", error=describe(exc))
        return why

    async def _why_not(self, approval_id: str, plan_hash: str | None) -> ApprovalError:
        current = await self.store.get_approval(approval_id)
        if current is None:
            return ApprovalNotFound(f"no approval {approval_id}")
        if plan_hash is not None and plan_hash != current.plan_hash:
            return PlanMismatch("this link was issued for another plan; nothing was changed")
        now = await self.store.server_now()
        resolved = await self.store.alert_resolved(current.run_id, current.step_idx)
        return why_not_pending(current, now, alert_resolved=resolved)

    async def announce_undelivered(self, approval: ApprovalRecord) -> None:
        """Send the request of the pending ``approval`` again when no channel took it (no
        ``notification.sent`` row: its process died before the channel answered, or the channel
        failed it, ``send_recorded`` queueing this wake). Raises StoreUnavailable when that
        cannot be read. A channel that took it may get it twice; untold, nobody decides."""
        if self.notifier is None:
            return
        name = notice_name(Notice(NoticeKind.REQUESTED, approval))
        if not await self.store.approval_notice_sent(approval.run_id, approval.id, name):
            self._log.info("approval request sent again", approval_id=approval.id)
            await self.notify(NoticeKind.REQUESTED, approval)

    async def notify(self, kind: NoticeKind, approval: ApprovalRecord) -> None:
        """Send one notice; a failure is logged, never raised (the approval stands). Sent or
        not, it is recorded in the audit log (``send_recorded``)."""
        if self.notifier is None:
            return
        notice = Notice(
            kind,
            approval,
            link=self.link(approval) if kind is NoticeKind.REQUESTED else None,
            buttons=self.buttons,
        )
        await send_recorded(self.notifier, self.store, notice, self._log)
