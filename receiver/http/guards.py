"""The operator's kill switch: ``GET /api/v1/guards`` (status), ``PUT /api/v1/pause`` and
``DELETE /api/v1/pause``, for operators' tokens. A pause or resume is written to the audit log
with the operator's name (``by``); while PostgreSQL is away it still takes effect (it is the kill
switch), its record waits in Redis to be written once the store is back
(``receiver.audit_outbox``), and the answer says ``"audited": false, "audit_queued": true``."""

from __future__ import annotations

from aiohttp import web

from receiver.audit_outbox import Recorded
from receiver.guards.policy import GuardUnavailable
from receiver.http.auth import principal
from receiver.http.bodies import BadField, bad_field, json_object, reason_of
from receiver.http.deps import GUARDS, LOG, GuardControl, with_optional
from receiver.http.filters import bounded_duration
from receiver.http.responses import json_response

__all__ = ["GUARDS_PATH", "MAX_PAUSE_S", "PAUSE_PATH", "delete_pause", "guards_status", "put_pause"]

PAUSE_PATH = "/api/v1/pause"
GUARDS_PATH = "/api/v1/guards"
MAX_PAUSE_S = 7 * 86400.0

# The guard endpoints' shared answers: 404 when none are configured, 503 when Redis is
# unreachable.
_with_guards = with_optional(
    GUARDS, "guards are not configured", GuardUnavailable, lambda exc: f"guards unavailable: {exc}"
)


@_with_guards
async def guards_status(request: web.Request, control: GuardControl) -> web.Response:
    """The guards' state: pause, budget used, open circuit breakers."""
    return json_response(await control.status())


@_with_guards
async def put_pause(request: web.Request, control: GuardControl) -> web.Response:
    """Pause every remediation. Body: ``{"reason": "...", "for": "30m"}`` (``reason`` at most
    1000 characters; ``for`` optional, 1s to 7 days; without it the pause lasts until
    resumed). 400 names the bad field, an unknown one included."""
    try:
        body = await json_object(request, fields=("reason", "for"))
        reason = reason_of(body, required="say why automation is paused")
    except BadField as exc:
        return bad_field(exc)
    assert reason is not None
    seconds: float | None = None
    if body.get("for") is not None:
        try:
            seconds = bounded_duration(body["for"], "for", MAX_PAUSE_S, "7d")
        except ValueError as exc:
            return json_response({"error": str(exc), "field": "for"}, 400)
    by = principal(request).name
    # An operator's kill switch belongs in the record of what happened, when and by whom.
    recorded = await control.pause(seconds, reason, by=by, via="api")
    until = recorded.switched.until
    request.app[LOG].warning(
        "automation paused", reason=reason, until=until.isoformat() if until else None, by=by
    )
    return json_response({"paused": True, "reason": reason, "until": until, **_audit(recorded)})


@_with_guards
async def delete_pause(request: web.Request, control: GuardControl) -> web.Response:
    """Lift a pause."""
    by = principal(request).name
    recorded = await control.resume(by=by, via="api")
    # A resume with nothing paused changed nothing: said so, in the answer and the record.
    was_paused = recorded.switched.was_paused
    request.app[LOG].warning("automation resumed", by=by, was_paused=was_paused)
    return json_response({"paused": False, "was_paused": was_paused, **_audit(recorded)})


def _audit(recorded: Recorded) -> dict[str, bool]:
    """What the answer says of the record: ``audited`` (its row is in the audit log), and
    ``audit_queued`` (not yet: it waits in Redis and is written once the store is back). Both
    false: it is not on the record (the outbox was full and the store away)."""
    return {"audited": recorded.audited, "audit_queued": recorded.audit_queued}
