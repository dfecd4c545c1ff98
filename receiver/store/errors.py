"""How the store reports that PostgreSQL is out of reach.

Connection-level failures (server down, refused, reset, timeouts) surface as ``StoreUnavailable``
so the HTTP layer can answer 503 and the worker can back off; every other database error is a
bug and propagates unchanged. ``translate()`` draws that line around each database call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import asyncpg

__all__ = ["StoreUnavailable", "is_unavailable", "translate"]


class StoreUnavailable(Exception):
    """PostgreSQL cannot be reached right now; the caller should retry later (HTTP 503)."""


def is_unavailable(exc: BaseException) -> bool:
    """True for failures of the connection, not of the statement."""
    if isinstance(
        exc,
        asyncpg.exceptions.PostgresConnectionError
        | asyncpg.exceptions.CannotConnectNowError
        | asyncpg.exceptions.AdminShutdownError
        | asyncpg.exceptions.CrashShutdownError
        | asyncpg.exceptions.TooManyConnectionsError
        | OSError
        | TimeoutError,
    ):
        return True
    # asyncpg reports use of a connection that died under it as a plain InterfaceError.
    return isinstance(exc, asyncpg.exceptions.InterfaceError) and (
        "closed" in str(exc) or ("connection" in str(exc) and "lost" in str(exc))
    )


@contextlib.contextmanager
def translate() -> Iterator[None]:
    """Re-raise connection failures inside the block as StoreUnavailable; others unchanged."""
    try:
        yield
    except StoreUnavailable:
        raise
    except Exception as exc:
        if is_unavailable(exc):
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
        raise
