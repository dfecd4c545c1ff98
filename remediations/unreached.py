"""What an action's last failed try met when it gave up without acting, in words.

A step whose action gave up before anything could have acted (``TransientActionError`` with
``may_have_acted`` False) waits for its system, then fails once it has waited its bound
(receiver/pipeline/unreachable.py). Its message said the tries "failed before anything was
sent", which is wrong when the system answered: a 429 (throttled, RFC 6585 section 4) or a
5xx to a read was sent, reached the system, and came back refused. ``how_unreached`` reads
the failure the error is chained to (``call_with_retries`` raises it ``from`` the last try's
failure) and says which it was: the connection never made, its TLS handshake failed (a
refused certificate: ``remediations.tls``), connecting timed out, the system
answered (429 and its ``Retry-After``, or another status), or a read failed after the
connection was made. Only the last try's failure is known: the words say "the last".
"""

from __future__ import annotations

import errno
import socket
import ssl
from dataclasses import dataclass

import aiohttp

from remediations.base import TransientActionError

__all__ = ["Unreached", "how_unreached"]

# OSError numbers of a connection that was never made (no route, nothing listening).
_NOT_CONNECTED = frozenset(
    {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL}
)

# How far down the chain of causes a known failure is looked for (an error wrapped twice:
# a family's error raised from call_with_retries's, raised from the try's).
_DEPTH = 4


@dataclass(frozen=True, slots=True)
class Unreached:
    """``headline``: what happened, after the system's name ("could not be reached", "was
    reached and refused the request"); ``last``: what the last try met, after "the last"
    ("never connected", "was answered 429 Too Many Requests, Retry-After 30s")."""

    headline: str
    last: str


_NEVER_CONNECTED = Unreached("could not be reached", "never connected")
_CONNECT_TIMEOUT = Unreached("could not be reached", "timed out connecting")
_READ_FAILED = Unreached("did not answer", "failed reading its answer")
# A refused certificate or a failed handshake: connected, yet nothing sent (remediations/tls.py).
# Said apart from "never connected", which sends its reader after the network, when the fix
# is a CA bundle, a certificate or the URL.
_TLS_FAILED = Unreached("could not be reached over TLS", "failed its TLS handshake")


def how_unreached(exc: TransientActionError) -> Unreached:
    """What ``exc``'s last try met (module docstring), from the failure it is chained to
    (``__cause__``, then that one's). A failure of no kind known here (none chained, or an
    exception this module does not know) is a read that failed: the safe words, which claim
    neither that nothing was connected to nor that the system answered."""
    cause: BaseException | None = exc.__cause__
    for _ in range(_DEPTH):
        if cause is None:
            break
        known = _known(cause)
        if known is not None:
            return known
        cause = cause.__cause__
    return _READ_FAILED


def _known(exc: BaseException) -> Unreached | None:
    status = getattr(exc, "status", None)
    # An answer: remediations.http's retryable one, an aiohttp ClientResponseError, a
    # kubernetes_asyncio ApiException (status 0 there: no answer, a connection error).
    if isinstance(status, int) and status >= 100:
        return _answered(exc, status)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return _CONNECT_TIMEOUT
    # Before ClientConnectorError, its base class; ssl.SSLError (asyncpg's, redis-py's) is an
    # OSError whose errno is OpenSSL's, none of _NOT_CONNECTED's.
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        return _TLS_FAILED
    if isinstance(exc, aiohttp.ClientConnectorError | ConnectionRefusedError | socket.gaierror):
        return _NEVER_CONNECTED
    if isinstance(exc, OSError) and exc.errno in _NOT_CONNECTED:
        return _NEVER_CONNECTED
    return None


def _answered(exc: BaseException, status: int) -> Unreached:
    if status == 429:
        retry_after = _retry_after(exc)
        wait = f", Retry-After {retry_after}" if retry_after else ", without a Retry-After"
        return Unreached(
            "was reached and refused the request",
            f"was answered 429 Too Many Requests{wait}",
        )
    return Unreached("was reached and failed the request", f"was answered HTTP {status}")


def _retry_after(exc: BaseException) -> str | None:
    """The ``Retry-After`` the answer carried: parsed seconds (remediations.http's
    ``retry_after``), else the header as sent; None when there was none."""
    seconds = getattr(exc, "retry_after", None)
    if isinstance(seconds, int | float):
        return f"{seconds:g}s"
    headers = getattr(exc, "headers", None)
    value = headers.get("Retry-After") if headers is not None else None
    return str(value) if value else None
