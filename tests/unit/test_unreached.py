"""What a step that gave up on its system says the last try met (remediations/unreached.py):
the failure its TransientActionError is chained to, read without any server."""

from __future__ import annotations

import errno
import socket
import ssl

import aiohttp
import pytest

from remediations.base import TransientActionError
from remediations.http.post import _Retryable
from remediations.unreached import Unreached, how_unreached


def gave_up(cause: BaseException | None) -> TransientActionError:
    """The error call_with_retries raises, chained to ``cause`` (the last try's failure)."""
    try:
        raise TransientActionError("gave up after 4 attempts", may_have_acted=False) from cause
    except TransientActionError as exc:
        return exc


class ApiException(Exception):
    """kubernetes_asyncio's ApiException, as far as it is read: status and headers."""

    def __init__(self, status: int, headers: dict[str, str]) -> None:
        super().__init__(f"({status})")
        self.status = status
        self.headers = headers


@pytest.mark.parametrize(
    ("cause", "headline", "last"),
    [
        (
            ConnectionRefusedError(errno.ECONNREFUSED, "refused"),
            "could not be reached",
            "never connected",
        ),
        (
            socket.gaierror(socket.EAI_NONAME, "no such name"),
            "could not be reached",
            "never connected",
        ),
        (OSError(errno.EHOSTUNREACH, "no route"), "could not be reached", "never connected"),
        (aiohttp.ConnectionTimeoutError("connect"), "could not be reached", "timed out connecting"),
        # asyncpg's and redis-py's TLS failures: an OSError, whose errno (1) is OpenSSL's.
        (
            ssl.SSLCertVerificationError(1, "certificate verify failed"),
            "could not be reached over TLS",
            "failed its TLS handshake",
        ),
        (
            ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"),
            "could not be reached over TLS",
            "failed its TLS handshake",
        ),
        (
            _Retryable(429, "slow down", 2.0),
            "was reached and refused the request",
            "was answered 429 Too Many Requests, Retry-After 2s",
        ),
        (
            _Retryable(429, "slow down", None),
            "was reached and refused the request",
            "was answered 429 Too Many Requests, without a Retry-After",
        ),
        (
            ApiException(429, {"Retry-After": "5"}),
            "was reached and refused the request",
            "was answered 429 Too Many Requests, Retry-After 5",
        ),
        (_Retryable(503, "", None), "was reached and failed the request", "was answered HTTP 503"),
        (TimeoutError(), "did not answer", "failed reading its answer"),
        (aiohttp.ServerDisconnectedError(), "did not answer", "failed reading its answer"),
        (
            ConnectionResetError(errno.ECONNRESET, "reset"),
            "did not answer",
            "failed reading its answer",
        ),
        (None, "did not answer", "failed reading its answer"),
    ],
)
def test_the_last_tries_failure_in_words(
    cause: BaseException | None, headline: str, last: str
) -> None:
    assert how_unreached(gave_up(cause)) == Unreached(headline, last)


def test_a_failure_wrapped_twice_is_read_through() -> None:
    """A family's own error raised from call_with_retries's, raised from the try's."""
    inner = gave_up(ConnectionRefusedError(errno.ECONNREFUSED, "refused"))
    assert how_unreached(gave_up(inner)).last == "never connected"
