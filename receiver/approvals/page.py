"""The confirmation page behind an approval link: its view model and its CSRF token.

The page shows what a person must know to decide: what will be done (the previewed change), to
what, why (the alert, its annotations and links), the state before and after, the conditions
the change is bound to, and when the approval expires. Templates are files
(``templates/*.html``, jinja2 with autoescaping) that extend the service's one page skeleton,
rendered with a per-response nonce for the one inline stylesheet: the Content-Security-Policy
(``receiver.webpages.security_headers``) allows nothing else.

CSRF (OWASP's synchronizer token pattern): the form carries a token that is an itsdangerous
signature over (approval id, the browser's session cookie, the person's SSO name if any), made
with the link keys; a POST must bring the same cookie and token, and an Origin equal to the
service's own.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from itsdangerous import BadSignature

from receiver.approvals.messages import alert_links
from receiver.approvals.tokens import KeyRing
from receiver.model import ApprovalRecord, ApprovalState
from receiver.text import address, visible
from receiver.unreadable import UnreadableTime, unreadable_text
from receiver.webpages import template_environment

__all__ = [
    "SESSION_COOKIE",
    "CsrfTokens",
    "PageRenderer",
    "PageView",
    "view_of",
]

SESSION_COOKIE = "remediator_approval_session"
_CSRF_SALT = "approval-csrf-v1"


class CsrfTokens:
    """Synchronizer tokens bound to (approval, session, person), signed with the link keys
    (the newest signs, every listed key verifies, as for the links)."""

    def __init__(self, ring: KeyRing) -> None:
        self._ring = ring

    def issue(self, approval_id: str, session: str, who: str) -> str:
        kid = self._ring.signing_kid
        signed = self._ring.serializer(kid).dumps([_CSRF_SALT, approval_id, session, who])
        assert isinstance(signed, str)
        return f"{kid}.{signed}"

    def check(self, token: str, approval_id: str, session: str, who: str) -> bool:
        kid, _, signed = token.partition(".")
        if not session or kid not in self._ring:
            return False
        try:
            value = self._ring.serializer(kid).loads(signed)
        except BadSignature:
            return False
        return bool(value == [_CSRF_SALT, approval_id, session, who])


def new_session() -> str:
    return secrets.token_urlsafe(24)


@dataclass(frozen=True, slots=True)
class PageView:
    """Everything the template shows; plain strings and lists, escaped by jinja2."""

    approval_id: str
    run_id: str
    state: str
    summary: str
    action: str
    risk: str
    target: str
    rule: str
    alertname: str
    why: str
    labels: list[tuple[str, str]]
    links: list[tuple[str, str, str]]  # label, the link's target (``address``), shown
    before: str
    after: str
    preconditions: str
    requested_at: str
    expires_at: str
    plan_hash: str
    decided: str = ""
    # The form: shown only while pending; who the SSO proxy says the person is, if known.
    can_decide: bool = False
    # False for a plan that cannot be read: it may only be rejected (state.undecidable).
    can_approve: bool = True
    who: str | None = None
    csrf: str = ""
    message: str = ""
    message_kind: str = "info"
    extra: Mapping[str, Any] = field(default_factory=dict)


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) if value else "—"


def _when(value: datetime | None) -> str:
    if isinstance(value, UnreadableTime):
        return value.shown
    return value.isoformat(timespec="seconds") if value else ""


def view_of(
    approval: ApprovalRecord,
    *,
    can_decide: bool,
    who: str | None = None,
    csrf: str = "",
    message: str = "",
    message_kind: str = "info",
) -> PageView:
    """The page's view of ``approval``. A plan or context that cannot be read (edited since it
    was written: ``ApprovalRecord.unreadable``) is shown empty, and said in its message; a
    plan that cannot be read is offered for reject only (``state.undecidable``)."""
    plan, context = approval.plan, approval.context
    can_approve = "plan" not in approval.unreadable
    if note := unreadable_text(approval.unreadable):
        pending = approval.state is ApprovalState.PENDING
        last = "" if can_approve or not pending else "it cannot be approved: reject it"
        message = "; ".join(p for p in (message, note, last) if p)
        message_kind = "error"
    annotations = context.get("annotations") or {}
    t = approval.target
    decided = ""
    if approval.state is not ApprovalState.PENDING:
        by = f" by {approval.decided_by}" if approval.decided_by else ""
        when = f" at {_when(approval.decided_at)}" if approval.decided_at else ""
        reason = f": {approval.reason}" if approval.reason else ""
        decided = f"{approval.state.value}{by}{when}{reason}"
    # What comes from the alert (its labels are in the summary, the target, the plan) reads
    # as written: a bidi override shows as <U+202E>, not as text running backwards.
    labels = (context.get("labels") or {}).items()
    return PageView(
        approval_id=approval.id,
        run_id=approval.run_id,
        state=approval.state.value,
        summary=visible(str(plan.get("summary") or approval.action)),
        action=approval.action,
        risk=approval.risk,
        target=visible(f"{t.kind} {t.namespace}/{t.name}" if t.namespace else f"{t.kind} {t.name}"),
        rule=approval.rule,
        alertname=visible(str(context.get("alertname") or "")),
        why=visible(str(annotations.get("summary") or annotations.get("description") or "")),
        labels=sorted((visible(str(k)), visible(str(v))) for k, v in labels),
        links=[(label, address(url), visible(url)) for label, url in alert_links(context)],
        before=visible(_pretty(plan.get("before"))),
        after=visible(_pretty(plan.get("after"))),
        preconditions=visible(_pretty(plan.get("preconditions"))),
        requested_at=_when(approval.requested_at),
        expires_at=_when(approval.expires_at),
        plan_hash=approval.plan_hash,
        decided=visible(decided),
        can_decide=can_decide and approval.state is ApprovalState.PENDING,
        can_approve=can_approve,
        who=who,
        csrf=csrf,
        message=message,
        message_kind=message_kind,
    )


class PageRenderer:
    """Renders ``templates/<name>.html``; built once, templates loaded by name."""

    def __init__(self) -> None:
        self._env = template_environment("receiver.approvals")

    def render(self, name: str, *, nonce: str, **values: Any) -> str:
        """The page ``name`` with ``values``; ``nonce`` marks the inline stylesheet."""
        return self._env.get_template(f"{name}.html").render(nonce=nonce, **values)
