"""The operator's kill switch: ``GET /api/v1/guards`` (status), ``PUT /api/v1/pause`` and
``DELETE /api/v1/pause``, for operators' tokens. A pause or resume is written to the audit log
with the operator's name (``by``); while PostgreSQL is away it still takes effect (it is the kill
switch), and the answer says ``"audited": false``."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from receiver.guards.policy import GuardUnavailable
from receiver.http.auth import principal
from receiver.http.bodies import BadField, bad_field, json_object, reason_of
from receiver.http.deps import AUDIT, GUARDS, LOG, GuardControl, with_optional
from receiver.http.filters import bounded_duration
from receiver.http.responses import json_default, json_response
from receiver.store import StoreUnavailable

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
    until = await control.pause(seconds, reason, by=by)
    # An operator's kill switch belongs in the record of what happened, when and by whom.
    audited = await _audit(
        request.app, "guards.pause", {"reason": reason, "until": until, "via": "api", "by": by}
    )
    request.app[LOG].warning(
        "automation paused", reason=reason, until=until.isoformat() if until else None, by=by
    )
    return json_response({"paused": True, "reason": reason, "until": until, "audited": audited})


@_with_guards
async def delete_pause(request: web.Request, control: GuardControl) -> web.Response:
    """Lift a pause."""
    was_paused = await control.resume()
    by = principal(request).name
    # A resume with nothing paused changed nothing: said so, in the answer and the record.
    audited = await _audit(
        request.app, "guards.resume", {"via": "api", "by": by, "was_paused": was_paused}
    )
    request.app[LOG].warning("automation resumed", by=by, was_paused=was_paused)
    return json_response({"paused": False, "was_paused": was_paused, "audited": audited})


async def _audit(app: web.Application, kind: str, data: dict[str, Any]) -> bool:
    """Record ``kind`` in the audit log; False when it could not be (no audit log, or the store
    out of reach). The kill switch works without the store: the change stands, and the answer
    and an error line say it is not on the record.

    Called after the change took effect in Redis, so nothing here can undo or delay it past
    the store's bound: the service's writer is the routes' bounded store (``STORE_TIMEOUT_S``),
    which gives up on a frozen PostgreSQL at that deadline."""
    audit = app[AUDIT]
    if audit is None:
        return False
    try:
        await audit(kind, data=json.loads(json.dumps(data, default=json_default)))
    except StoreUnavailable as exc:
        # A write given up at the deadline may still commit once PostgreSQL runs again (its
        # COMMIT was sent, its answer lost): the row is then on the record once, since nothing
        # writes it again, and "audited": false was only unsure. The pause is in Redis either
        # way.
        app[LOG].error(
            "not recorded in the audit log: the store is unavailable",
            kind=kind,
            by=data.get("by"),
            error=str(exc),
        )
        return False
    return True
