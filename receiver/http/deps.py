"""What the HTTP handlers depend on, and the typed application keys they find it under.

``create_app`` stores each dependency under its key; handlers read them from ``request.app``,
so tests build the application around real components without globals.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from aiohttp import web
from structlog.typing import FilteringBoundLogger

from receiver.alertmanager import Notification
from receiver.audit_outbox import Recorded
from receiver.config import Settings
from receiver.guards.policy import Admission, AdmissionRequest
from receiver.http.auth import Authenticator
from receiver.http.responses import json_response
from receiver.log_limits import Throttle
from receiver.model import RunOutcome
from receiver.store import JobEnd
from receiver.telemetry import Metrics
from remediations.targets import Target

__all__ = [
    "AUTH",
    "CLOCK",
    "GUARDS",
    "HEALTH",
    "INTAKE",
    "LOCKS",
    "LOG",
    "METRICS",
    "QUEUES",
    "REVIEW_TIMEOUT_S",
    "RUNS_READER",
    "SETTINGS",
    "STORE_DOWN_LOG",
    "STORE_TIMEOUT_S",
    "TRUNCATED_LOG",
    "Check",
    "GuardControl",
    "HealthChecks",
    "IntakeLike",
    "IntakeResultLike",
    "LockRelease",
    "QueueControl",
    "RunsReader",
    "with_optional",
]


class IntakeResultLike(Protocol):
    """How many alerts of a notification were stored, and how many were already known."""

    @property
    def accepted(self) -> int: ...

    @property
    def duplicates(self) -> int: ...


class IntakeLike(Protocol):
    """``receiver.intake.Intake``: returns only after the transaction committed; raises
    StoreUnavailable when the store cannot take the notification (503); anything else is a 500
    (``IntakeFailed`` names the store's error without the values)."""

    async def accept(self, notification: Notification, /) -> IntakeResultLike: ...


class RunsReader(Protocol):
    """What the review endpoints read (``receiver.store.Store`` fits).

    ``list_runs`` returns a page and the cursor of the next one (None on the last page), and
    raises ValueError for a cursor it did not issue.
    """

    async def list_runs(
        self,
        *,
        alertname: str | None = ...,
        rule: str | None = ...,
        target: Target | str | None = ...,
        outcome: RunOutcome | None = ...,
        since: datetime | None = ...,
        limit: int = ...,
        cursor: str | None = ...,
    ) -> tuple[Sequence[Any], str | None]: ...

    async def get_run(self, run_id: str, *, with_steps: bool = ...) -> Any | None: ...

    async def audit_entries(self, run_id: str) -> list[dict[str, Any]]: ...


class GuardControl(Protocol):
    """The operator's kill switch (``receiver.audit_outbox.AuditedSwitch`` fits); raises
    GuardUnavailable when Redis cannot be reached. ``pause`` takes seconds (None: until
    resumed); ``by`` is the operator, ``via`` how it came ("api"). Each move is written to the
    audit log, or queued to be (``Recorded``): never an error once it took effect."""

    async def pause(self, seconds: float | None, reason: str, *, by: str, via: str) -> Recorded: ...

    async def resume(self, *, by: str, via: str) -> Recorded: ...

    async def status(self) -> dict[str, Any]: ...


class QueueControl(Protocol):
    """The work queues as operators see them (``receiver.store.Store`` fits): pages of alert
    events and jobs (newest first, with the cursor of the next page), one item, the dead
    letters' two answers. ``retry_item``/``drop_item`` take ``kind`` "event" or "job" and raise
    ItemNotFound or ItemConflict; ``drop_job`` is ``drop_item`` of a job with what it ended
    (``JobEnd``, None: nothing), to be counted once committed; ``enqueue_job``
    queues the ``release_lock`` job of a run a drop ended when Redis did not answer its
    release; ``admitted_lock`` is the token the last admission of a run's phase took its
    target lock with (``Store.admitted_lock``), the one lock a drop gives back; everything
    raises StoreUnavailable without the store."""

    async def list_events(
        self,
        *,
        state: str | None = ...,
        alertname: str | None = ...,
        fingerprint: str | None = ...,
        skipped: bool | None = ...,
        limit: int = ...,
        cursor: str | None = ...,
    ) -> tuple[list[dict[str, Any]], str | None]: ...

    async def list_jobs(
        self,
        *,
        state: str | None = ...,
        kind: str | None = ...,
        run_id: str | None = ...,
        limit: int = ...,
        cursor: str | None = ...,
    ) -> tuple[list[dict[str, Any]], str | None]: ...

    async def event_view(self, event_id: int) -> dict[str, Any] | None: ...

    async def job_view(self, job_id: int) -> dict[str, Any] | None: ...

    async def retry_item(
        self, kind: str, item_id: int, *, actor: str, reason: str | None = ...
    ) -> dict[str, Any]: ...

    async def drop_item(
        self, kind: str, item_id: int, *, actor: str, reason: str
    ) -> dict[str, Any]: ...

    async def drop_job(
        self, job_id: int, *, actor: str, reason: str
    ) -> tuple[dict[str, Any], JobEnd | None]: ...

    async def enqueue_job(
        self,
        kind: str,
        run_id: str,
        *,
        delay_s: float = ...,
        payload: Mapping[str, Any] | None = ...,
        conn: Any = ...,
    ) -> int | None: ...

    async def admitted_lock(self, run_id: str, phase: str = ...) -> str | None: ...


class LockRelease(Protocol):
    """The guards' release of a target lock (``Guards`` fits): ``release``, only while it
    holds exactly the admission's token (compare-and-delete); ``release_run``, while run
    ``req.run_id`` holds it under any token. Each is True when it released the lock, False
    when the lock was not held so (another's is never touched); raises GuardUnavailable when
    Redis does not answer, GuardError on a script error."""

    async def release(self, req: AdmissionRequest, admission: Admission) -> bool: ...

    async def release_run(self, req: AdmissionRequest) -> bool: ...


# How long a route waits on the store (seconds, each call, a connection included) before it
# answers 503 (a pause: "audited": false): the webhook's default bound (intake.timeout), well
# under the CLI's 30 s and a proxy's usual minute. ``receiver.service`` gives the routes a
# view of the store bounded by it (``Store.bounded``): a frozen PostgreSQL (a stalled VM or
# network) made the routes without it wait 20 to 60 s, and the kill switch's answer a minute.
STORE_TIMEOUT_S = 5.0
# The review's pages and the report read up to 20,000 runs with their steps and audit rows in
# one call: a legitimately slow read on a large store, or one taken while a storm loads it,
# must not be cut off at the webhook's bound. Under the CLI's 30 s, so `remediator report`
# hears the 503 rather than its own timeout.
REVIEW_TIMEOUT_S = 20.0

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
        """(component, check) in the order ``/readyz`` reports them."""
        return [("store", self.store), ("redis", self.redis), ("kubernetes", self.kubernetes)]


# The application's keys, one per dependency (``create_app`` sets every one of them).
SETTINGS = web.AppKey[Settings]("settings")
AUTH = web.AppKey[Authenticator]("auth")
INTAKE = web.AppKey[IntakeLike]("intake")
METRICS = web.AppKey[Metrics]("metrics")
HEALTH = web.AppKey[HealthChecks]("health")
RUNS_READER = web.AppKey[RunsReader]("runs_reader")
LOG = web.AppKey[FilteringBoundLogger]("log")
GUARDS = web.AppKey[GuardControl | None]("guards")
QUEUES = web.AppKey[QueueControl | None]("queues")
LOCKS = web.AppKey[LockRelease | None]("locks")
CLOCK = web.AppKey[Callable[[], datetime]]("clock")
STORE_DOWN_LOG = web.AppKey[Throttle]("store_down_log")
TRUNCATED_LOG = web.AppKey[Throttle]("truncated_log")


T = TypeVar("T")
PartHandler = Callable[[web.Request, T], Awaitable[web.Response]]


def with_optional(
    key: web.AppKey[T | None],
    absent: str,
    down: type[Exception],
    down_error: Callable[[Exception], str],
) -> Callable[[PartHandler[T]], Callable[[web.Request], Awaitable[web.Response]]]:
    """Routes over an optional dependency (``key``): the handler gets it as a second argument;
    404 with ``absent`` as the error when it is not configured, 503 with ``down_error(exc)``
    when it raises ``down`` (its server is out of reach)."""

    def decorate(handler: PartHandler[T]) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def wrapped(request: web.Request) -> web.Response:
            part = request.app[key]
            if part is None:
                return json_response({"error": absent}, 404)
            try:
                return await handler(request, part)
            except down as exc:
                return json_response({"error": down_error(exc)}, 503)

        return wrapped

    return decorate
