"""``POST /api/v1/alerts``: Alertmanager's webhook. Stores the alerts and answers; nothing
here runs a remediation."""

from __future__ import annotations

from aiohttp import web

from receiver.alertmanager import PayloadError, parse_notification
from receiver.http.deps import INTAKE, LOG, METRICS, STORE_DOWN_LOG
from receiver.http.responses import json_response
from receiver.store import StoreUnavailable

__all__ = ["ALERTS_PATH", "STORE_DOWN_LOG_EVERY_S", "post_alerts"]

ALERTS_PATH = "/api/v1/alerts"
# At most one "store unavailable" warning per this many seconds (see post_alerts).
STORE_DOWN_LOG_EVERY_S = 10.0


async def post_alerts(request: web.Request) -> web.Response:
    """200 ``{accepted, duplicates}`` once the alerts are committed; 400 for a payload that is
    not a notification; 503 when the store cannot take it (Alertmanager then retries).
    The middleware answers 413 for a body over the limit and 408 for one that does not arrive
    in time."""
    app = request.app
    # A chunked body that passes the limit raises while being read, and one that is still
    # incomplete at the read timeout raises BodyTimeout: the middleware answers both.
    body = await request.read()
    try:
        notification = parse_notification(body)
    except PayloadError as exc:
        app[LOG].info("rejected notification", field=exc.field, reason=exc.message)
        return json_response({"error": exc.message, "field": exc.field}, 400)
    try:
        result = await app[INTAKE].accept(notification)
    except StoreUnavailable as exc:
        # 5xx makes Alertmanager retry; the notification was not stored. Logged at most once
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
    return json_response({"accepted": result.accepted, "duplicates": result.duplicates})
