"""Calling the Kubernetes API: bounded retries on transient failures, typed errors for the rest.

Transient means the request may succeed if sent again unchanged: a broken or timed-out
connection, 429 (API priority and fairness throttling) or 5xx. Every other status is an answer
about the request itself (bad, forbidden, missing, conflicting) and is never retried; so are
an eviction's refusals by a PodDisruptionBudget (``budget_refusal``), a 429 and a 500 that
only change once the budget's pods do, minutes later if ever. An eviction's 429 saying the
budget "is still being processed" (``budget_pending``) passes once the disruption controller
catches up, which can take longer than this policy's tries: the eviction retries it with its
own patience (``evict.BUDGET_PENDING``), so it is not retried here either.

A call whose retries run out says whether it may have acted (``failure_may_have_acted``, over
every try): a try whose connection was never made (refused, unreachable, a name that does not
resolve, a failed TLS handshake, a connect timeout) sent nothing, and one answered 429 was
throttled before it was processed; a try that timed out or lost its connection after sending,
or was answered 5xx, may have acted. So a write whose every try failed to connect, an
apiserver down, says ``may_have_acted`` False, and its step waits for the server
(receiver/pipeline/unreachable.py) instead of failing as one that may have acted.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp

from remediations.base import ActionRefused
from remediations.kubernetes.api_errors import is_api_exception
from remediations.retrying import (
    DEFAULT_RETRY,
    RetryPolicy,
    call_with_retries,
    describe_exception,
)

if TYPE_CHECKING:
    from kubernetes_asyncio.client.exceptions import ApiException

__all__ = [
    "DEFAULT_RETRY",
    "RetryPolicy",
    "api_message",
    "budget_pending",
    "budget_refusal",
    "call",
    "describe_failure",
    "failure_may_have_acted",
    "is_transient",
    "refusal",
]

T = TypeVar("T")


# The StatusCause type (its JSON "reason") the API server gives an eviction that a
# PodDisruptionBudget refuses (policyv1.DisruptionBudgetCause), and the message of its 500 for
# a pod that more than one budget selects (pkg/registry/core/pod/storage/eviction.go,
# EvictionREST.Create).
DISRUPTION_BUDGET_CAUSE = "DisruptionBudget"
MANY_BUDGETS = "more than one PodDisruptionBudget"
# The end of that cause's message when the budget could not be checked yet, not when it
# refused (createTooManyRequestsError): its status is older than its spec (the disruption
# controller has not observed its latest generation), or the pod changed while an unready one
# was being deleted. Both pass by themselves, seconds later.
STILL_PROCESSED = "is still being processed by the server"


def is_transient(exc: BaseException) -> bool:
    """Whether sending the same request again may succeed: connection errors, 429, 5xx; not
    an eviction a PodDisruptionBudget refused (``budget_refusal``) nor one whose budget is
    still being processed (``budget_pending``: the eviction retries it itself)."""
    if is_api_exception(exc):
        if budget_refusal(exc) is not None or budget_pending(exc) is not None:
            return False
        status = exc.status or 0
        # status 0: the client itself raised it without any HTTP answer (not a server verdict).
        return status == 429 or status >= 500
    return isinstance(exc, aiohttp.ClientConnectionError | asyncio.TimeoutError)


def failure_may_have_acted(exc: BaseException) -> bool:
    """Whether a try that failed with ``exc`` may have reached the API server and acted.

    Not when its connection was never made (``aiohttp.ClientConnectorError``: refused,
    unreachable, a name that does not resolve, a failed TLS handshake;
    ``ConnectionTimeoutError``: a connect timeout, raised for the connect bound every request
    carries, ``remediations.request_timeout``): no byte of the request was sent. Nor a 429: API
    priority and fairness throttles a request before any handler runs. A 5xx may have (the
    server took the request and failed on it, part way or before it began), and so may any other
    failure: a timeout waiting for the answer, a connection closed after the request was sent,
    anything unforeseen (the safe side). Followed from
    ``remediations.http.post.failure_may_have_acted``."""
    if is_api_exception(exc):
        return exc.status != 429
    return not isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)


def _status_body(exc: ApiException) -> dict[str, Any] | str:
    """The Status object the API server sent with ``exc`` (a dict), else its body's text."""
    body: Any = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    if not isinstance(body, str) or not body:
        return ""
    try:
        status = json.loads(body)
    except ValueError:
        return body.strip()[:500]
    return status if isinstance(status, dict) else ""


def api_message(exc: ApiException) -> str:
    """The ``message`` of the Status object the API server sent, else the HTTP reason."""
    status = _status_body(exc)
    if isinstance(status, str) and status:
        return status
    if isinstance(status, dict) and status.get("message"):
        return str(status["message"])
    return f"HTTP {exc.status} {exc.reason or ''}".strip()


def _budget_causes(exc: ApiException) -> list[str] | None:
    """The messages of the ``DisruptionBudget`` causes of a 429 (on the wire each cause's
    ``reason``, StatusCause.Type's JSON name); None for any other answer, or a 429 without
    one (API priority and fairness throttling)."""
    status = _status_body(exc)
    if exc.status != 429 or not isinstance(status, dict):
        return None
    causes = (status.get("details") or {}).get("causes") or []
    said = [
        str(c.get("message") or "")
        for c in causes
        if isinstance(c, dict) and c.get("reason") == DISRUPTION_BUDGET_CAUSE
    ]
    if not said:
        return None
    return [m for m in said if m] or [str(status.get("message") or "")]


def budget_pending(exc: ApiException) -> str | None:
    """The cause's message of an eviction's 429 whose PodDisruptionBudget could not be
    checked yet ("The disruption budget web is still being processed by the server."): its
    status is older than its spec, or the pod changed under the check. It passes once the
    disruption controller catches up. None for any other answer."""
    said = _budget_causes(exc)
    if said is None or not any(STILL_PROCESSED in m for m in said):
        return None
    return "; ".join(said)


def budget_refusal(exc: ApiException) -> str | None:
    """Why a PodDisruptionBudget refused an eviction, as the API server says it; None for
    any other answer. A 429 whose Status has a cause of type ``DisruptionBudget`` whose
    message names the budget and why it allows no disruption now ("The disruption budget web
    needs 2 healthy pods and has 2 currently"), but not one still being processed
    (``budget_pending``); and the 500 for a pod that more than one budget selects, which the
    Eviction API does not support. An API priority and fairness 429 has no such cause: it
    stays transient."""
    said = _budget_causes(exc)
    if said is not None:
        return None if budget_pending(exc) is not None else "; ".join(said)
    status = _status_body(exc)
    if (
        exc.status == 500
        and isinstance(status, dict)
        and MANY_BUDGETS in str(status.get("message") or "")
    ):
        return str(status["message"])
    return None


def describe_failure(exc: BaseException) -> str:
    """One line for an operator: ``"HTTP 503: <API message>"`` or the exception's type and text."""
    if is_api_exception(exc):
        return f"HTTP {exc.status}: {api_message(exc)}"
    return describe_exception(exc)


async def call(
    policy: RetryPolicy,
    what: str,
    fn: Callable[[], Awaitable[T]],
    *,
    allow: tuple[int, ...] = (),
) -> T:
    """Run ``fn`` under ``policy``; map failures to the action errors.

    ``what`` names the object for messages, e.g. ``"Deployment shop/web"``. A 404 becomes
    ActionRefused("<what> not found"), any other 4xx ActionRefused with the API's own message
    (for 403 it names the user, verb and resource), exhausted retries TransientActionError.
    Statuses in ``allow`` are re-raised as the ApiException, for the caller to handle.
    The TransientActionError's ``may_have_acted`` is False only when no try may have acted
    (``failure_may_have_acted``: every one failed to connect, or was throttled).
    """
    try:
        return await call_with_retries(
            fn,
            what=what,
            attempts=policy.attempts,
            wait=policy.backoff(),
            transient=is_transient,
            describe=describe_failure,
            acted=failure_may_have_acted,
        )
    except Exception as exc:
        if not is_api_exception(exc) or exc.status in allow:
            raise
        raise refusal(exc, what) from exc


def refusal(exc: ApiException, what: str) -> ActionRefused:
    """The ActionRefused for a 4xx answer about ``what``, worded per status (404, 403, 409)."""
    if exc.status == 404:
        return ActionRefused(f"{what} not found")
    if exc.status == 403:
        return ActionRefused(f"forbidden: {api_message(exc)}")
    if exc.status == 409:
        return ActionRefused(f"{what} changed concurrently: {api_message(exc)}")
    return ActionRefused(
        f"{what}: rejected by the API server (HTTP {exc.status}): {api_message(exc)}"
    )
