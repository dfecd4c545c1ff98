"""The approval state machine and its rules. Pure: no I/O, the clock passed in.

    pending --approve--> approved --(plan changed before it ran)--> superseded
       |  \\--reject--> rejected     \\--(an undo's alert fired again before it ran)--> cancelled
       |--(expires_at passed)--> expired
       \\--(alert resolved; an undo's alert fired again)--> cancelled

Only ``pending`` may be decided, once: the store's decision is one conditional UPDATE
(``WHERE state = 'pending' AND expires_at > now()``), and when it matches nothing,
``why_not_pending`` says why, in words for the person who tried.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from receiver.approvals.policy import ApproverPolicy, Identity
from receiver.model import ApprovalRecord, ApprovalState
from receiver.unreadable import unreadable_text

__all__ = [
    "FINAL",
    "AlertResolved",
    "AlreadyDecided",
    "ApprovalError",
    "ApprovalExpired",
    "ApprovalNotFound",
    "Channel",
    "CrossSite",
    "Decision",
    "FormRefused",
    "Gate",
    "NotAllowed",
    "Origin",
    "PlanMismatch",
    "PlanUnreadable",
    "UndoWithdrawn",
    "refusal_data",
    "undecidable",
    "why_not_pending",
]

# States from which nothing moves on (``approved`` still moves to ``superseded``, or to
# ``cancelled`` when an undo's alert fires again before it ran).
FINAL = frozenset(
    {
        ApprovalState.REJECTED,
        ApprovalState.EXPIRED,
        ApprovalState.CANCELLED,
        ApprovalState.SUPERSEDED,
    }
)


class Decision(StrEnum):
    """What an approver decides; ``state`` is the approval's state afterwards."""

    APPROVE = "approve"
    REJECT = "reject"

    @property
    def state(self) -> ApprovalState:
        return ApprovalState.APPROVED if self is Decision.APPROVE else ApprovalState.REJECTED


class Channel(StrEnum):
    """Where a decision came from, as audited."""

    WEB = "web"  # the confirmation page behind the link
    API = "api"  # POST /api/v1/approvals/{id}/approve|reject (the CLI uses it too)
    SLACK = "slack"  # a verified Slack interaction


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a decision was made from: recorded with it and in the audit log."""

    channel: Channel
    source_ip: str | None = None
    user_agent: str | None = None
    # Which link token was used (its ``jti``), for the web channel.
    token_id: str | None = None


class Gate:
    """What a resumed, parked run may do (``ApprovalDesk.gate``)."""

    GO = "go"  # through the stages: approved, or nothing asked for yet
    WAIT = "wait"  # still pending: nothing to do until it is decided or expires
    ENDED = "ended"  # expired now (or decided against before): the run is over


class ApprovalError(Exception):
    """A decision or a link that cannot be honoured. ``status`` is the HTTP status the edge
    answers with; ``message`` says what happened and what to do."""

    status = 409

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ApprovalNotFound(ApprovalError):
    status = 404


class NotAllowed(ApprovalError):
    """The identity is not on the approval's allow-list (for approve and reject alike)."""

    status = 403


class AlreadyDecided(ApprovalError):
    """Decided before (single use): says by whom, so a second click learns what happened."""

    def __init__(self, approval: ApprovalRecord) -> None:
        by = f" by {approval.decided_by}" if approval.decided_by else ""
        at = f" at {approval.decided_at.isoformat()}" if approval.decided_at else ""
        super().__init__(f"this step was already {approval.state.value}{by}{at}")
        self.approval = approval


class ApprovalExpired(ApprovalError):
    status = 410


class AlertResolved(ApprovalError):
    """The alert resolved: the step is no longer wanted."""


class UndoWithdrawn(ApprovalError):
    """An on_resolved step's approval cancelled because its alert fired again: the undo waits
    for the alert's next resolution, where its approval is asked for again."""


class PlanMismatch(ApprovalError):
    """The link was signed for another plan than the approval holds (tampered or stale)."""

    status = 403


class PlanUnreadable(ApprovalError):
    """The approval's plan cannot be read (edited in the database since it was written):
    what would be approved, and the preconditions its step is bound to, are unknown. It may
    only be rejected (``undecidable``)."""


def undecidable(
    policy: ApproverPolicy, approval: ApprovalRecord, decision: Decision, identity: Identity
) -> ApprovalError | None:
    """Why ``identity`` may not make ``decision`` on ``approval`` at all: NotAllowed off its
    allow-list (``policy``); PlanUnreadable for an approve of a plan that cannot be read
    (``ApprovalRecord.unreadable``: what would be approved is unknown, and the worker would
    fail the step anyway). None otherwise: a reject of such a plan may be made."""
    if not policy.allows(identity, approval.rule, approval.risk):
        return NotAllowed(
            f"{identity.name} may not decide steps of rule {approval.rule} (risk {approval.risk})"
        )
    why = approval.unreadable.get("plan")
    if decision is not Decision.APPROVE or why is None:
        return None
    return PlanUnreadable(
        f"this step cannot be approved: {unreadable_text({'its plan': why})}; what would be "
        "approved, and the preconditions its step is bound to, are unknown: reject it: its "
        "run then ends rejected"
    )


class CrossSite(ApprovalError):
    """A decision by the SSO proxy's user that the browser says another site sent: the proxy's
    cookie and user header ride along with any form a foreign page submits, so only where the
    request came from tells the operator's click from a forgery (``receiver.http.origins``)."""

    status = 403

    def __init__(self) -> None:
        super().__init__("a decision by the SSO proxy's user must not come from another site")


class FormRefused(ApprovalError):
    """A decision from a link's page whose form is not that page's as this browser was shown
    it: sent from another site, without its CSRF token or with another session's."""

    status = 403


def why_not_pending(
    approval: ApprovalRecord, now: datetime, *, alert_resolved: bool
) -> ApprovalError:
    """The error to answer when ``approval`` could not be decided at ``now``."""
    if approval.state is ApprovalState.EXPIRED or (
        approval.state is ApprovalState.PENDING and approval.expires_at <= now
    ):
        return ApprovalExpired(
            f"this approval expired at {approval.expires_at.isoformat()}; nothing was changed"
        )
    if approval.state is ApprovalState.CANCELLED and approval.reason:
        # Withdrawn: its alert fired again (``Store.withdraw_undo``, or, approved but not yet
        # acted on, ``Store.withdraw_refired_undo``).
        return UndoWithdrawn(f"this approval was cancelled: {approval.reason}; nothing was changed")
    if approval.state is ApprovalState.CANCELLED or (
        approval.state is ApprovalState.PENDING and alert_resolved
    ):
        return AlertResolved("the alert has resolved, so this step will not run")
    if approval.state is not ApprovalState.PENDING:
        return AlreadyDecided(approval)
    return ApprovalError("this approval could not be decided; reload the page and try again")


def refusal_data(
    approval: ApprovalRecord,
    decision: Decision,
    identity: Identity,
    origin: Origin,
    why: ApprovalError,
) -> dict[str, Any]:
    """The audit data of a refused decision (``approval.refused``): who tried, how, from
    where, and why not."""
    data = {
        "approval_id": approval.id,
        "step": approval.step_idx,
        "action": approval.action,
        "plan_hash": approval.plan_hash,
        "decision": decision.value,
        "by": identity.name,
        "via": identity.via,
        "channel": origin.channel.value,
        "source_ip": origin.source_ip,
        "user_agent": origin.user_agent,
        "token_id": origin.token_id,
        "why": why.message,
    }
    return {k: v for k, v in data.items() if v is not None}
