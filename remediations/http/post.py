"""POST a JSON document to a URL: timeouts, bounded retries, typed errors. Shared by ``http.call``
and the notifier.

Retried (the same request may succeed later): a refused, reset or timed-out connection, 429 and
5xx. A ``Retry-After`` (seconds or an HTTP date) is honoured when it is within the policy's cap;
past the cap the call gives up rather than retry early against the server's word. Never
retried: any other 4xx (the request itself is wrong) and 3xx (redirects are not followed: the
allow-list names exact URLs). Retrying a POST may deliver it twice if an answer is lost: every
request carries an ``Idempotency-Key`` the receiver can deduplicate on.

URLs may hold secrets (a Slack webhook's path is its credential): messages name the ``what``
the caller passes and the host, never the URL.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from tenacity import RetryCallState, wait_exponential_jitter

from remediations.base import ActionError, ActionRefused, TransientActionError
from remediations.retrying import call_with_retries, describe_exception

__all__ = [
    "USER_AGENT",
    "HttpPolicy",
    "Posted",
    "host_of",
    "json_body",
    "parse_retry_after",
    "post_json",
]

USER_AGENT = "alert-remediator/0.1"
_EXCERPT = 500  # characters of a response body kept for the record


@dataclass(frozen=True, slots=True)
class HttpPolicy:
    """How hard one POST is tried. Seconds throughout."""

    timeout: float = 10.0  # one attempt, connect to last byte
    attempts: int = 4  # total tries, the first included
    initial_wait: float = 0.5  # before the second try; doubles each time
    max_wait: float = 8.0  # ceiling of one backoff wait
    max_retry_after: float = 30.0  # the longest Retry-After honoured; past it, give up

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if min(self.timeout, self.initial_wait, self.max_wait, self.max_retry_after) < 0:
            raise ValueError("waits and timeouts must not be negative")


@dataclass(frozen=True, slots=True)
class Posted:
    """A 2xx answer: its status, the start of its body, and how many attempts it took."""

    status: int
    body: str
    attempts: int


class _Retryable(Exception):
    """429 or 5xx: worth another attempt, after ``retry_after`` seconds when the server said."""

    def __init__(self, status: int, body: str, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body
        self.retry_after = retry_after


def host_of(url: str) -> str:
    """The host (and port) of ``url``, for messages: never the path, query or credentials."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{host}:{parts.port}" if parts.port else host


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, _Retryable | aiohttp.ClientConnectionError | asyncio.TimeoutError)


def _redact(text: str, url: str) -> str:
    """``text`` without ``url`` or its path and query (where webhook secrets live)."""
    parts = urlsplit(url)
    secret = parts.path + (f"?{parts.query}" if parts.query else "")
    text = text.replace(url, f"{parts.scheme}://{host_of(url)}/…")
    return text.replace(secret, "/…") if len(secret) > 1 else text


def _describe(exc: BaseException, url: str) -> str:
    if isinstance(exc, _Retryable):
        return f"HTTP {exc.status}: {exc.body[:200]}".rstrip(": ")
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    return _redact(describe_exception(exc), url)


def json_body(payload: Any) -> bytes:
    """The exact bytes ``post_json`` sends for ``payload``: compact JSON, UTF-8, non-ASCII kept
    as is. A preview counts and shows these bytes, so what is approved is what is sent."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    payload: Any,
    *,
    what: str,
    policy: HttpPolicy,
    headers: Mapping[str, str] | None = None,
) -> Posted:
    """POST ``payload`` as JSON to ``url``; the answer when it is 2xx.

    Raises ActionRefused for 3xx and 4xx other than 429 (with the status and the start of the
    body), TransientActionError when retries are exhausted or a Retry-After exceeds the cap.
    ``what`` names the destination in messages, e.g. ``"endpoint 'flush_cache'"``.
    """
    body = json_body(payload)
    sent_headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        **(headers or {}),
    }
    backoff = wait_exponential_jitter(
        multiplier=policy.initial_wait, max=policy.max_wait, jitter=policy.initial_wait / 2
    )

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return exc.retry_after
        return float(backoff(state))

    attempts = 0

    async def attempt() -> Posted:
        nonlocal attempts
        attempts += 1
        timeout = aiohttp.ClientTimeout(total=policy.timeout)
        async with session.post(
            url, data=body, headers=sent_headers, timeout=timeout, allow_redirects=False
        ) as response:
            text = (await response.text(errors="replace"))[:_EXCERPT]
            status = response.status
            if 200 <= status < 300:
                return Posted(status, text, attempts)
            if status == 429 or status >= 500:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                if retry_after is not None and retry_after > policy.max_retry_after:
                    raise TransientActionError(
                        f"{what} ({host_of(url)}): HTTP {status}, asked to retry after "
                        f"{retry_after:g}s, more than the {policy.max_retry_after:g}s cap; "
                        "gave up"
                    )
                raise _Retryable(status, text, retry_after)
            if 300 <= status < 400:
                raise ActionRefused(
                    f"{what} ({host_of(url)}) answered a redirect (HTTP {status}); redirects "
                    "are not followed: configure the URL it points to"
                )
            raise ActionRefused(
                f"{what} ({host_of(url)}) refused the request: HTTP {status}: {text[:200]}"
            )

    try:
        return await call_with_retries(
            attempt,
            what=f"{what} ({host_of(url)})",
            attempts=policy.attempts,
            wait=wait,
            transient=_transient,
            describe=lambda exc: _describe(exc, url),
        )
    except aiohttp.ClientError as exc:
        # Not worth another attempt (an invalid URL, a malformed answer); say what, not where.
        raise ActionError(f"{what} ({host_of(url)}): {_describe(exc, url)}") from exc
