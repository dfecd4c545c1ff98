"""``GET /api/v1/report``: the post-incident report of a window, for operators.

Parameters: ``from`` (RFC 3339 or a duration ago, default 24h), ``to`` (default now),
``gap`` (the incident gap, a duration; default the configured one), ``group_by`` (``gap``, the
default: incidents by alert group and gap; ``window``: the whole window as one incident),
``format`` (``json``, the default, or ``markdown``). 400 names a bad parameter, 413 a window
with more runs, or alerts nothing was done for, than the review reads at once (``ReviewTooLarge``
says what to do), 503 without the store.
"""

from __future__ import annotations

from aiohttp import web

from receiver.http.deps import CLOCK
from receiver.http.filters import BadParameter, bounded_duration, choice, unknown_parameter
from receiver.http.login import REVIEW_WEB
from receiver.http.pages import window_of
from receiver.http.responses import json_response
from receiver.review.loader import ReviewTooLarge
from receiver.review.markdown import render_markdown
from receiver.store import StoreUnavailable
from receiver.webpages import security_headers

__all__ = ["REPORT_PATH", "get_report"]

REPORT_PATH = "/api/v1/report"
_PARAMETERS = frozenset({"from", "to", "gap", "group_by", "format"})
MAX_GAP_S = 7 * 86400.0


def _gap(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return bounded_duration(text, "the gap", MAX_GAP_S, "7d")
    except ValueError as exc:
        raise BadParameter("gap", str(exc)) from None


async def get_report(request: web.Request) -> web.Response:
    """The report as JSON (``receiver.review.report``) or Markdown."""
    query = request.query
    try:
        for name in query:
            if name not in _PARAMETERS:
                raise unknown_parameter(name)
        start, end = window_of(query, request.app[CLOCK]())
        gap_s = _gap(query.get("gap"))
        group_by = choice(query, "group_by", ("gap", "window"), "gap")
        fmt = choice(query, "format", ("json", "markdown"), "json")
    except BadParameter as exc:
        return json_response({"error": exc.message, "parameter": exc.parameter}, 400)
    try:
        report = await request.app[REVIEW_WEB].review.report(
            start, end, by_window=group_by == "window", gap_s=gap_s
        )
    except ReviewTooLarge as exc:
        return json_response({"error": str(exc)}, 413)
    except StoreUnavailable:
        return json_response({"error": "store unavailable"}, 503)
    if fmt == "markdown":
        # Never sniffed as HTML, nor cached: it holds alert labels (escaped) and who did what,
        # as the incident page's report.md does.
        return web.Response(
            text=render_markdown(report),
            content_type="text/markdown",
            charset="utf-8",
            headers=security_headers("none"),
        )
    return json_response(report)
