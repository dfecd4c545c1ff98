"""Approvals over HTTP: the link's confirmation page, the API, the Slack callback.

    GET  /approve/{token}                   the confirmation page; changes nothing
    POST /approve/{token}                   the decision (CSRF token, session cookie, Origin)
    GET  /api/v1/approvals                  filters: state, rule, run, since, limit
    GET  /api/v1/approvals/{id}
    POST /api/v1/approvals/{id}/approve     {"reason": "..."} optional
    POST /api/v1/approvals/{id}/reject
    POST /hooks/slack/interactions          Slack's signed button callbacks

Who decides is never taken from the link: the page (``receiver.http.approval_page``) and the
API need an operator token or the SSO proxy's header, Slack a verified interaction
(``receiver.approvals.identity``, ``.slack``).
The API authenticates by itself (operators, not the webhook credential): no or an unknown
credential is 401, the webhook credential 403, as on every other /api/ route. A store that is
out of reach is 503.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from receiver.approvals.desk import LINK_PATH
from receiver.approvals.page import PageRenderer
from receiver.approvals.policy import Identity
from receiver.approvals.slack import SlackPayloadError
from receiver.approvals.state import ApprovalError, Channel, CrossSite, Decision, NotAllowed
from receiver.http.approval_page import (
    APPROVAL_WEB,
    PAGES,
    ApprovalWeb,
    get_page,
    origin_of,
    post_page,
)
from receiver.http.auth import Role
from receiver.http.bodies import BadField, bad_field, json_object, reason_of
from receiver.http.deps import AUTH, CLOCK
from receiver.http.filters import (
    BadParameter,
    choice,
    limit_param,
    parse_since,
    run_id_param,
    text_param,
    unknown_parameter,
)
from receiver.http.origins import cross_site, same_origin
from receiver.http.responses import json_response, row
from receiver.model import ApprovalState
from receiver.store import StoreUnavailable

__all__ = ["APPROVALS_API", "SLACK_PATH", "ApprovalWeb", "add_approval_routes", "same_origin"]

APPROVALS_API = "/api/v1/approvals"
SLACK_PATH = "/hooks/slack/interactions"


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
    origin = origin_of(request, Channel.API)
    approval_id = request.match_info["approval_id"]
    if identity.via == "sso" and cross_site(request, approvals.desk.public_url):
        # No token the attacker lacks: the proxy's cookie and header ride along by themselves.
        # Asked before the body is read: a forged form's body is no JSON, and its refusal must
        # be this one (audited), not a 400 about the body.
        refusal = await approvals.desk.refuse_at_edge(
            approval_id, decision, identity, origin, CrossSite()
        )
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
    origin = origin_of(request, Channel.SLACK)
    allowed = approvals.slack.team_allowed(action)
    identity = approvals.slack.identity(action) if allowed else None
    if identity is None:
        # Another workspace the app is installed in (signed with the app's one secret), or
        # a user no approver is mapped to. Slack vouches for the click (its signature): it is
        # recorded beside the approval it aimed at, under the Slack user's own id.
        refusal = NotAllowed(
            f"Slack team {action.team_id or '(none)'} is not one approvals come from"
            if not allowed
            else f"Slack user {action.user_id} is not mapped to an approver"
        )
        subject = f"{action.team_id or '(none)'}/{action.user_id}"
        who = Identity(f"Slack user {subject}", "slack", subject)
        await approvals.desk.refuse_at_edge(
            action.approval_id, action.decision, who, origin, refusal
        )
        return json_response({"error": refusal.message}, refusal.status)
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
