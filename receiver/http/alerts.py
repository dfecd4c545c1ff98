"""``POST /api/v1/alerts``: Alertmanager's webhook. Stores the alerts and answers; nothing
here runs a remediation."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from receiver.alertmanager import Notification, PayloadError, parse_notification
from receiver.http.deps import INTAKE, LOG, METRICS, STORE_DOWN_LOG, TRUNCATED_LOG
from receiver.http.responses import json_response
from receiver.store import StoreUnavailable

__all__ = [
    "ALERTS_PATH",
    "LOGGED_TEXT_MAX",
    "STORE_DOWN_LOG_EVERY_S",
    "TRUNCATED_LOG_EVERY_S",
    "TRUNCATED_WARNING",
    "counts_response",
    "post_alerts",
]

ALERTS_PATH = "/api/v1/alerts"
# At most one "store unavailable" warning per this many seconds (see post_alerts).
STORE_DOWN_LOG_EVERY_S = 10.0
# At most one truncation warning per this many seconds (see _report_truncation).
TRUNCATED_LOG_EVERY_S = 10.0
TRUNCATED_WARNING = (
    "notification truncated by Alertmanager (max_alerts): the alerts left out are not received"
)
# The most characters of a group key or receiver name a warning quotes: a group key is as long
# as the labels a route groups by (kilobytes are accepted, README "How an alert flows").
LOGGED_TEXT_MAX = 300


async def post_alerts(request: web.Request) -> web.Response:
    """200 ``{accepted, duplicates}`` once the alerts are committed; 400 for a payload that is
    not a notification; 503 when the store cannot take it (Alertmanager then retries). A
    notification that says alerts were left out of it (``truncatedAlerts``) is counted and
    logged (``_report_truncation``).
    The middleware answers 413 for a body over the limit and 408 for one that does not arrive
    in time."""
    app = request.app
    # A chunked body that passes the limit raises while being read, and one that is still
    # incomplete at the read timeout raises BodyTimeout: the middleware answers both.
    body = await request.read()
    try:
        notification = parse_notification(body)
    except PayloadError as exc:
        app[LOG].info(
            "rejected notification",
            field=exc.field,
            reason=exc.message,
            problems=len(exc.problems) + exc.more,
        )
        # The first problem as before (`error`, `field`), then each one the schema found: a
        # sender fixing its payload by hand learns them all from one answer.
        answer: dict[str, Any] = {"error": exc.message, "field": exc.field}
        answer["problems"] = [{"field": f, "error": m} for f, m in exc.problems]
        if exc.more:
            answer["more_problems"] = True
        return json_response(answer, 400)
    try:
        result = await app[INTAKE].accept(notification)
    except StoreUnavailable as exc:
        # 5xx makes Alertmanager retry. Not stored, or, when the write was under way at the
        # intake timeout, stored later (the error says which): the retry is then a
        # duplicate. Logged at most once
        # per STORE_DOWN_LOG_EVERY_S, with how many were held back: every webhook of an outage
        # would say the same.
        held_back = app[STORE_DOWN_LOG].ready()
        if held_back is not None:
            app[LOG].warning(
                "store unavailable, notification not accepted",
                error=str(exc),
                not_logged_since_last=held_back,
            )
        return json_response({"error": "store unavailable"}, 503)
    metrics = app[METRICS]
    for alert in notification.alerts:
        metrics.alert_received(str(alert.status))
    metrics.duplicates(result.duplicates)
    if notification.truncatedAlerts:
        _report_truncation(app, notification)
    return counts_response(result.accepted, result.duplicates)


def counts_response(accepted: int, duplicates: int) -> web.Response:
    """The 200 ``{"accepted":N,"duplicates":M}``, byte for byte what ``json_response`` gives
    it (compact, ``application/json; charset=utf-8``), formatted directly: every webhook gets
    one, and the JSON encoder and the text-to-bytes step were a visible part of intake's CPU
    (issue 12). Both counts are ints, so nothing needs escaping. Without the other answers'
    ``no-store`` and ``nosniff`` (``responses.json_response``): counts protect nothing."""
    return web.Response(
        body=b'{"accepted":%d,"duplicates":%d}' % (accepted, duplicates),
        content_type="application/json",
        charset="utf-8",
    )


def _report_truncation(app: web.Application, notification: Notification) -> None:
    """Alertmanager sent only the first ``max_alerts`` alerts of the group and says how many it
    left out (``truncatedAlerts``, webhook.Message in notify/webhook/webhook.go): those never
    arrive, so they are neither acted on nor closed, and only the receiver can see it happen.
    Counted after the commit (a retried 503 is not counted twice; an HA peer's copy and every
    re-send are); the warning names the receiver, the group and the count, at most once per
    ``TRUNCATED_LOG_EVERY_S`` with how many were held back (every group of a receiver with
    ``max_alerts`` says so at every flush)."""
    app[METRICS].alerts_truncated(notification.truncatedAlerts)
    held_back = app[TRUNCATED_LOG].ready()
    if held_back is not None:
        app[LOG].warning(
            TRUNCATED_WARNING,
            receiver=_clip(notification.receiver),
            group_key=_clip(notification.groupKey),
            truncated_alerts=notification.truncatedAlerts,
            received_alerts=len(notification.alerts),
            not_logged_since_last=held_back,
        )


def _clip(text: str) -> str:
    if len(text) <= LOGGED_TEXT_MAX:
        return text
    return f"{text[:LOGGED_TEXT_MAX]}... ({len(text) - LOGGED_TEXT_MAX} more characters)"
