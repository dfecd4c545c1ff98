"""Whether ``database_url`` gives ``serve`` every server connection it will use, checked at start.

A pooler in session mode (PgBouncer ``pool_mode = session``) gives each client connection a
server connection for as long as the client stays connected. When its pool
(``default_pool_size``) is used up, a further client still logs in (PgBouncer authenticates it
itself) but its first statement waits for a server connection, up to PgBouncer's
``query_wait_timeout`` (120 s by default); asyncpg's pool keeps its connections open, so none
may ever be freed. Unchecked, ``serve`` behind such a pool hung for a minute at start without a
word, lost its ``service.started`` audit row, and its worker's LISTEN never got through (README,
"PgBouncer"). So ``serve`` opens, at once, as many connections as it will ever hold through
``database_url`` (``connections_per_process``, times ``worker.processes``) and asks each for
its backend (``SELECT pg_backend_pid()``): when some answer and the others, logged in, do not
within ``ANSWER_TIMEOUT_S``, the pool is too small, and the start is refused with the size it
needs. A transaction pooler hands its server connections round between the statements, so it
passes. The connections are closed before the store's pool opens.

Only behind a pooler: PostgreSQL itself answers every session it accepted, and opening eleven
sessions at once at every start would fail the start of a replica whose role or database
allows fewer (``CONNECTION LIMIT``, ``max_connections`` sized for the pool's usual two), which
started before the check. A pooler shows itself on the first connection: the process id in
the cancel key it gave the client (BackendKeyData, ``get_server_pid``) is one it made up
(PgBouncer: random), not the backend's (``pg_backend_pid()``), since a client's cancel must
reach the pooler, which alone knows which server connection the client has at that moment.
PostgreSQL itself, or a proxy that only forwards the bytes (one client, one server
connection), gives the backend's own.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

__all__ = [
    "ANSWER_TIMEOUT_S",
    "BACKEND",
    "LISTEN_CONNECTIONS",
    "PoolTooSmall",
    "check_capacity",
    "connections_per_process",
    "made_up_key",
]

# How long each of the check's connections may take to answer (seconds): a round
# trip on a server that answers at all; far below PgBouncer's query_wait_timeout (120 s).
ANSWER_TIMEOUT_S = 5.0
# What each of the check's connections is asked: its backend, whose id tells a pooler apart.
BACKEND = "SELECT pg_backend_pid()"
# The worker's LISTEN connection (receiver/worker/listen.py), one a process, to database_url
# unless database.direct_url is set.
LISTEN_CONNECTIONS = 1


class PoolTooSmall(Exception):
    """Some of the connections ``serve`` needs logged in to ``database_url`` but got no server
    connection: the message names the pool size to set."""


def made_up_key(conn: Any, backend_pid: int) -> bool:
    """Whether ``conn`` reaches PostgreSQL through a pooler: the process id of the cancel key
    it was given (``get_server_pid``) is not that of the backend that answered ``BACKEND`` on
    it (``backend_pid``; module docstring)."""
    return bool(conn.get_server_pid() != backend_pid)


def connections_per_process(pool_max: int, *, listen_through: bool) -> int:
    """The connections one ``serve`` process (or worker process) holds to ``database_url`` at
    most: its store's pool (``pool_max``, asyncpg's ``max_size``: intake's kept connection, the
    worker's claims, the HTTP routes and the background tasks all take theirs from it) and,
    when ``listen_through`` (no ``database.direct_url``), the worker's LISTEN connection."""
    return pool_max + (LISTEN_CONNECTIONS if listen_through else 0)


async def check_capacity(
    dsn: str,
    *,
    per_process: int,
    processes: int,
    connect_timeout_s: float,
    answer_timeout_s: float = ANSWER_TIMEOUT_S,
) -> None:
    """Open one connection to ``dsn``; when it is a pooler's (module docstring), open the rest
    of ``per_process * processes`` connections at once, ask each for its backend, close them
    all. Raise PoolTooSmall when some answered and the others had not within
    ``answer_timeout_s`` seconds; TimeoutError when the first did not (nothing answers).
    Connection failures propagate as asyncpg raises them (the caller translates them); a
    connection refused makes the others closed first."""
    needed = per_process * processes
    first = await asyncpg.connect(dsn, timeout=connect_timeout_s)
    conns: list[Any] = [first]
    asked: list[asyncio.Future[Any]] = [asyncio.ensure_future(first.fetchval(BACKEND))]
    try:
        done, _ = await asyncio.wait(asked, timeout=answer_timeout_s)
        if not done:
            raise TimeoutError(f"no answer within {answer_timeout_s:g} s")
        if not made_up_key(first, asked[0].result()):
            # PostgreSQL itself: every session it accepts is its own.
            await first.close(timeout=answer_timeout_s)
            return
        opened = await asyncio.gather(
            *(asyncpg.connect(dsn, timeout=connect_timeout_s) for _ in range(needed - 1)),
            return_exceptions=True,
        )
        conns += [c for c in opened if not isinstance(c, BaseException)]
        for outcome in opened:
            if isinstance(outcome, BaseException):
                raise outcome
        asked += [asyncio.ensure_future(conn.fetchval(BACKEND)) for conn in conns[1:]]
        done, waiting = await asyncio.wait(asked, timeout=answer_timeout_s)
        for task in done:
            task.result()  # a statement that failed raises here
    finally:
        # Aborted, not closed politely: a connection still waiting for a server connection
        # would wait as long to be closed, and the others have nothing left to say. Not
        # cancelled first: asyncpg would open yet another connection to send the cancel.
        for conn in conns:
            conn.terminate()
        # What the aborted connections' statements raised (ConnectionDoesNotExistError), taken
        # so that asyncio does not report it as never retrieved.
        await asyncio.gather(*asked, return_exceptions=True)
    if waiting:
        raise PoolTooSmall(_message(len(done), needed, per_process, processes, answer_timeout_s))


def _message(answered: int, needed: int, per_process: int, processes: int, waited: float) -> str:
    each = f"{per_process} x {processes} (worker.processes)" if processes > 1 else f"{per_process}"
    return (
        f"{answered} of the {needed} connections this serve holds at most got a PostgreSQL"
        f" server connection; the others logged in and then waited {waited:g} s for one: a"
        f" pooler in session mode (PgBouncer pool_mode = session) whose pool is used up. Each"
        f" serve process holds up to {per_process} connections to database_url (the store's"
        f" pool and the worker's LISTEN): set the pooler's pool for this database and user"
        f" (PgBouncer default_pool_size) to at least {each} x replicas, one replica more for a"
        f" rolling update, plus its other clients; or run it in pool_mode = transaction with"
        f" database.pooler: pgbouncer-transaction (REMEDIATOR_DATABASE_POOLER) and"
        f" database.direct_url (REMEDIATOR_DATABASE_DIRECT_URL)"
    )
