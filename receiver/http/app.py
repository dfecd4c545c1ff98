"""``create_app``: the aiohttp application around the given components.

Every dependency is passed in and stored under its typed key (``receiver.http.deps``), where
the handlers find it, so tests build the app around real components without globals.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from aiohttp import web
from structlog.typing import FilteringBoundLogger

from receiver.approvals.desk import LINK_PATH
from receiver.config import Settings
from receiver.http.alerts import (
    ALERTS_PATH,
    STORE_DOWN_LOG_EVERY_S,
    TRUNCATED_LOG_EVERY_S,
    post_alerts,
)
from receiver.http.approvals import APPROVALS_API, ApprovalWeb, add_approval_routes
from receiver.http.auth import Authenticator
from receiver.http.deps import (
    AUTH,
    CLOCK,
    GUARDS,
    HEALTH,
    INTAKE,
    LOCKS,
    LOG,
    METRICS,
    QUEUES,
    RUNS_READER,
    SETTINGS,
    STORE_DOWN_LOG,
    TRUNCATED_LOG,
    GuardControl,
    HealthChecks,
    IntakeLike,
    LockRelease,
    QueueControl,
    RunsReader,
)
from receiver.http.guards import GUARDS_PATH, PAUSE_PATH, delete_pause, guards_status, put_pause
from receiver.http.health import healthz, metrics_handler, readyz
from receiver.http.login import LOGIN_PATHS, ReviewWeb, add_login_routes
from receiver.http.middleware import edge_middleware
from receiver.http.pages import PAGE_PATHS, add_page_routes
from receiver.http.queues import EVENTS_PATH, JOBS_PATH, add_queue_routes
from receiver.http.report import REPORT_PATH, get_report
from receiver.http.runs import RUNS_PATH, get_run, get_runs
from receiver.log_limits import Throttle
from receiver.stop_budget import HTTP_SHUTDOWN_S
from receiver.telemetry import Metrics

__all__ = ["LINGER_S", "create_app", "create_runner"]

# aiohttp's default: after answering a request whose body it did not read, how long it drains
# the rest before closing (so the client reads the answer instead of a reset). Never longer
# than the read timeout.
LINGER_S = 10.0


def create_app(
    *,
    settings: Settings,
    intake: IntakeLike,
    metrics: Metrics,
    health: HealthChecks,
    runs_reader: RunsReader,
    log: FilteringBoundLogger,
    guards: GuardControl | None = None,
    queues: QueueControl | None = None,
    locks: LockRelease | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    approvals: ApprovalWeb | None = None,
    review: ReviewWeb | None = None,
) -> web.Application:
    """Build the HTTP application around the given components.

    Without ``guards`` the guard endpoints answer 404 (with them, the kill switch writes its
    own audit records: ``receiver.audit_outbox``), without ``queues`` the event and job
    endpoints. ``locks`` (the guards) releases the target lock a dropped job's ended run may
    hold; without it the drop's answer says the lock ends with its TTL. ``clock`` (aware
    datetimes) resolves relative ``since`` filters. Without ``approvals`` there are no approval
    routes; without ``review`` no review pages (``/runs``, ``/incidents``, ``/login``) and no
    report API.
    """
    auth = Authenticator(settings)
    if auth.webhook_open:
        log.warning(
            "webhook authentication is disabled",
            hint="set REMEDIATOR_WEBHOOK_TOKEN(_FILE) or REMEDIATOR_WEBHOOK_USERNAME/PASSWORD",
        )
    if not auth.operator_names and not auth.operators_open:
        log.warning(
            "no operator tokens: runs, guards and pause are refused to everyone over HTTP",
            hint="put one token file per operator in REMEDIATOR_OPERATOR_TOKENS_DIR",
        )
    max_body = settings.max_body_bytes
    # The approvals API authenticates operators itself (receiver.http.approvals): it also
    # believes the SSO proxy's user header, which the operator role does not know.
    edge = edge_middleware(
        auth=auth,
        metrics=metrics,
        log=log,
        max_body=max_body,
        read_timeout_s=settings.read_timeout_seconds,
        webhook_routes=frozenset({ALERTS_PATH}),
        own_auth=(APPROVALS_API,) if approvals is not None else (),
        # The review's pages, its login and the approval links' pages answer a bad query with
        # a page, not the middleware's JSON.
        page_paths=(
            *((*PAGE_PATHS, *LOGIN_PATHS) if review is not None else ()),
            *((LINK_PATH.rstrip("/"),) if approvals is not None else ()),
        ),
        # The routes that read a query (the lists, the report), and the webhook's, whose URL in
        # Alertmanager's webhook_config may carry one; every other /api/ route refuses one.
        query_routes=frozenset(
            {ALERTS_PATH, RUNS_PATH, EVENTS_PATH, JOBS_PATH, APPROVALS_API, REPORT_PATH}
        ),
    )
    app = web.Application(client_max_size=max_body, middlewares=[edge])
    app[SETTINGS] = settings
    app[AUTH] = auth
    app[INTAKE] = intake
    app[METRICS] = metrics
    app[HEALTH] = health
    app[RUNS_READER] = runs_reader
    app[LOG] = log
    app[GUARDS] = guards
    app[QUEUES] = queues
    app[LOCKS] = locks
    app[CLOCK] = clock
    app[STORE_DOWN_LOG] = Throttle(STORE_DOWN_LOG_EVERY_S)
    app[TRUNCATED_LOG] = Throttle(TRUNCATED_LOG_EVERY_S)

    app.router.add_post(ALERTS_PATH, post_alerts)
    app.router.add_get(GUARDS_PATH, guards_status)
    app.router.add_put(PAUSE_PATH, put_pause)
    app.router.add_delete(PAUSE_PATH, delete_pause)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get(RUNS_PATH, get_runs)
    app.router.add_get(RUNS_PATH + "/{run_id}", get_run)
    add_queue_routes(app.router)
    if approvals is not None:
        add_approval_routes(app, approvals)
    if review is not None:
        add_login_routes(app, review)
        add_page_routes(app)
        app.router.add_get(REPORT_PATH, get_report)
    return app


def create_runner(app: web.Application, settings: Settings) -> web.AppRunner:
    """The AppRunner that serves ``app``, with the connection time limits of ``settings``.

    aiohttp has no timeout for request headers, but its keep-alive timer is one: it starts when
    a connection opens and again after each answer, is not reset by partial data, and closes
    the connection if the next request has not fully arrived (head complete) when it fires. So
    ``keepalive_timeout = read_timeout`` closes a client that trickles or never finishes its
    headers, and an idle kept-alive connection, after ``read_timeout_seconds``; the middleware
    bounds the body with the same value.
    """
    timeout = settings.read_timeout_seconds
    return web.AppRunner(
        app,
        access_log=None,
        keepalive_timeout=timeout,
        lingering_time=min(LINGER_S, timeout),
        shutdown_timeout=HTTP_SHUTDOWN_S,
    )
