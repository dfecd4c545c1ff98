"""The review pages, server-rendered HTML for operators (``receiver.http.login`` says who):

GET /runs                           runs, newest first; filters alertname, rule, target,
                                    outcome, since; paging by cursor
GET /runs/{run_id}                  one run's timeline: the alert, the rule, each guard
                                    decision, approvals, steps with before/after, the end
GET /incidents                      the incidents of a window (from, to; default 24h)
GET /incidents/{incident_id}        every run of an incident on one timeline, with what
                                    was not done and why
GET /incidents/{incident_id}/report.md   that incident as Markdown, for a postmortem

A page answers a bad query with a page (``PAGE_PATHS``: the middleware, whose answer is JSON,
leaves their query to them): ``/runs`` and ``/incidents`` with their own, the message above
their form, and the others with the error page. Each checks first what every route refuses
(``check_query``: U+0000, a %-escape that is not UTF-8, a parameter given twice).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from receiver.http.deps import CLOCK, SETTINGS
from receiver.http.filters import (
    BadParameter,
    check_query,
    parse_since,
    run_filters,
    unknown_parameter,
)
from receiver.http.login import REVIEW_WEB, Handler, page, signed_in
from receiver.model import RunOutcome
from receiver.review.incidents import stamp
from receiver.review.loader import ReviewTooLarge
from receiver.review.markdown import render_markdown
from receiver.review.report import build_report, incident_report
from receiver.review.timeline import incident_timeline, links_of, run_timeline
from receiver.store import StoreUnavailable
from receiver.webpages import security_headers

__all__ = ["DEFAULT_WINDOW", "PAGE_PATHS", "add_page_routes", "window_of"]

# The paths of these pages and those below them: the middleware leaves their query to them.
PAGE_PATHS = ("/runs", "/incidents")

_RUN_FILTERS = ("alertname", "rule", "target", "outcome", "since")
DEFAULT_WINDOW = timedelta(hours=24)


def _error(request: web.Request, status: int, message: str) -> web.Response:
    return page(request, "error", status, code=status, message=message)


def _guarded(handler: Handler) -> Handler:
    """A page's handler whose store and review limits become error pages."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except StoreUnavailable:
            return _error(request, 503, "The service cannot reach its store; try again shortly.")
        except ReviewTooLarge as exc:
            return _error(request, 413, str(exc))

    return guarded


def _checked(request: web.Request) -> None:
    """BadParameter for a query no route takes (``check_query``)."""
    check_query(request.query, request.rel_url.raw_query_string)


def _no_query(handler: Handler) -> Handler:
    """A page that reads no query: one no route takes is the error page (400)."""

    async def checked(request: web.Request) -> web.StreamResponse:
        try:
            _checked(request)
        except BadParameter as exc:
            return _error(request, 400, exc.message)
        return await handler(request)

    return checked


@signed_in
@_guarded
async def runs_page(request: web.Request) -> web.Response:
    query = {k: v for k, v in request.query.items() if v.strip()}
    shown = {name: query.get(name, "") for name in _RUN_FILTERS}
    outcomes = [o.value for o in RunOutcome]
    try:
        _checked(request)
        filters = run_filters(query, request.app[CLOCK]())
        runs, cursor = await request.app[REVIEW_WEB].review.run_page(**filters)
    except (BadParameter, ValueError) as exc:
        message = exc.message if isinstance(exc, BadParameter) else str(exc)
        return page(
            request, "runs", 400, runs=[], filters=shown, outcomes=outcomes, message=message
        )
    next_page = None
    if cursor is not None:
        kept = {k: v for k, v in query.items() if k in (*_RUN_FILTERS, "limit")}
        next_page = "runs?" + urlencode({**kept, "cursor": cursor})
    return page(request, "runs", runs=runs, filters=shown, outcomes=outcomes, next_page=next_page)


@signed_in
@_no_query
@_guarded
async def run_page(request: web.Request) -> web.Response:
    review = request.app[REVIEW_WEB].review
    run_id = request.match_info["run_id"]
    run = await review.run(run_id)
    if run is None:
        return _error(request, 404, f"No run {run_id}.")
    try:
        incident = await review.incident_of(run)
    except ReviewTooLarge:
        incident = None  # the run's page stands without the link
    return page(
        request,
        "run",
        run=run,
        incident=incident,
        entries=run_timeline(run),
        labels=sorted((str(k), str(v)) for k, v in run.alert.labels.items()),
        links=links_of(run.alert),
        dry_run=run.dry_run or any(s.outcome == "dry_run" for s in run.steps),
    )


def window_of(query: Mapping[str, str], now: datetime) -> tuple[datetime, datetime]:
    """[from, to) of ``?from=&to=`` (RFC 3339 or a duration ago); BadParameter."""
    bounds = []
    for name, default in (("from", now - DEFAULT_WINDOW), ("to", now)):
        text = query.get(name, "").strip()
        try:
            bounds.append(parse_since(text, now) if text else default)
        except ValueError as exc:
            raise BadParameter(name, f"{name}: {exc}") from None
    start, end = bounds
    if not start < end:
        raise BadParameter("to", "the window must end after it starts")
    return start, end


@signed_in
@_guarded
async def incidents_page(request: web.Request) -> web.Response:
    review = request.app[REVIEW_WEB].review
    values: dict[str, Any] = {
        "window_from": request.query.get("from", ""),
        "window_to": request.query.get("to", ""),
        "gap": f"{review.gap_s / 60:g} minutes",
    }
    try:
        _checked(request)
        for name in request.query:
            # ?gap=10m or ?group_by=window (the report API's) were ignored without a word: the
            # page grouped by the default gap.
            if name not in ("from", "to"):
                raise unknown_parameter(name)
        start, end = window_of(request.query, request.app[CLOCK]())
    except BadParameter as exc:
        return page(request, "incidents", 400, incidents=[], message=exc.message, **values)
    found, _ = await review.incidents(start, end)
    incidents = [incident_report(i) for i in reversed(found)]
    window_id = f"w-{stamp(start)}-{stamp(end)}"
    return page(request, "incidents", incidents=incidents, window_id=window_id, **values)


@signed_in
@_no_query
@_guarded
async def incident_page(request: web.Request) -> web.Response:
    incident_id = request.match_info["incident_id"]
    incident = await request.app[REVIEW_WEB].review.incident(incident_id)
    if incident is None:
        return _error(request, 404, f"No incident {incident_id}.")
    dry = sum(1 for r in incident.runs if r.dry_run)
    return page(
        request,
        "incident",
        report=incident_report(incident),
        entries=incident_timeline(incident),
        dry_run=dry,
    )


@signed_in
@_no_query
@_guarded
async def incident_markdown(request: web.Request) -> web.Response:
    review = request.app[REVIEW_WEB].review
    incident_id = request.match_info["incident_id"]
    incident = await review.incident(incident_id)
    if incident is None:
        return _error(request, 404, f"No incident {incident_id}.")
    report = build_report(
        [incident],
        incident.runs,
        start=incident.started_at,
        end=incident.ended_at,
        gap_s=None if incident.window else review.gap_s,
        generated_at=request.app[CLOCK]().astimezone(UTC),
    )
    # Plain text, never sniffed as HTML: the Markdown holds escaped alert labels, not markup.
    return web.Response(
        text=render_markdown(report),
        content_type="text/plain",
        charset="utf-8",
        headers=security_headers("none"),
    )


async def landing(request: web.Request) -> web.Response:
    """``GET /``: 303 to the incidents, the reviewer's first page. Said to anyone: where the
    pages are is no secret, and the incidents page asks who is reading. Under
    ``external_url`` when one is set: a proxy serving the service at ``/review`` sends the
    browser's ``/review`` (no trailing slash) here as ``/``, and the relative ``incidents``
    then resolved to ``/incidents``, outside the prefix. Without one, relative (RFC 9110
    section 10.2.2), as the login's: right at the root and under a prefix with its slash."""
    external = request.app[SETTINGS].external_url
    location = f"{external.rstrip('/')}/incidents" if external else "incidents"
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def add_page_routes(app: web.Application) -> None:
    """The page routes (``add_login_routes`` first: they share what it puts on the app)."""
    app.router.add_get("/", landing)
    app.router.add_get("/runs", runs_page)
    app.router.add_get("/runs/{run_id}", run_page)
    app.router.add_get("/incidents", incidents_page)
    app.router.add_get("/incidents/{incident_id}", incident_page)
    app.router.add_get("/incidents/{incident_id}/report.md", incident_markdown)
