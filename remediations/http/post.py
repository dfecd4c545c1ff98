"""POST a JSON document to a URL: timeouts, bounded retries, typed errors. Shared by ``http.call``
and the notifier.

Retried (the same request may succeed later): a refused, reset or timed-out connection, 429 and
5xx. A ``Retry-After`` (seconds or an HTTP date) is honoured when it is within the policy's cap;
past the cap the call gives up rather than retry early against the server's word. Never
retried: any other 4xx (the request itself is wrong) and 3xx (redirects are not followed: the
allow-list names exact URLs). Retrying a POST may deliver it twice if an answer is lost: every
request carries an ``Idempotency-Key`` the receiver can deduplicate on.

An answer is judged by its status line; of its body only the start is read
(``answer.read_start``), and a body that stalls or breaks off is the body so far: a 2xx whose
body timed out is done, never sent again.

A call that fails says whether the endpoint may have acted on it (``ActionError.may_have_acted``,
over all its tries): a try whose connection was never made (refused, unreachable, a connect
timeout) or that was answered 429, 3xx or 4xx did not reach it, or was turned away; a try that
timed out or lost its connection after the request was sent, or was answered 5xx, may have
(``answer_may_have_acted``, ``failure_may_have_acted``).

URLs may hold secrets (a Slack webhook's path is its credential): messages name the ``what``
the caller passes and the host, never the URL. A response body is kept as a bounded excerpt
(it tells the reviewer why a call failed), with every secret the request carried replaced by
``[redacted]`` first: a server that echoes its request in an error puts nothing in the record.
So is the text of a failure's exception (aiohttp's quotes the URL as it sent it).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
from tenacity import RetryCallState, wait_exponential_jitter

from remediations.base import ActionError, ActionRefused, TransientActionError
from remediations.http.answer import read_start
from remediations.http.secrets import REDACTED, host_of, redact_url, redactor
from remediations.request_timeout import request_timeout
from remediations.retrying import call_with_retries, describe_exception
from remediations.tls import TlsTrust, tls_failure

__all__ = [
    "REDACTED",
    "USER_AGENT",
    "HttpPolicy",
    "Posted",
    "answer_may_have_acted",
    "failure_may_have_acted",
    "host_of",
    "json_body",
    "parse_retry_after",
    "post_json",
    "redactor",
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

    @property
    def longest_s(self) -> float:
        """The longest one ``post_json`` under this policy can take, in seconds: every attempt
        to its timeout (connect to last byte), and between two of them the longest wait, a
        backoff (at most ``max_wait``) or a ``Retry-After`` (at most ``max_retry_after``:
        past it the call gives up at once)."""
        wait = max(self.max_wait, self.max_retry_after)
        return self.attempts * self.timeout + (self.attempts - 1) * wait


@dataclass(frozen=True, slots=True)
class Posted:
    """A 2xx answer: its status, the start of its body, and how many attempts it took.
    ``broke``: why its body ended early (``"timed out"``), ``""`` when it did not."""

    status: int
    body: str
    attempts: int
    broke: str = ""


class _Retryable(Exception):
    """429 or 5xx: worth another attempt, after ``retry_after`` seconds when the server said."""

    def __init__(self, status: int, body: str, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body
        self.retry_after = retry_after


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or None for a
    value that is neither: not ASCII digits, no date, or a date no ``datetime`` holds (an
    HTTP date's year is four digits; ``99999999999`` raised OverflowError out of the call)."""
    if not value:
        return None
    text = value.strip()
    # delta-seconds is ASCII digits (RFC 9110 section 10.2.3); isdigit() alone also takes
    # other scripts' digits, which float() reads ("١٢٠" was 120 s), and superscripts, on which
    # float() raised out of the action.
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def answer_may_have_acted(status: int) -> bool:
    """Whether an answer of HTTP ``status`` says the endpoint may have acted on the request: a
    2xx did; a 5xx may have (the server took the request and failed on it, part way or before
    it began: that cannot be told from outside); so may a 303, the usual answer after a POST
    was processed (RFC 9110 section 15.4.4: "See Other" for its result), and a 301 or 302,
    which servers send the same way (section 15.4.3, "for historical reasons"). 429 (throttled
    before it was processed, RFC 6585 section 4), the other 3xx (307 and 308 ask for the same
    request elsewhere: not processed here) and the other 4xx (turned away) did not."""
    return 200 <= status < 300 or status >= 500 or status in _PROCESSED_REDIRECTS


# Redirects a server may send after it processed a POST (answer_may_have_acted).
_PROCESSED_REDIRECTS = frozenset({301, 302, 303})


def failure_may_have_acted(exc: BaseException) -> bool:
    """Whether a try that raised ``exc`` instead of an answer may have reached the endpoint.

    Not when the connection was never made (refused, unreachable, a name that does not resolve,
    a failed TLS handshake: ``ClientConnectorError``; a connect timeout:
    ``ConnectionTimeoutError``, for the connect bound of ``remediations.request_timeout``) or
    the URL is invalid: the request never left. Any other failure (a timeout while waiting for
    the answer, a connection reset or closed after the request was sent, a malformed answer,
    anything unforeseen) may have come after the endpoint acted: the safe side."""
    return not isinstance(
        exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError | aiohttp.InvalidURL
    )


def _transient(exc: BaseException) -> bool:
    # Not a TLS failure: a certificate refused now is refused a second later (``_tls``).
    if isinstance(exc, aiohttp.ClientSSLError):
        return False
    return isinstance(exc, _Retryable | aiohttp.ClientConnectionError | asyncio.TimeoutError)


def _tls(exc: aiohttp.ClientSSLError, what: str, url: str, trust: TlsTrust) -> ActionError:
    """A failed TLS handshake or a refused certificate, said as such (``remediations.tls``),
    with the setting or the server-side fix that ends it, instead of "could not be reached".

    A TransientActionError that did not act, so a step waits for it as for a system it could
    not reach (receiver/pipeline/unreachable.py) rather than failing at once: most of these
    are fixed on the server (a certificate renewed or reissued, its chain completed, a
    certificate being rotated) or in this service's configuration and a restart, within the
    minutes the step waits, and an undo failed at once would leave its change in place. It is
    not retried within the call: a handshake refused now is refused a second later."""
    host = host_of(url)
    failure = tls_failure(exc, trust, host)
    text = failure.words() if failure is not None else f"TLS failed with {host}"
    return TransientActionError(f"{what} ({host}): {text}")


def _recordable(text: str) -> str:
    """``text`` with each U+0000 written ``\\x00``: the excerpt goes into the step's record
    and the announcement's audit row, and PostgreSQL's text and jsonb cannot hold U+0000. A
    server whose answer holds one (a binary error page, a stray byte) would otherwise make the
    record fail on every retry: the event dead, the step's real outcome lost, a notification
    sent again at each retry."""
    return text.replace("\x00", "\\x00")


def _describe(exc: BaseException, url: str, redact: Callable[[str], str]) -> str:
    if isinstance(exc, _Retryable):
        return f"HTTP {exc.status}: {exc.body[:200]}".rstrip(": ")
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "timed out connecting (nothing sent)"
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    # An exception's text may quote the URL (a malformed answer's ClientResponseError ends
    # ``url='...'``) or a part of it: the URL goes first, keeping its host, then every secret.
    return redact(redact_url(describe_exception(exc), url))


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
    secrets: Iterable[str] = (),
    trust: TlsTrust | None = None,
) -> Posted:
    """POST ``payload`` as JSON to ``url``; the answer when it is 2xx.

    Raises ActionRefused for 3xx and 4xx other than 429 (with the status and the start of the
    body), TransientActionError when retries are exhausted or a Retry-After exceeds the cap,
    each with ``may_have_acted`` True when any try may have reached the endpoint (the module
    docstring).
    ``what`` names the destination in messages, e.g. ``"endpoint 'flush_cache'"``. ``secrets``
    are the header values that are credentials: they, and the URL's secret parts, are redacted
    from every excerpt of a response body (``Posted.body`` and the messages alike).
    ``trust``: the CAs the server's certificate is checked against (``TlsTrust.context``; the
    system's, or ``SSL_CERT_FILE``, when None) and the setting a TLS failure's message names.
    A TLS failure (a refused certificate, a failed handshake) raises TransientActionError
    saying so (``_tls``), ``may_have_acted`` False: no request is sent over such a connection.
    """
    trust = trust or TlsTrust("SSL_CERT_FILE")
    redact = redactor(url, secrets)
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
    # Whether a try so far may have reached the endpoint and acted on it.
    reached = False

    async def attempt() -> Posted:
        nonlocal attempts, reached
        attempts += 1
        try:
            return await send()
        except (ActionError, _Retryable):
            raise  # an answer: ``send`` judged it by its status
        except Exception as exc:
            reached = reached or failure_may_have_acted(exc)
            raise

    async def send() -> Posted:
        nonlocal reached
        timeout = request_timeout(policy.timeout)
        async with session.post(
            url,
            data=body,
            headers=sent_headers,
            timeout=timeout,
            allow_redirects=False,
            # True: aiohttp's verifying default context. Never off: no setting turns it off.
            ssl=trust.context if trust.context is not None else True,
        ) as response:
            status = response.status
            # Before the body is read: a 2xx whose body breaks off has acted all the same.
            reached = reached or answer_may_have_acted(status)
            # Only the start is read (a body may be huge or endless), and a body that breaks
            # off is the body so far: the status stands (``answer``). Redacted before it is
            # cut, so no half of a secret survives at the edge.
            start = await read_start(response)
            text = _recordable(redact(start.text))[:_EXCERPT]
            if 200 <= status < 300:
                return Posted(status, text, attempts, start.broke)
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
                processed = (
                    "; the endpoint may have processed the request before it (HTTP 303 and"
                    " the like answer a processed POST): check it"
                    if status in _PROCESSED_REDIRECTS
                    else ""
                )
                raise ActionRefused(
                    f"{what} ({host_of(url)}) answered a redirect (HTTP {status}); redirects "
                    f"are not followed: configure the URL it points to{processed}"
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
            describe=lambda exc: _describe(exc, url, redact),
        )
    except aiohttp.ClientSSLError as exc:
        error = _tls(exc, what, url, trust)
        error.may_have_acted = reached  # an earlier try's (a timed-out one) may have acted
        raise error from exc
    except ActionError as exc:
        # Over every try, not only the last: a timed-out try may have acted before a refused one.
        exc.may_have_acted = reached
        raise
    except aiohttp.ClientError as exc:
        # Not worth another attempt (an invalid URL, a malformed answer); say what, not where.
        raise ActionError(
            f"{what} ({host_of(url)}): {_describe(exc, url, redact)}", may_have_acted=reached
        ) from exc
