"""The approval link's confirmation page, and what the approval routes share.

    GET  /approve/{token}    the confirmation page; changes nothing
    POST /approve/{token}    the decision (CSRF token, session cookie, Origin)

Who decides is never taken from the link: the page needs an operator token or the SSO proxy's
header (``receiver.approvals.identity``). A link past its expiry opens nothing; a decision sent
from one is refused by the desk, which records who sent it (``approval.refused``), as an
expired approval's. The API and Slack's callback are ``receiver.http.approvals``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import MultiDict, MultiMapping

from receiver.approvals.desk import ApprovalDesk
from receiver.approvals.identity import IdentityResolver
from receiver.approvals.page import (
    SESSION_COOKIE,
    CsrfTokens,
    PageRenderer,
    new_session,
    view_of,
)
from receiver.approvals.slack import SlackInteractions
from receiver.approvals.state import (
    ApprovalError,
    Channel,
    Decision,
    FormRefused,
    Origin,
    why_not_pending,
)
from receiver.approvals.tokens import TokenClaims, link_expired
from receiver.http.bodies import MAX_REASON_CHARS, BadField, form_of, text_field
from receiver.http.deps import CLOCK
from receiver.http.filters import BadParameter, check_query
from receiver.http.origins import same_origin
from receiver.http.responses import html_response
from receiver.model import ApprovalRecord, ApprovalState
from receiver.store import StoreUnavailable
from receiver.text import header_text

__all__ = ["APPROVAL_WEB", "PAGES", "ApprovalWeb", "get_page", "origin_of", "post_page"]


@dataclass(frozen=True, slots=True)
class ApprovalWeb:
    """What the approval routes need: the desk, how to tell who is asking, Slack (optional)."""

    desk: ApprovalDesk
    identities: IdentityResolver
    slack: SlackInteractions | None = None


APPROVAL_WEB = web.AppKey[ApprovalWeb]("approval_web")
PAGES = web.AppKey[PageRenderer]("approval_pages")


def _page(request: web.Request, name: str, status: int = 200, **values: Any) -> web.Response:
    pages = request.app[PAGES]
    return html_response(lambda nonce: pages.render(name, nonce=nonce, **values), status)


def _error_page(request: web.Request, message: str, status: int) -> web.Response:
    return _page(request, "error", status, message=message)


async def _open(
    request: web.Request, *, expired_ok: bool = False
) -> tuple[ApprovalRecord, TokenClaims] | web.Response:
    """The link's approval and claims, or the error page: a query no route takes (U+0000, a
    %-escape that is not UTF-8, a parameter given twice; before the token is looked at, as the
    middleware did, whose JSON a browser shows as text), a link that does not open (or has
    expired, unless ``expired_ok``), a store out of reach."""
    try:
        check_query(request.query, request.rel_url.raw_query_string)
        token = request.match_info["token"]
        return await request.app[APPROVAL_WEB].desk.open_link(token, expired_ok=expired_ok)
    except BadParameter as exc:
        return _error_page(request, exc.message, 400)
    except ApprovalError as exc:
        return _error_page(request, exc.message, exc.status)
    except StoreUnavailable:
        return _error_page(request, "the service cannot reach its store; try again", 503)


async def get_page(request: web.Request) -> web.Response:
    """The confirmation page. Reads only: a link opened by a chat unfurler or a mail scanner
    decides nothing, and the token is not used up."""
    opened = await _open(request)
    if isinstance(opened, web.Response):
        return opened
    approval, _ = opened
    approvals = request.app[APPROVAL_WEB]
    session = request.cookies.get(SESSION_COOKIE) or new_session()
    response = _render(request, approval, session)
    response.set_cookie(
        SESSION_COOKIE,
        session,
        httponly=True,
        samesite="Strict",
        secure=(approvals.desk.public_url or "").startswith("https://"),
        # No Path: the browser scopes the cookie to the link's directory, ``/approve`` under
        # whatever prefix a proxy serves it at. ``Path=/approve/`` was never sent behind a
        # prefix (``/remediator/approve/...``), and every decision was refused as a form from
        # elsewhere.
        path="",
    )
    return response


def _render(
    request: web.Request,
    approval: ApprovalRecord,
    session: str,
    *,
    status: int = 200,
    message: str = "",
    kind: str = "info",
) -> web.Response:
    approvals = request.app[APPROVAL_WEB]
    sso = approvals.identities.from_sso(request.headers, request.remote)
    csrf = _csrf(approvals)
    token = csrf.issue(approval.id, session, sso.name if sso else "") if csrf else ""
    view = view_of(
        approval,
        can_decide=csrf is not None,
        who=sso.name if sso else None,
        csrf=token,
        message=message,
        message_kind=kind,
    )
    return _page(request, "approval", status, v=view, max_reason=MAX_REASON_CHARS)


def _csrf(approvals: ApprovalWeb) -> CsrfTokens | None:
    tokens = approvals.desk.tokens
    return None if tokens is None else CsrfTokens(tokens.ring)


def origin_of(request: web.Request, channel: Channel, token_id: str | None = None) -> Origin:
    """Where a decision comes from: the client's address (through trusted proxies), its
    User-Agent and, from a link's page, the link token's id. Both headers are the client's
    word, recorded as sent but for bytes that are not UTF-8 (``header_text``): one in a
    User-Agent failed the decision with a 500, nothing decided."""
    source_ip = request.app[APPROVAL_WEB].identities.source_ip(request.headers, request.remote)
    agent = request.headers.get("User-Agent")
    return Origin(
        channel,
        None if source_ip is None else header_text(source_ip),
        None if agent is None else header_text(agent),
        token_id,
    )


async def post_page(request: web.Request) -> web.Response:
    """The decision from the confirmation page's form. One sent from an expired link is
    refused by the desk, which records who sent it (``approval.refused``); refused before the
    desk knows who (no CSRF token, another site, an unknown operator token), it is answered
    as the link's GET is: 410, its expiry."""
    opened = await _open(request, expired_ok=True)
    if isinstance(opened, web.Response):
        return opened
    approval, claims = opened
    answer = await _post_form(request, approval, claims)
    tokens = request.app[APPROVAL_WEB].desk.tokens
    if answer.status in (200, 410) or tokens is None or not tokens.expired(claims):
        return answer
    return _error_page(request, link_expired(claims).message, 410)


async def _post_form(
    request: web.Request, approval: ApprovalRecord, claims: TokenClaims
) -> web.Response:
    """``post_page`` for the link's ``approval`` and ``claims``: the form checked, then the
    desk's decision, and the page that says how it went."""
    approvals = request.app[APPROVAL_WEB]
    if not same_origin(request, approvals.desk.public_url):
        refused = FormRefused("the decision must come from this service's own page")
        await _record_refusal(request, claims, refused)
        return _error_page(request, refused.message, refused.status)
    try:
        form = await form_of(request)
    except BadField as exc:
        return _error_page(request, exc.message, 400)
    session = request.cookies.get(SESSION_COOKIE, "")
    sso = approvals.identities.from_sso(request.headers, request.remote)
    csrf = _csrf(approvals)
    given = str(form.get("csrf") or "")
    if csrf is None or not csrf.check(given, approval.id, session, sso.name if sso else ""):
        now = request.app[CLOCK]()
        if approval.state is not ApprovalState.PENDING or approval.expires_at <= now:
            # Its page carried no form to send (decided, expired or cancelled): say that, not
            # that the form expired. The link alone opens this page anyway.
            why = why_not_pending(approval, now, alert_resolved=False)
            await _record_refusal(request, claims, why, form)
            return _render(
                request, approval, session, status=why.status, message=why.message, kind="error"
            )
        refused = FormRefused(
            "this form has expired or was not sent from the page; open the link again"
        )
        await _record_refusal(request, claims, refused, form)
        return _error_page(request, refused.message, refused.status)
    identity = sso or approvals.identities.from_token(str(form.get("operator_token") or ""))
    if identity is None:
        return _render(
            request, approval, session, status=401, message="unknown operator token", kind="error"
        )
    try:
        decision = Decision(str(form.get("decision") or ""))
    except ValueError:
        return _render(request, approval, session, status=400, message="choose approve or reject")
    try:
        reason = text_field(form.get("reason"), "reason", max_chars=MAX_REASON_CHARS)
    except BadField as exc:
        return _render(request, approval, session, status=400, message=exc.message, kind="error")
    origin = origin_of(request, Channel.WEB, claims.jti)
    try:
        decided = await approvals.desk.decide(
            approval.id,
            decision,
            identity,
            origin,
            reason=reason,
            plan_hash=claims.plan_hash,
            link=claims,
        )
    except ApprovalError as exc:
        current = await approvals.desk.store.get_approval(approval.id) or approval
        return _render(
            request, current, session, status=exc.status, message=exc.message, kind="error"
        )
    text = (
        f"Approved by {identity.name}: the step runs once its guards and its target still agree."
        if decided.state is ApprovalState.APPROVED
        else f"Rejected by {identity.name}: the run ends here."
    )
    return _render(request, decided, session, message=text, kind="ok")


async def _record_refusal(
    request: web.Request,
    claims: TokenClaims,
    why: ApprovalError,
    form: MultiMapping[str] | None = None,
) -> None:
    """Record a decision the page's checks refused before the desk was asked (``why``: sent
    from another site, a form without this session's CSRF token) as ``approval.refused``,
    when who sent it is known: the SSO proxy's user, or the operator whose token the form
    (``form``, else the request's, read here) carries. Such refusals left no trace: the
    reviewer saw neither an operator's click from another address of the service nor a
    forged form the SSO proxy named someone in. Nobody known (no credential: anyone can
    send that), or no decision in the form, nothing is written."""
    approvals = request.app[APPROVAL_WEB]
    if form is None:
        try:
            form = await form_of(request)
        except BadField:
            form = MultiDict()
    try:
        decision = Decision(str(form.get("decision") or ""))
    except ValueError:
        return
    identity = approvals.identities.from_sso(request.headers, request.remote)
    identity = identity or approvals.identities.from_token(str(form.get("operator_token") or ""))
    if identity is not None:
        origin = origin_of(request, Channel.WEB, claims.jti)
        await approvals.desk.refuse_at_edge(claims.approval_id, decision, identity, origin, why)
