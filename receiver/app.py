"""The aiohttp application: webhook intake, health, metrics and the run-log API.

Handlers only authenticate, limit, parse and hand over: ``intake.accept`` stores the alerts and
returns after the commit; nothing here runs a remediation. Every dependency is passed to
``create_app``, so tests build the app around real components without globals.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from structlog.typing import FilteringBoundLogger

from receiver.alertmanager import Notification, PayloadError, parse_notification
from receiver.config import Settings
from receiver.durations import parse_duration
from receiver.guards import GuardUnavailable
from receiver.model import RunOutcome
from receiver.store import StoreUnavailable
from receiver.telemetry import Metrics

__all__ = [
    "ALERTS_PATH",
    "RUNS_PATH",
    "HealthChecks",
    "IntakeLike",
    "IntakeResultLike",
    "RunsReader",
    "create_app",
    "parse_since",
]

ALERTS_PATH = "/api/v1/alerts"
RUNS_PATH = "/api/v1/runs"
MAX_RUNS_LIMIT = 500
DEFAULT_RUNS_LIMIT = 50
REALM = 'realm="remediator"'


class IntakeResultLike(Protocol):
    @property
    def accepted(self) -> int: ...

    @property
    def duplicates(self) -> int: ...


class IntakeLike(Protocol):
    """``receiver.intake.Intake``: returns only after the transaction committed."""

    async def accept(self, notification: Notification, /) -> IntakeResultLike: ...


class RunsReader(Protocol):
    """What the review endpoints read (``receiver.store.Store`` fits)."""

    async def list_runs(
        self,
        *,
        alertname: str | None = ...,
        rule: str | None = ...,
        target: str | None = ...,
        outcome: RunOutcome | None = ...,
        since: datetime | None = ...,
        limit: int = ...,
        cursor: str | None = ...,
    ) -> tuple[Sequence[Any], str | None]: ...

    async def get_run(self, run_id: str, *, with_steps: bool = ...) -> Any | None: ...

    async def audit_entries(self, run_id: str) -> list[dict[str, Any]]: ...


class GuardControl(Protocol):
    """The operator's kill switch (``receiver.guards.Guards`` fits)."""

    async def pause(self, seconds: float | None, reason: str) -> datetime | None: ...

    async def resume(self) -> None: ...

    async def status(self) -> dict[str, Any]: ...


# Writes one audit row: kind, data (``Store.append_audit`` fits).
AuditWriter = Callable[..., Awaitable[Any]]

PAUSE_PATH = "/api/v1/pause"
GUARDS_PATH = "/api/v1/guards"
MAX_PAUSE_S = 7 * 86400.0


# A component check returns a short detail ("ok", "dry-run (no credentials)") or raises.
Check = Callable[[], Awaitable[str | None]]


async def _ok() -> str:
    return "ok"


@dataclasses.dataclass(frozen=True, slots=True)
class HealthChecks:
    """Readiness checks per component. ``store`` and ``redis`` are required for readiness:
    without the store nothing can be accepted, without Redis the guards refuse everything.
    Kubernetes is reported but does not make the service unready: intake keeps accepting."""

    store: Check = _ok
    redis: Check = _ok
    kubernetes: Check = _ok
    required: frozenset[str] = frozenset({"store", "redis"})

    def items(self) -> list[tuple[str, Check]]:
        return [("store", self.store), ("redis", self.redis), ("kubernetes", self.kubernetes)]


def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        text=json.dumps(data, default=_json_default, separators=(",", ":")),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _row(value: Any) -> Any:
    """A run row as JSON-ready data (the store may return dicts, records or dataclasses)."""
    if isinstance(value, Mapping):
        return dict(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def _list_row(value: Any) -> Any:
    # A page of runs carries no steps: an empty list there would read as "did nothing".
    row = _row(value)
    if isinstance(row, dict):
        row.pop("steps", None)
    return row


# -- authentication ----------------------------------------------------------------------------


class _Authenticator:
    """Bearer token and/or basic auth, compared in constant time on bytes."""

    def __init__(self, settings: Settings) -> None:
        self.token = (
            settings.webhook_token.get_secret_value().encode()
            if settings.webhook_token is not None
            else None
        )
        self.basic: tuple[bytes, bytes] | None = None
        if settings.webhook_username is not None and settings.webhook_password is not None:
            self.basic = (
                settings.webhook_username.encode(),
                settings.webhook_password.get_secret_value().encode(),
            )
        challenges = []
        if self.token is not None:
            challenges.append(f"Bearer {REALM}")
        if self.basic is not None:
            challenges.append(f"Basic {REALM}")
        self.challenge = ", ".join(challenges)

    @property
    def enabled(self) -> bool:
        return self.token is not None or self.basic is not None

    def check(self, request: web.Request) -> bool:
        if not self.enabled:
            return True
        header = request.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        scheme = scheme.lower()
        credentials = credentials.strip()
        if scheme == "bearer" and self.token is not None:
            return hmac.compare_digest(credentials.encode(), self.token)
        if scheme == "basic" and self.basic is not None:
            try:
                decoded = base64.b64decode(credentials.encode(), validate=True)
            except (binascii.Error, ValueError):
                return False
            user, sep, password = decoded.partition(b":")
            # Both comparisons always run, so timing does not reveal which part was wrong.
            user_ok = hmac.compare_digest(user, self.basic[0])
            password_ok = hmac.compare_digest(password, self.basic[1])
            return bool(sep) and user_ok and password_ok
        return False

    def refuse(self) -> web.Response:
        return _json({"error": "unauthorized"}, 401, {"WWW-Authenticate": self.challenge})


# -- filters -------------------------------------------------------------------------------------


class _BadParameter(Exception):
    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.message = message


def parse_since(text: str, now: datetime) -> datetime:
    """An RFC 3339 timestamp, or a duration (``24h``) meaning that long before ``now``."""
    text = text.strip()
    try:
        return now - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an RFC 3339 timestamp nor a duration like 24h"
        ) from None
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone offset (add Z or +00:00)")
    return value


def _run_filters(query: Mapping[str, str], now: datetime) -> dict[str, Any]:
    allowed = {"alertname", "rule", "target", "outcome", "since", "limit", "cursor"}
    for name in query:
        if name not in allowed:
            raise _BadParameter(name, f"unknown parameter {name!r}")
    filters: dict[str, Any] = {}
    for name in ("alertname", "rule", "target", "cursor"):
        value = query.get(name)
        if value is not None:
            if not value.strip():
                raise _BadParameter(name, f"{name} must not be empty")
            filters[name] = value
    target = filters.get("target")
    if target is not None and (len(target.split("/", 2)) != 3 or "" in target.split("/", 2)):
        raise _BadParameter("target", "target must be kind/namespace/name")
    outcome = query.get("outcome")
    if outcome is not None:
        try:
            filters["outcome"] = RunOutcome(outcome)
        except ValueError:
            known = ", ".join(o.value for o in RunOutcome)
            raise _BadParameter("outcome", f"unknown outcome {outcome!r}; one of {known}") from None
    since = query.get("since")
    if since is not None:
        try:
            filters["since"] = parse_since(since, now)
        except ValueError as exc:
            raise _BadParameter("since", str(exc)) from None
    limit_text = query.get("limit")
    limit = DEFAULT_RUNS_LIMIT
    if limit_text is not None:
        try:
            limit = int(limit_text)
        except ValueError:
            raise _BadParameter("limit", f"limit must be an integer, got {limit_text!r}") from None
        if not 1 <= limit <= MAX_RUNS_LIMIT:
            raise _BadParameter("limit", f"limit must be between 1 and {MAX_RUNS_LIMIT}")
    filters["limit"] = limit
    return filters


# -- the application -----------------------------------------------------------------------------

_METRICS_KEY = web.AppKey("metrics", Metrics)


def _route_name(request: web.Request) -> str:
    route = request.match_info.route
    resource = route.resource
    if resource is None:
        return "unmatched"
    return resource.canonical


def create_app(
    *,
    settings: Settings,
    intake: IntakeLike,
    metrics: Metrics,
    health: HealthChecks,
    runs_reader: RunsReader,
    log: FilteringBoundLogger,
    guards: GuardControl | None = None,
    audit: AuditWriter | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> web.Application:
    """Build the HTTP application around the given components."""
    auth = _Authenticator(settings)
    if not auth.enabled:
        log.warning(
            "webhook authentication is disabled",
            hint="set REMEDIATOR_WEBHOOK_TOKEN(_FILE) or REMEDIATOR_WEBHOOK_USERNAME/PASSWORD",
        )
    max_body = settings.max_body_bytes
    too_large = {"error": f"body exceeds {max_body} bytes"}

    # One middleware, not one per concern: every layer costs each webhook a coroutine and a
    # wrapper, and this one runs on every request anyway.
    @web.middleware
    async def edge(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Authentication of /api/, JSON errors and the HTTP metrics of every request."""
        started = time.perf_counter()
        status = 500
        try:
            # Everything under /api/ takes the webhook's credentials, checked before the handler
            # reads anything; health, readiness and metrics stay open for probes and scrapers.
            response: web.StreamResponse
            if request.path.startswith("/api/") and not auth.check(request):
                response = auth.refuse()
            else:
                response = await handler(request)
            status = response.status
            return response
        except web.HTTPRequestEntityTooLarge:
            status = 413
            return _json(too_large, 413)
        except web.HTTPException as exc:
            status = exc.status
            if exc.status >= 400 and exc.content_type != "application/json":
                return _json(
                    {"error": exc.reason},
                    exc.status,
                    {k: v for k, v in exc.headers.items() if k.lower() in ("allow",)},
                )
            raise
        except asyncio.CancelledError:
            raise
        except Exception:
            # No stack trace in the response; the log has it.
            log.exception("unhandled error", method=request.method, path=request.path)
            return _json({"error": "internal server error"}, 500)
        finally:
            metrics.http_request(
                _route_name(request), request.method, status, time.perf_counter() - started
            )

    app = web.Application(client_max_size=max_body, middlewares=[edge])
    app[_METRICS_KEY] = metrics

    async def post_alerts(request: web.Request) -> web.Response:
        length = request.content_length
        if length is not None and length > max_body:
            return _json(too_large, 413)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _json(too_large, 413)
        try:
            notification = parse_notification(body)
        except PayloadError as exc:
            log.info("rejected notification", field=exc.field, reason=exc.message)
            return _json({"error": exc.message, "field": exc.field}, 400)
        try:
            result = await intake.accept(notification)
        except StoreUnavailable as exc:
            # 5xx makes Alertmanager retry; the notification was not stored.
            log.warning("store unavailable, notification not accepted", error=str(exc))
            return _json({"error": "store unavailable"}, 503)
        for alert in notification.alerts:
            metrics.alert_received(str(alert.status))
        metrics.duplicates(result.duplicates)
        return _json({"accepted": result.accepted, "duplicates": result.duplicates})

    async def healthz(request: web.Request) -> web.Response:
        return _json({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        timeout = settings.readiness_timeout_seconds

        async def run(name: str, check: Check) -> tuple[str, dict[str, Any]]:
            try:
                async with asyncio.timeout(timeout):
                    detail = await check()
            except TimeoutError:
                return name, {"ok": False, "detail": f"no answer within {timeout:g}s"}
            except Exception as exc:
                return name, {"ok": False, "detail": _describe_error(exc)}
            return name, {"ok": True, "detail": detail or "ok"}

        results = await asyncio.gather(*(run(name, check) for name, check in health.items()))
        components = dict(results)
        ready = all(components[name]["ok"] for name in health.required if name in components)
        return _json(
            {"status": "ready" if ready else "not ready", "components": components},
            200 if ready else 503,
        )

    async def metrics_handler(request: web.Request) -> web.Response:
        await metrics.refresh()
        body, content_type = metrics.render()
        response = web.Response(body=body)
        # prometheus_client's content type carries parameters aiohttp will not take as content_type.
        response.headers["Content-Type"] = content_type
        return response

    async def get_runs(request: web.Request) -> web.Response:
        try:
            filters = _run_filters(request.query, clock())
        except _BadParameter as exc:
            return _json({"error": exc.message, "parameter": exc.parameter}, 400)
        try:
            rows, next_cursor = await runs_reader.list_runs(**filters)
        except StoreUnavailable:
            return _json({"error": "store unavailable"}, 503)
        except ValueError as exc:
            # The store rejects a cursor it did not issue.
            if "cursor" in filters:
                return _json({"error": str(exc), "parameter": "cursor"}, 400)
            raise
        return _json({"runs": [_list_row(r) for r in rows], "next_cursor": next_cursor})

    async def get_run(request: web.Request) -> web.Response:
        run_id = request.match_info["run_id"]
        try:
            run = await runs_reader.get_run(run_id, with_steps=True)
            audit = await runs_reader.audit_entries(run_id) if run is not None else []
        except StoreUnavailable:
            return _json({"error": "store unavailable"}, 503)
        if run is None:
            return _json({"error": f"no run {run_id}"}, 404)
        return _json({"run": _row(run), "audit": audit})

    GuardHandler = Callable[[web.Request, GuardControl], Awaitable[web.Response]]

    def with_guards(handler: GuardHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
        """The guard endpoints' shared answers: none configured, or Redis unreachable."""

        async def wrapped(request: web.Request) -> web.Response:
            if guards is None:
                return _json({"error": "guards are not configured"}, 404)
            try:
                return await handler(request, guards)
            except GuardUnavailable as exc:
                return _json({"error": f"guards unavailable: {exc}"}, 503)

        return wrapped

    @with_guards
    async def guards_status(request: web.Request, control: GuardControl) -> web.Response:
        return _json(await control.status())

    @with_guards
    async def put_pause(request: web.Request, control: GuardControl) -> web.Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _json({"error": "invalid JSON", "field": "body"}, 400)
        if not isinstance(body, dict):
            return _json({"error": "expected a JSON object", "field": "body"}, 400)
        reason = body.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            return _json({"error": "say why automation is paused", "field": "reason"}, 400)
        reason = reason.strip()
        seconds: float | None = None
        if body.get("for") is not None:
            if not isinstance(body["for"], str):
                return _json({"error": "a duration like 30m or 2h", "field": "for"}, 400)
            try:
                seconds = parse_duration(body["for"])
            except ValueError as exc:
                return _json({"error": str(exc), "field": "for"}, 400)
            if not 0 < seconds <= MAX_PAUSE_S:
                return _json({"error": "between 1s and 7d", "field": "for"}, 400)
        until = await control.pause(seconds, reason)
        # An operator's kill switch belongs in the record of what happened and when.
        await _audit("guards.pause", {"reason": reason, "until": until, "via": "api"})
        log.warning("automation paused", reason=reason,
                    until=until.isoformat() if until else None)
        return _json({"paused": True, "reason": reason, "until": until})

    @with_guards
    async def delete_pause(request: web.Request, control: GuardControl) -> web.Response:
        await control.resume()
        await _audit("guards.resume", {"via": "api"})
        log.warning("automation resumed")
        return _json({"paused": False})

    async def _audit(kind: str, data: dict[str, Any]) -> None:
        if audit is None:
            return
        try:
            await audit(kind, data=json.loads(json.dumps(data, default=_json_default)))
        except StoreUnavailable as exc:
            # The guard state changed; losing its audit row is logged, not hidden.
            log.error("could not record in the audit log", kind=kind, error=str(exc))

    app.router.add_post(ALERTS_PATH, post_alerts)
    app.router.add_get(GUARDS_PATH, guards_status)
    app.router.add_put(PAUSE_PATH, put_pause)
    app.router.add_delete(PAUSE_PATH, delete_pause)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get(RUNS_PATH, get_runs)
    app.router.add_get(RUNS_PATH + "/{run_id}", get_run)
    return app


def _describe_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    name = type(exc).__name__
    return f"{name}: {text}"[:200] if text else name
