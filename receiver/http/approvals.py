"""Approvals over HTTP: the link's confirmation page, the API, the Slack callback.

    GET  /approve/{token}                   the confirmation page; changes nothing
    POST /approve/{token}                   the decision (CSRF token, session cookie, Origin)
    GET  /api/v1/approvals                  filters: state, rule, run, since, limit
    GET  /api/v1/approvals/{id}
    POST /api/v1/approvals/{id}/approve     {"reason": "..."} optional
    POST /api/v1/approvals/{id}/reject
    POST /hooks/slack/interactions          Slack's signed button callbacks

Who decides is never taken from the link: the page and the API need an operator token or the
SSO proxy's header, Slack a verified interaction (``receiver.approvals.identity``, ``.slack``).
The API authenticates by itself (operators, not the webhook credential): no or an unknown
credential is 401, the webhook credential 403, as on every other /api/ route. A store that is
out of reach is 503.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from receiver.approvals.desk import LINK_PATH, ApprovalDesk
from receiver.approvals.identity import IdentityResolver
from receiver.approvals.page import (
    SESSION_COOKIE,
    CsrfTokens,
    PageRenderer,
    new_session,
    view_of,
)
from receiver.approvals.policy import Identity
from receiver.approvals.slack import SlackInteractions, SlackPayloadError
from receiver.approvals.state import ApprovalError, Channel, Decision, Origin, why_not_pending
from receiver.approvals.tokens import TokenClaims
from receiver.http.auth import Role
from receiver.http.bodies import (
    MAX_REASON_CHARS,
    BadField,
    bad_field,
    form_of,
    json_object,
    reason_of,
    text_field,
)
from receiver.http.deps import AUTH, CLOCK
from receiver.http.filters import (
    BadParameter,
    check_query,
    choice,
    limit_param,
    parse_since,
    run_id_param,
    text_param,
    unknown_parameter,
)
from receiver.http.origins import cross_site, same_origin
from receiver.http.responses import html_response, json_response, row
from receiver.model import ApprovalRecord, ApprovalState
from receiver.store import StoreUnavailable

__all__ = ["APPROVALS_API", "SLACK_PATH", "ApprovalWeb", "add_approval_routes", "same_origin"]

APPROVALS_API = "/api/v1/approvals"
SLACK_PATH = "/hooks/slack/interactions"


@dataclass(frozen=True, slots=True)
class ApprovalWeb:
    """What the approval routes need: the desk, how to tell who is asking, Slack (optional)."""

    desk: ApprovalDesk
    identities: IdentityResolver
    slack: SlackInteractions | None = None


APPROVAL_WEB = web.AppKey[ApprovalWeb]("approval_web")
PAGES = web.AppKey[PageRenderer]("approval_pages")


def add_approval_routes(app: web.Application, approvals: ApprovalWeb) -> None:
    """Register the routes above on ``app``."""
    app[APPROVAL_WEB] = approvals
    app[PAGES] = PageRenderer()
    app.router.add_get(LINK_PATH + "{token}", get_page)
    app.router.add_post(LINK_PATH + "{token}", post_page)
    app.router.add_get(APPROVALS_API, list_approvals)
    app.router.add_get(APPROVALS_API + "/{approval_id}", get_approval)
    app.router.add_post(APPROVALS_API + "/{approval_id}/{decision}", post_decision)
    app.router.add_post(SLACK_PATH, post_slack)


# -- the confirmation page ---------------------------------------------------------------------


def _page(request: web.Request, name: str, status: int = 200, **values: Any) -> web.Response:
    pages = request.app[PAGES]
    return html_response(lambda nonce: pages.render(name, nonce=nonce, **values), status)


def _error_page(request: web.Request, message: str, status: int) -> web.Response:
    return _page(request, "error", status, message=message)


async def _open(request: web.Request) -> tuple[ApprovalRecord, TokenClaims] | web.Response:
    """The link's approval and claims, or the error page: a query no route takes (U+0000, a
    %-escape that is not UTF-8, a parameter given twice; before the token is looked at, as the
    middleware did, whose JSON a browser shows as text), a link that does not open, a store
    out of reach."""
    try:
        check_query(request.query, request.rel_url.raw_query_string)
        return await request.app[APPROVAL_WEB].desk.open_link(request.match_info["token"])
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


def _origin(request: web.Request, channel: Channel, token_id: str | None = None) -> Origin:
    """Where a decision comes from: the client's address (through trusted proxies), its
    User-Agent and, from a link's page, the link token's id."""
    source_ip = request.app[APPROVAL_WEB].identities.source_ip(request.headers, request.remote)
    return Origin(channel, source_ip, request.headers.get("User-Agent"), token_id)


async def post_page(request: web.Request) -> web.Response:
    """The decision from the confirmation page's form."""
    opened = await _open(request)
    if isinstance(opened, web.Response):
        return opened
    approval, claims = opened
    approvals = request.app[APPROVAL_WEB]
    if not same_origin(request, approvals.desk.public_url):
        return _error_page(request, "the decision must come from this service's own page", 403)
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
            return _render(
                request, approval, session, status=why.status, message=why.message, kind="error"
            )
        return _error_page(
            request, "this form has expired or was not sent from the page; open the link again", 403
        )
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
    origin = _origin(request, Channel.WEB, claims.jti)
    try:
        decided = await approvals.desk.decide(
            approval.id,
            decision,
            identity,
            origin,
            reason=reason,
            plan_hash=claims.plan_hash,
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


# -- the API -----------------------------------------------------------------------------------


def _caller(request: web.Request) -> Identity | web.Response:
    """The operator (or SSO user) asking, else the answer: 403 for a valid credential of the
    other role (the webhook's), 401 for none or an unknown one."""
    identity = request.app[APPROVAL_WEB].identities.from_headers(request.headers, request.remote)
    if identity is not None:
        return identity
    other = request.app[AUTH].authorize(request, Role.OPERATOR)
    if isinstance(other, web.Response) and other.status == 403:
        return other
    return json_response(
        {"error": "an operator token (or the SSO proxy's header) is required"},
        401,
        {"WWW-Authenticate": 'Bearer realm="remediator"'},
    )


ApiHandler = Callable[[web.Request, ApprovalWeb, Identity], Awaitable[web.Response]]


def _operator_api(handler: ApiHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An API route's shared answers: who asks first (401, 403: ``_caller``), then 503 when
    the store is out of reach."""

    async def wrapped(request: web.Request) -> web.Response:
        caller = _caller(request)
        if isinstance(caller, web.Response):
            return caller
        try:
            return await handler(request, request.app[APPROVAL_WEB], caller)
        except StoreUnavailable:
            return json_response({"error": "store unavailable"}, 503)

    return wrapped


@_operator_api
async def list_approvals(
    request: web.Request, approvals: ApprovalWeb, caller: Identity
) -> web.Response:
    """``{approvals: [...]}``, newest first; 400 names a bad parameter."""
    try:
        filters = _filters(request)
    except BadParameter as exc:
        return json_response({"error": exc.message, "parameter": exc.parameter}, 400)
    found = await approvals.desk.store.list_approvals(**filters)
    return json_response({"approvals": [row(a) for a in found]})


def _filters(request: web.Request) -> dict[str, Any]:
    query = request.query
    for name in query:
        if name not in ("state", "rule", "run", "since", "limit"):
            raise unknown_parameter(name)
    filters: dict[str, Any] = {}
    state = choice(query, "state", (s.value for s in ApprovalState))
    if state is not None:
        filters["state"] = ApprovalState(state)
    if (rule := text_param(query, "rule")) is not None:
        filters["rule"] = rule
    if (run_id := run_id_param(query, "run")) is not None:
        filters["run_id"] = run_id
    if "since" in query:
        try:
            filters["since"] = parse_since(query["since"], request.app[CLOCK]())
        except ValueError as exc:
            raise BadParameter("since", str(exc)) from None
    if "limit" in query:
        filters["limit"] = limit_param(query)
    return filters


@_operator_api
async def get_approval(
    request: web.Request, approvals: ApprovalWeb, caller: Identity
) -> web.Response:
    """``{approval}``; 404 for an unknown id."""
    approval_id = request.match_info["approval_id"]
    found = await approvals.desk.store.get_approval(approval_id)
    if found is None:
        return json_response({"error": f"no approval {approval_id}"}, 404)
    return json_response({"approval": row(found)})


@_operator_api
async def post_decision(
    request: web.Request, approvals: ApprovalWeb, identity: Identity
) -> web.Response:
    """Approve or reject as the operator whose token (or SSO name) the request carries."""
    try:
        decision = Decision(request.match_info["decision"])
    except ValueError:
        return json_response({"error": "use /approve or /reject"}, 404)
    origin = _origin(request, Channel.API)
    approval_id = request.match_info["approval_id"]
    if identity.via == "sso" and cross_site(request, approvals.desk.public_url):
        # No token the attacker lacks: the proxy's cookie and header ride along by themselves.
        # Asked before the body is read: a forged form's body is no JSON, and its refusal must
        # be this one (audited), not a 400 about the body.
        refusal = await approvals.desk.refuse_cross_site(approval_id, decision, identity, origin)
        return json_response({"error": refusal.message}, refusal.status)
    try:
        reason = reason_of(await json_object(request, fields=("reason",), required=False))
    except BadField as exc:
        return bad_field(exc)
    try:
        decided = await approvals.desk.decide(
            approval_id, decision, identity, origin, reason=reason
        )
    except ApprovalError as exc:
        return json_response({"error": exc.message}, exc.status)
    return json_response({"approval": row(decided)})


# -- Slack ---------------------------------------------------------------------------------


async def post_slack(request: web.Request) -> web.Response:
    """A button click from Slack: the signature over the raw body first, then the rest."""
    approvals = request.app[APPROVAL_WEB]
    if approvals.slack is None:
        return json_response({"error": "Slack interactivity is not configured"}, 404)
    body = await request.read()
    if not approvals.slack.verified(body, dict(request.headers)):
        return json_response({"error": "invalid or stale Slack signature"}, 401)
    try:
        action = approvals.slack.parse(body)
    except SlackPayloadError as exc:
        return json_response({"error": str(exc)}, 400)
    if not approvals.slack.team_allowed(action):
        # Signed with the app's secret, but from another workspace the app is installed in.
        team = action.team_id or "(none)"
        return json_response({"error": f"Slack team {team} is not one approvals come from"}, 403)
    identity = approvals.slack.identity(action)
    if identity is None:
        return json_response(
            {"error": f"Slack user {action.user_id} is not mapped to an approver"}, 403
        )
    origin = _origin(request, Channel.SLACK)
    try:
        decided = await approvals.desk.decide(action.approval_id, action.decision, identity, origin)
    except ApprovalError as exc:
        return json_response({"error": exc.message}, exc.status)
    return json_response(
        {
            "text": f"{decided.state.value.capitalize()} by {identity.name}",
            "replace_original": False,
        }
    )
