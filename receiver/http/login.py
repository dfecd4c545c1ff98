"""Who may read the review pages, and the small login that lets a browser in.

The pages take an operator, as the API does, identified by the first of:

1. nothing at all configured (``REMEDIATOR_ALLOW_UNAUTHENTICATED`` with no credentials): open;
2. the SSO proxy's user header (``REMEDIATOR_SSO_USER_HEADER``), only from a peer in
   ``REMEDIATOR_SSO_TRUSTED_PROXIES``, as the approval pages believe it: anyone the proxy
   signed in may read;
3. the session cookie the login form sets (``receiver.review.sessions``: signed, HttpOnly,
   SameSite=Strict, Secure when the service is reached over https);
4. an operator's token as ``Authorization: Bearer`` (scripts, curl).

Anyone else gets 401 with the login form, and no data. ``POST login`` takes an operator token
(compared in constant time by the same ``Authenticator`` as the API) and sets the cookie;
``POST logout`` clears it and records it signed out (``receiver.store.signouts``): a copy of
the cookie kept elsewhere is refused from then on, on every replica, not only once it expires.
A page whose session cannot be looked up (the store down) is a 503 page: refused, not let in.
Both are same-origin only (Origin, or Fetch Metadata).

Every link and redirect is relative (``root_of``): behind a reverse proxy that serves the
service under a path prefix, the pages, their forms and the cookie (no Path attribute, so the
browser scopes it to the prefix) work as they are.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from receiver.approvals.identity import IdentityResolver
from receiver.http.auth import ANONYMOUS, Role
from receiver.http.bodies import BadField, form_of
from receiver.http.deps import AUTH, LOG, SETTINGS
from receiver.http.filters import BadParameter, check_query
from receiver.http.origins import same_origin
from receiver.http.responses import html_response
from receiver.review.loader import Review
from receiver.review.pages import ReviewPages
from receiver.review.sessions import SESSION_COOKIE, Sessions, session_digest
from receiver.review.text import duration_text
from receiver.store import StoreUnavailable

__all__ = [
    "LOGIN_PATHS",
    "REVIEW_WEB",
    "USER",
    "ReviewWeb",
    "add_login_routes",
    "page",
    "root_of",
    "signed_in",
]

# Where ``next`` may send a browser after signing in: a page of the review, relative.
# No segment starts with a dot: nothing climbs out of the review with "..". Always fullmatch:
# `$` would also match before a trailing newline, which no Location header can hold.
_NEXT = re.compile(r"(runs|incidents)(/[A-Za-z0-9_-][A-Za-z0-9._-]*){0,2}(\?[^\s#\\]*)?")
_DEFAULT_NEXT = "runs"

# Pages, not API routes: the middleware leaves their query to them (``_bad_query``).
LOGIN_PATHS = ("/login", "/logout")


@dataclass(frozen=True, slots=True)
class ReviewWeb:
    """What the review pages and the report API need. ``identities``: the SSO header (as the
    approval pages resolve it), None when there is no SSO."""

    review: Review
    sessions: Sessions
    identities: IdentityResolver | None = None


REVIEW_WEB = web.AppKey[ReviewWeb]("review_web")
PAGES = web.AppKey[ReviewPages]("review_pages")
USER: web.RequestKey[str] = web.RequestKey("review_user", str)


def root_of(request: web.Request) -> str:
    """The relative path from this page to the service's root: ``./`` for ``/runs``,
    ``../`` for ``/runs/{id}`` (from the route, so it holds under any prefix)."""
    resource = request.match_info.route.resource
    canonical = resource.canonical if resource is not None else request.path
    depth = canonical.count("/") - 1
    return "../" * depth if depth > 0 else "./"


def page(request: web.Request, name: str, status: int = 200, **values: Any) -> web.Response:
    """The page ``name``, with the security headers and a fresh nonce."""
    pages, user = request.app[PAGES], request.get(USER)
    return html_response(
        lambda nonce: pages.render(
            name,
            nonce=nonce,
            root=root_of(request),
            user=user,
            can_sign_out=user is not None and user != ANONYMOUS,
            **values,
        ),
        status,
    )


async def _who(request: web.Request) -> str | None:
    auth = request.app[AUTH]
    if auth.operators_open:
        return ANONYMOUS
    web_ = request.app[REVIEW_WEB]
    if web_.identities is not None:
        sso = web_.identities.from_sso(request.headers, request.remote)
        if sso is not None:
            return sso.name
    cookie = request.cookies.get(SESSION_COOKIE)
    name = web_.sessions.read(cookie)
    if (
        name is not None
        and cookie is not None
        and not await web_.review.store.session_signed_out(session_digest(cookie))
    ):
        return name
    header = request.headers.get("Authorization")
    if header:
        found = auth.identify(header)
        if found is not None and found.role is Role.OPERATOR:
            return found.name
    return None


def _next_here(request: web.Request) -> str:
    """This page, relative to the root: where signing in should lead back to."""
    here = str(request.rel_url).lstrip("/")
    return here if _NEXT.fullmatch(here) else _DEFAULT_NEXT


def _login_page(
    request: web.Request, status: int, next_page: str, message: str = ""
) -> web.Response:
    web_ = request.app[REVIEW_WEB]
    return page(
        request,
        "login",
        status,
        next=next_page,
        message=message,
        max_age=duration_text(web_.sessions.max_age_s),
        sso=web_.identities is not None and web_.identities.sso_header is not None,
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def signed_in(handler: Handler) -> Handler:
    """Wrap a page handler: an operator (``request[USER]``), or 401 with the login form."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            user = await _who(request)
        except StoreUnavailable:
            return _unavailable(request)
        if user is None:
            return _login_page(request, 401, _next_here(request))
        request[USER] = user
        return await handler(request)

    return wrapped


def _unavailable(request: web.Request) -> web.Response:
    """The error page (503) for a session that cannot be looked up or signed out."""
    return page(
        request,
        "error",
        503,
        code=503,
        message="The service cannot reach its store to check the session; try again shortly.",
    )


def _bad_query(request: web.Request) -> web.Response | None:
    """The login form (400) saying what is wrong with a query no route takes (U+0000, a
    %-escape that is not UTF-8, a parameter given twice: ``check_query``), else None. The
    middleware answered it as JSON, which a browser shows as text, with no form to go on."""
    try:
        check_query(request.query, request.rel_url.raw_query_string)
    except BadParameter as exc:
        return _login_page(request, 400, _DEFAULT_NEXT, exc.message)
    return None


async def get_login(request: web.Request) -> web.Response:
    """The login form (``?next=`` a review page to return to); a bad query is the form, 400,
    with the message."""
    if (bad := _bad_query(request)) is not None:
        return bad
    wanted = request.query.get("next", _DEFAULT_NEXT)
    return _login_page(request, 200, wanted if _NEXT.fullmatch(wanted) else _DEFAULT_NEXT)


def _see_other(location: str) -> web.Response:
    # A relative Location (RFC 9110 §10.2.2): resolved against this page, under any prefix.
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def _secure(request: web.Request) -> bool:
    return request.secure or request.app[SETTINGS].external_url.startswith("https://")


async def post_login(request: web.Request) -> web.StreamResponse:
    """An operator token in, a session cookie out, and back to the page asked for. A bad
    query is the form, 400, with the message, the token not read."""
    if (bad := _bad_query(request)) is not None:
        return bad
    if not same_origin(request, request.app[SETTINGS].external_url or None):
        return _login_page(request, 403, _DEFAULT_NEXT, "sign in from this service's own page")
    try:
        form = await form_of(request)
    except BadField as exc:
        return _login_page(request, 400, _DEFAULT_NEXT, exc.message)
    wanted = str(form.get("next") or _DEFAULT_NEXT)
    wanted = wanted if _NEXT.fullmatch(wanted) else _DEFAULT_NEXT
    token = str(form.get("operator_token") or "").strip()
    found = request.app[AUTH].identify(f"Bearer {token}") if token else None
    log = request.app[LOG]
    if found is None or found.role is not Role.OPERATOR:
        log.warning("review sign-in refused", source_ip=request.remote)
        return _login_page(request, 401, wanted, "unknown operator token")
    response = _see_other(root_of(request) + wanted)
    response.set_cookie(
        SESSION_COOKIE,
        request.app[REVIEW_WEB].sessions.issue(found.name),
        max_age=request.app[REVIEW_WEB].sessions.max_age_s,
        # No Path: the browser scopes the cookie to this page's directory, the service's root
        # under whatever prefix a proxy serves it at.
        path="",
        httponly=True,
        samesite="Strict",
        secure=_secure(request),
    )
    log.info("review sign-in", who=found.name, source_ip=request.remote)
    return response


async def post_logout(request: web.Request) -> web.StreamResponse:
    """Forget the session cookie; back to the login form. A bad query is the login form, 400,
    with the message, the cookie kept."""
    if (bad := _bad_query(request)) is not None:
        return bad
    if not same_origin(request, request.app[SETTINGS].external_url or None):
        return _login_page(request, 403, _DEFAULT_NEXT, "sign out from this service's own page")
    web_ = request.app[REVIEW_WEB]
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie is not None and (name := web_.sessions.read(cookie)) is not None:
        # Recorded before the browser is told to forget it: a sign-out the store could not
        # take says so, rather than leave a copy of the cookie good while it looks done.
        try:
            await web_.review.store.sign_out_session(
                session_digest(cookie), web_.sessions.max_age_s
            )
        except StoreUnavailable:
            return _unavailable(request)
        request.app[LOG].info("review sign-out", who=name)
    response = _see_other(root_of(request) + "login")
    response.del_cookie(SESSION_COOKIE, path="", secure=_secure(request), samesite="Strict")
    return response


def add_login_routes(app: web.Application, review: ReviewWeb) -> None:
    """The login routes, and what every review page finds on the app."""
    app[REVIEW_WEB] = review
    app[PAGES] = ReviewPages()
    login, logout = LOGIN_PATHS
    app.router.add_get(login, get_login)
    app.router.add_post(login, post_login)
    app.router.add_post(logout, post_logout)
