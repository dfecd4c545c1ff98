"""The work queues as operators see them: alert events and jobs, and their dead letters.

``GET /api/v1/events`` and ``GET /api/v1/jobs`` list items newest first (``state`` one of
pending, claimed, done, dead; ``limit`` 1..500; ``cursor`` from ``next_cursor``), events by
``alertname``, ``fingerprint`` and ``skipped`` (true: rules were skipped for it), jobs by
``kind`` and ``run_id``. ``GET .../{id}`` is one item: its state, attempts, failures, last error,
settled reason and, for an event, the rules skipped for it and why.

``POST .../{id}/retry`` puts a dead item back in its queue; ``POST .../{id}/drop`` settles a
dead or pending one without processing it. Body: ``{"reason": "..."}`` (required to drop). Both
are audited with the reason and the operator whose token was sent (``by``); 404 for an unknown
id, 409 naming the state when the action does not apply, 503 without the store. A dropped job's
answer says what ended with it (``run_ended``, ``steps_ended``, ``approvals_cancelled``:
store/job_ends.py); a run ended while it waited for an approval, or while running, may still
hold its target lock, released here once the drop committed, by the exact token of the run's
last admission of its own steps (never a lock its undo or escalation took under the same run id,
nor another run's; ``target_lock``: ``released`` true, false when the lock did not hold that
token, null with a ``note`` when Redis did not answer: a ``release_lock`` job, ``release_job``
its id, then gives it back once Redis answers, pipeline/lock_release.py; the lock ends with its
TTL only when that job cannot be queued either; the ``finish_end`` job queued with the drop names
the same token, so a crash after the commit does not keep it either). The ended run and its
cancelled approvals are counted here (``_run_ended``); their unused budget slot given back (only
when no step of it may have acted) and the approvers told are the ``finish_end`` job's, queued with
the drop (``finish_job``: its id; pipeline/finish_end.py): the answer waits for neither Redis nor
the approvers' channel for them, and a crash after the commit loses neither. ``steps_interrupted``
names the ended steps a worker had stopped in (they may have acted); ``not_done``, what the dropped
job would have done that nothing does now.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from receiver.guards.policy import Admission, AdmissionRequest, GuardError, GuardUnavailable
from receiver.http.auth import principal
from receiver.http.bodies import BadField, bad_field, json_object, reason_of
from receiver.http.deps import LOCKS, METRICS, QUEUES, LockRelease, QueueControl, with_optional
from receiver.http.filters import (
    BadParameter,
    choice,
    limit_param,
    run_id_param,
    unknown_parameter,
)
from receiver.http.responses import json_response
from receiver.model import ApprovalState, GuardSpec
from receiver.pipeline.lock_release import GIVE_BACK, HELD_BY_RUN
from receiver.store import (
    QUEUE_STATES,
    ItemConflict,
    ItemNotFound,
    JobEnd,
    JobKind,
    StoreUnavailable,
)
from receiver.telemetry import Metrics
from remediations.targets import Target

__all__ = ["EVENTS_PATH", "JOBS_PATH", "add_queue_routes"]

EVENTS_PATH = "/api/v1/events"
JOBS_PATH = "/api/v1/jobs"

Handler = Callable[[web.Request], Awaitable[web.Response]]

# A queue's cursor is a row's id, a bigint: ASCII digits (str.isdigit also takes other
# scripts' digits) up to PostgreSQL's largest bigint (a larger one was a DataError: a 500).
_DIGITS = re.compile(r"[0-9]{1,19}")
_MAX_BIGINT = 2**63 - 1


def _row_id(text: str) -> bool:
    return _DIGITS.fullmatch(text) is not None and int(text) <= _MAX_BIGINT


# Per queue: its plural in paths and answers, and its filters beyond state/limit/cursor.
_QUEUES = {
    "event": ("events", EVENTS_PATH, ("alertname", "fingerprint", "skipped")),
    "job": ("jobs", JOBS_PATH, ("kind", "run_id")),
}


def add_queue_routes(router: web.UrlDispatcher) -> None:
    """Register the list, read, retry and drop routes of both queues."""
    for kind, (_, path, _filters) in _QUEUES.items():
        router.add_get(path, _with_store(_lister(kind)))
        router.add_get(path + "/{id}", _with_store(_reader(kind)))
        router.add_post(path + "/{id}/retry", _with_store(_actor(kind, "retry")))
        router.add_post(path + "/{id}/drop", _with_store(_actor(kind, "drop")))


QueueHandler = Callable[[web.Request, QueueControl], Awaitable[web.Response]]

# The shared answers: 404 when no store is configured, 503 when it is unreachable.
_with_store = with_optional(
    QUEUES, "the work queues are not configured", StoreUnavailable, lambda _: "store unavailable"
)


def _lister(kind: str) -> QueueHandler:
    plural, _, names = _QUEUES[kind]

    async def handler(request: web.Request, queues: QueueControl) -> web.Response:
        """``{<plural>: [...], next_cursor}``; 400 naming the parameter that is wrong."""
        try:
            filters = _filters(request.query, names)
        except BadParameter as exc:
            return json_response({"error": exc.message, "parameter": exc.parameter}, 400)
        if kind == "event":
            rows, next_cursor = await queues.list_events(**filters)
        else:
            rows, next_cursor = await queues.list_jobs(**filters)
        return json_response({plural: rows, "next_cursor": next_cursor})

    return handler


def _reader(kind: str) -> QueueHandler:
    async def handler(request: web.Request, queues: QueueControl) -> web.Response:
        """``{<kind>: {...}}``; 404 for an unknown id."""
        item_id = _item_id(request)
        item = None
        if item_id is not None:
            read = queues.event_view if kind == "event" else queues.job_view
            item = await read(item_id)
        if item is None:
            return json_response({"error": f"no {kind} {request.match_info['id']}"}, 404)
        return json_response({kind: item})

    return handler


def _actor(kind: str, action: str) -> QueueHandler:
    async def handler(request: web.Request, queues: QueueControl) -> web.Response:
        """``{<kind>: {...}}`` as it is after the action; 400, 404, 409 as the module says."""
        reason = await _reason(request, required=action == "drop")
        if isinstance(reason, web.Response):
            return reason
        item_id = _item_id(request)
        if item_id is None:
            return json_response({"error": f"no {kind} {request.match_info['id']}"}, 404)
        # The operator whose token was sent is who acted: the audit row, the run's timeline
        # and the approvers' notice say "dropped by WHO". "api" named no one.
        actor = principal(request).name
        try:
            if action == "retry":
                item = await queues.retry_item(kind, item_id, actor=actor, reason=reason)
            else:
                item = await _drop(request.app, queues, kind, item_id, reason or "", actor)
        except ItemNotFound as exc:
            return json_response({"error": str(exc)}, 404)
        except ItemConflict as exc:
            return json_response({"error": str(exc)}, 409)
        return json_response({kind: item})

    return handler


async def _drop(
    app: web.Application,
    queues: QueueControl,
    kind: str,
    item_id: int,
    reason: str,
    actor: str,
) -> dict[str, Any]:
    """Drop the item as operator ``actor``; for a job, once the drop committed, release the
    target lock its ended run's admission took (``_release``) and count what it ended
    (``_run_ended``)."""
    if kind == "event":
        return await queues.drop_item(kind, item_id, actor=actor, reason=reason)
    item, ended = await queues.drop_job(item_id, actor=actor, reason=reason)
    if "target_lock" in item and ended is not None:
        item["target_lock"] = await _release(app[LOCKS], queues, item, ended.lock_token)
    if ended is not None:
        _run_ended(app[METRICS], ended)
    return item


def _run_ended(metrics: Metrics, ended: JobEnd) -> None:
    """Count what the drop ended, as every other path that ends a run or its approvals does
    once the end committed: the run (``remediator_runs_total``), the approvals it cancelled
    (``remediator_approvals_total{state="cancelled"}``). In this process, which answered
    the drop: the rest (the budget slot, the approvers' notice) is the ``finish_end`` job's."""
    if ended.outcome is not None:
        metrics.run_finished(ended.rule, ended.outcome)
    for approval in ended.approvals:
        metrics.approval(approval.rule, ApprovalState.CANCELLED.value)


async def _release(
    locks: LockRelease | None, queues: QueueControl, item: Mapping[str, Any], token: str | None
) -> dict[str, Any]:
    """Release the target lock that the run a drop ended may still hold (a parked or running
    run whose worker died before giving it back), after the drop committed: only while it
    holds exactly ``token``, the one the run's last admission of its own steps took (its
    ``run.admitted`` row, read by the drop's transaction: ``JobEnd.lock_token``, the token its
    ``finish_end`` job names too; compare-and-delete, ``Guards.release``),
    so never a lock the run's undo or escalation took under the same run id with a token of
    its own, nor another run's. A run the store never saw admitted has no token: the lock is
    released if that run holds it under any token (``Guards.release_run``: such a run changed
    nothing, so no follow-up of it holds a lock). Before, the drop released whatever lock the
    run held, a live follow-up's included. The item's ``target_lock`` with ``released``: true
    (released now), false (not held so), or null with a ``note``. Redis not answering: a
    ``release_lock`` job naming the same token (or ``held_by_run``) is queued on ``queues``
    and named (``release_job``), as a pass that ends a run does (pipeline/lock_release.py).
    Left to ``guards.lock_ttl`` (unless the drop's ``finish_end`` job releases it) only when
    the job cannot be queued (the store not answering), on a script error, or with no guards
    here."""
    lock = dict(item["target_lock"])
    where = lock["target"]
    target = Target(where["kind"], where["namespace"], where["name"])
    request = AdmissionRequest(str(item["run_id"]), lock["rule"], target, False, GuardSpec())
    if locks is None:
        return {**lock, "released": None, "note": "no guards here: the lock ends with its TTL"}
    if token == "":
        # Admitted without a lock, or by a version that did not record its token.
        return {**lock, "released": False}
    try:
        if token is None:
            released = await locks.release_run(request)
        else:
            released = await locks.release(request, Admission(True, lock_token=token))
        return {**lock, "released": released}
    except GuardError as exc:
        # A script error: asking again would fail again.
        note = f"guards error ({exc}): the lock, if held, ends with its TTL"
        return {**lock, "released": None, "note": note}
    except GuardUnavailable as exc:
        unanswered = f"guards unavailable ({exc})"
    payload = {HELD_BY_RUN: True} if token is None else {GIVE_BACK + token: True}
    try:
        job = await queues.enqueue_job(JobKind.RELEASE_LOCK, request.run_id, payload=payload)
    except StoreUnavailable as exc:
        note = f"{unanswered}, and its release could not be queued ({exc}): "
        return {**lock, "released": None, "note": note + "the lock, if held, ends with its TTL"}
    if job is None:  # the run is gone (pruned): its lock was nobody's to keep
        note = f"{unanswered}; the run no longer exists: the lock, if held, ends with its TTL"
        return {**lock, "released": None, "note": note}
    note = f"{unanswered}: release_lock job {job} gives the lock back once Redis answers"
    return {**lock, "released": None, "note": note, "release_job": job}


def _item_id(request: web.Request) -> int | None:
    text = request.match_info["id"]
    # Ids are bigserial: a longer number is no id either (and would overflow the column).
    return int(text) if _row_id(text) else None


async def _reason(request: web.Request, *, required: bool) -> str | web.Response | None:
    """The body's ``reason`` (stripped), or the 400 answer naming what is wrong."""
    try:
        body = await json_object(request, fields=("reason",), required=False)
        return reason_of(body, required="say why it is dropped" if required else None)
    except BadField as exc:
        return bad_field(exc)


def _filters(query: Mapping[str, str], names: tuple[str, ...]) -> dict[str, Any]:
    """Keyword arguments for ``list_events``/``list_jobs``; BadParameter names a bad one."""
    allowed = {"state", "limit", "cursor", *names}
    filters: dict[str, Any] = {}
    for name, value in query.items():
        if name not in allowed:
            raise unknown_parameter(name)
        if not value.strip():
            raise BadParameter(name, f"{name} must not be empty")
        filters[name] = value
    choice(filters, "state", QUEUE_STATES)
    choice(filters, "kind", (k.value for k in JobKind))
    if "cursor" in filters and not _row_id(filters["cursor"]):
        raise BadParameter("cursor", "invalid cursor: pass the next_cursor of a previous page")
    run_id_param(filters, "run_id")
    if "skipped" in filters:
        filters["skipped"] = choice(filters, "skipped", ("true", "false")) == "true"
    limit = limit_param(filters)
    filters["limit"] = limit
    return filters
