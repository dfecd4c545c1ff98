"""``POST /api/v1/alerts``: Alertmanager's webhook. Stores the alerts and answers; nothing
here runs a remediation."""

from __future__ import annotations

from aiohttp import web

from receiver.alertmanager import PayloadError, parse_notification
from receiver.http.deps import INTAKE, LOG, METRICS, SETTINGS
from receiver.http.responses import json_response, too_large
from receiver.store import StoreUnavailable

__all__ = ["ALERTS_PATH", "post_alerts"]

ALERTS_PATH = "/api/v1/alerts"


async def post_alerts(request: web.Request) -> web.Response:
    """200 ``{accepted, duplicates}`` once the alerts are committed; 400 for a payload that is
    not a notification; 503 when the store cannot take it (Alertmanager then retries);
    413 for a body over the limit."""
    app = request.app
    max_body = app[SETTINGS].max_body_bytes
    length = request.content_length
    if length is not None and length > max_body:
        # Refused before reading: the body would be read up to the limit only to be refused.
        return too_large(max_body)
    # A body without Content-Length (chunked) that passes the limit raises while being read;
    # the middleware answers that 413.
    body = await request.read()
    try:
        notification = parse_notification(body)
    except PayloadError as exc:
        app[LOG].info("rejected notification", field=exc.field, reason=exc.message)
        return json_response({"error": exc.message, "field": exc.field}, 400)
    try:
        result = await app[INTAKE].accept(notification)
    except StoreUnavailable as exc:
        # 5xx makes Alertmanager retry; the notification was not stored.
        app[LOG].warning("store unavailable, notification not accepted", error=str(exc))
        return json_response({"error": "store unavailable"}, 503)
    metrics = app[METRICS]
    for alert in notification.alerts:
        metrics.alert_received(str(alert.status))
    metrics.duplicates(result.duplicates)
    return json_response({"accepted": result.accepted, "duplicates": result.duplicates})
