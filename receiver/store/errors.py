"""How the store reports that PostgreSQL is out of reach, and how its errors are described.

Connection-level failures (server down, refused, reset, timeouts, shutting down, out of
resources) surface as ``StoreUnavailable`` so the HTTP layer can answer 503 and the worker can
back off; every other database error is a bug and propagates unchanged. ``translate()`` draws
that line around each database call. ``describe()`` names an error without the values of the
statement, for logs that other senders' data must stay out of. Both name the fix for asyncpg's
own prepared statements lost behind a transaction pooler (``pooler_statement_error``), and for
a PgBouncer in statement pooling mode (``statement_pooled``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import asyncpg

__all__ = [
    "POOLER_FIX",
    "STATEMENT_MODE_FIX",
    "StoreUnavailable",
    "describe",
    "is_unavailable",
    "pooler_statement_error",
    "statement_pooled",
    "translate",
]


class StoreUnavailable(Exception):
    """PostgreSQL cannot be reached right now; the caller should retry later (HTTP 503)."""


# SQLSTATE classes that say "not now" about the server, not "no" about the statement: 08
# connection exception, 53 insufficient resources (disk full, out of memory, too many
# connections), 57 operator intervention (shutdown, crash, cannot connect now, canceled), 58
# system error (I/O), and 25006 (a read-only transaction: a failover left us on a standby).
_UNAVAILABLE_CLASSES = ("08", "53", "57", "58")
_READ_ONLY = "25006"
# asyncpg reports use of a connection or pool that went away under it as a plain InterfaceError.
_GONE = ("closed", "closing", "lost")

# What a prepared statement of asyncpg's that vanished (26000: does not exist) or clashed with
# another client's (42P05: already exists) means: its connection's transactions run on several
# server connections, a transaction pooler's doing (README, "PgBouncer").
_POOLER_STATES = ("26000", "42P05")
_ASYNCPG_STATEMENT = "__asyncpg_stmt_"
POOLER_FIX = (
    "the database is behind a transaction pooler: set database.pooler: pgbouncer-transaction"
    " (REMEDIATOR_DATABASE_POOLER) and database.direct_url (REMEDIATOR_DATABASE_DIRECT_URL),"
    " then restart; asyncpg's prepared statements do not survive from one transaction to the"
    " next on it"
)


# PgBouncer in pool_mode = statement ends a client whose transaction outlives a statement
# ("transaction blocks not allowed in statement pooling mode", an ErrorResponse and the
# connection closed: asyncpg's ConnectionDoesNotExistError, SQLSTATE 08003, the server's error
# its cause). A connection failure by its class, so an outage to retry (a 503, the worker backing
# off), which it is when the pooler's mode is switched back; but it lasts as long as the mode
# does, and only the store's single statements pass (intake's), so every claim failed and the
# log said "store unavailable" every second, naming no setting.
_STATEMENT_MODE = "statement pooling mode"
STATEMENT_MODE_FIX = (
    "database_url is a PgBouncer in pool_mode = statement, which allows no transaction of more"
    " than one statement, and the store's work is such transactions: set pool_mode = transaction"
    " for this database (with database.pooler: pgbouncer-transaction, REMEDIATOR_DATABASE_POOLER,"
    " and database.direct_url, REMEDIATOR_DATABASE_DIRECT_URL) or pool_mode = session"
)


def statement_pooled(exc: BaseException) -> bool:
    """True when PgBouncer refused ``exc``'s transaction for its statement pooling mode: the
    error, or one it was raised from or while handling, is PostgreSQL's protocol error that says
    so. (The transaction's end then meets the closed connection: asyncpg's InterfaceError
    "cannot call Transaction.__aexit__()", raised while handling the refusal.)"""
    left, seen = [exc], {id(exc)}
    while left:
        error = left.pop()
        if isinstance(error, asyncpg.PostgresError) and _STATEMENT_MODE in str(error):
            return True
        for linked in (error.__cause__, error.__context__):
            # Each at most once: a chain may loop (an error re-raised while handling itself).
            if linked is not None and id(linked) not in seen:
                seen.add(id(linked))
                left.append(linked)
    return False


def pooler_statement_error(exc: BaseException) -> bool:
    """True when PostgreSQL says one of asyncpg's own prepared statements does not exist or
    already exists: a transaction pooler ran the connection's transactions on different server
    connections while asyncpg's statement cache was on. Only asyncpg's names (``__asyncpg_stmt_``)
    count; the message is read here and never logged (it may quote arguments)."""
    if not isinstance(exc, asyncpg.PostgresError) or exc.sqlstate not in _POOLER_STATES:
        return False
    return _ASYNCPG_STATEMENT in str(exc)


def is_unavailable(exc: BaseException) -> bool:
    """True for failures of the connection or the server's state, not of the statement.

    Includes asyncpg's InternalClientError: its protocol state is confused when the server
    goes away mid-statement (seen while PostgreSQL shut down), never by what was sent.
    """
    if isinstance(exc, OSError | TimeoutError | asyncpg.exceptions.InternalClientError):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        state = exc.sqlstate or ""
        return state[:2] in _UNAVAILABLE_CLASSES or state == _READ_ONLY
    if isinstance(exc, asyncpg.exceptions.InterfaceError):
        message = str(exc)
        return any(word in message for word in _GONE)
    return False


def describe(exc: BaseException) -> str:
    """The error's type, and its SQLSTATE when PostgreSQL raised it; never its message. For a
    prepared statement lost behind a transaction pooler, also the fix (``POOLER_FIX``); for a
    transaction refused by a pooler in statement mode, that fix (``STATEMENT_MODE_FIX``).

    asyncpg's messages may quote the statement's arguments ("invalid input for query argument
    $5: [...]"), which for a group commit are other senders' alerts.
    """
    state = getattr(exc, "sqlstate", None)
    name = type(exc).__name__
    named = f"{name} (SQLSTATE {state})" if isinstance(state, str) and state else name
    if pooler_statement_error(exc):
        return f"{named}: {POOLER_FIX}"
    return f"{named}: {STATEMENT_MODE_FIX}" if statement_pooled(exc) else named


@contextlib.contextmanager
def translate() -> Iterator[None]:
    """Re-raise connection failures inside the block as StoreUnavailable; others unchanged,
    but a prepared statement lost behind a transaction pooler gets ``POOLER_FIX`` as a note
    (shown with its traceback), so that a logged exception names the setting; and one refused
    by a pooler in statement mode has ``STATEMENT_MODE_FIX`` in its message."""
    try:
        yield
    except StoreUnavailable:
        raise
    except Exception as exc:
        if is_unavailable(exc):
            fix = f": {STATEMENT_MODE_FIX}" if statement_pooled(exc) else ""
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}{fix}") from exc
        if pooler_statement_error(exc) and POOLER_FIX not in getattr(exc, "__notes__", ()):
            exc.add_note(POOLER_FIX)
        raise
