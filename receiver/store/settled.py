"""Pool connections that go back to the pool outside any transaction, at no cost when nothing
went wrong.

asyncpg runs a statement of arguments (``fetch``, ``execute(sql, *args)``, ...) in two steps
when it has not prepared the text on that connection yet (always behind a transaction pooler,
where the statement cache is off): Parse and Describe with a Flush, then, once PostgreSQL has
answered, Bind, Execute and Sync. Parsing a query takes a snapshot, and PostgreSQL opens an
implicit transaction for it that only the Sync ends. When the caller's task is cancelled
after the first answer arrived but before the second step was sent (the answer and the
cancellation in the same turn of the event loop: a client that disconnects, a deadline), or
the arguments fail to encode after the first step (asyncpg's ``DataError``), the Sync is
never sent: the server stays in that transaction while asyncpg, whose idea of the
transaction state comes from the server's last ReadyForQuery, believes the connection idle.
Its release rolls back only a transaction it knows of, so the next caller was handed a
connection inside a transaction that had run a query, and a ``BEGIN ISOLATION LEVEL
REPEATABLE READ`` on it failed: "SET TRANSACTION ISOLATION LEVEL must be called before any
query" (a 500 on ``GET /api/v1/report``). A default ``BEGIN`` silently joined the leftover
transaction instead.

``SettledConnection`` marks a connection while one of its statements is under way and clears
the mark when the statement returns; ``settle`` (the pool's ``reset`` hook) rolls back only a
connection whose last statement did not return, so the hot paths keep their single round trip.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import asyncpg

__all__ = ["SettledConnection", "refused_by_server", "settle"]


class SettledConnection(asyncpg.Connection):  # type: ignore[misc]  # asyncpg is untyped
    """An asyncpg connection that knows whether its last statement returned.

    ``unsettled`` is True from the start of ``execute``, ``executemany``, ``fetch``,
    ``fetchval``, ``fetchrow`` or ``fetchmany`` until it returns, and stays True when it
    raised or was cancelled: the server may then hold a transaction the client does not know
    of. ``prepare`` outside a transaction leaves it True (a Parse without a Sync). A statement
    PostgreSQL refused (its error answer, ``refused_by_server``, after which asyncpg sends
    the Sync and reads the server's state) clears it: asyncpg's idea of the transaction
    is then the server's, and its release rolls back a transaction it knows of. Any other
    failure (arguments that do not encode, a cancellation, a lost connection) counts; they
    are rare, and the price is one ROLLBACK at release.
    """

    __slots__ = ("unsettled",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unsettled = False

    async def execute(self, query: str, *args: Any, **options: Any) -> Any:
        return await self._settling(super().execute(query, *args, **options))

    async def executemany(self, command: str, args: Any, **options: Any) -> Any:
        return await self._settling(super().executemany(command, args, **options))

    async def fetch(self, query: str, *args: Any, **options: Any) -> Any:
        return await self._settling(super().fetch(query, *args, **options))

    async def fetchval(self, query: str, *args: Any, **options: Any) -> Any:
        return await self._settling(super().fetchval(query, *args, **options))

    async def fetchrow(self, query: str, *args: Any, **options: Any) -> Any:
        return await self._settling(super().fetchrow(query, *args, **options))

    async def fetchmany(self, query: str, args: Any, **options: Any) -> Any:
        return await self._settling(super().fetchmany(query, args, **options))

    async def _settling(self, statement: Awaitable[Any]) -> Any:
        """``statement``'s result, ``unsettled`` while it is under way and after any failure
        but PostgreSQL's own error answer (class docstring)."""
        self.unsettled = True
        try:
            result = await statement
        except asyncpg.PostgresError as exc:
            # The server answered with an error and asyncpg synced after it: no transaction
            # is left that asyncpg does not know of. A ROLLBACK at release only drew
            # "WARNING: there is no transaction in progress" for each failed statement.
            self.unsettled = not refused_by_server(exc)
            raise
        self.unsettled = False
        return result

    async def prepare(self, query: str, **options: Any) -> Any:
        # Inside a transaction the Parse is part of it, which asyncpg knows of and rolls back.
        self.unsettled = self.unsettled or not self.is_in_transaction()
        try:
            return await super().prepare(query, **options)
        except asyncpg.PostgresError as exc:
            # Refused, and synced after (``_settling``).
            self.unsettled = self.unsettled and not refused_by_server(exc)
            raise


def refused_by_server(exc: asyncpg.PostgresError) -> bool:
    """Whether ``exc`` is PostgreSQL's own error answer (it carries the answer's severity),
    not one asyncpg raised itself: its ``DataError`` for arguments that do not encode is a
    ``PostgresError`` too, raised between the two steps, before any Sync."""
    return exc.severity is not None


async def settle(conn: Any) -> None:
    """Pool ``reset`` hook: roll back the transaction an interrupted statement may have left
    open on ``conn`` (a ``SettledConnection``), and nothing else.

    asyncpg's own reset (``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``) is a
    round trip on every release that cost as much as the work itself on the intake and worker
    paths; pool connections here keep no session state (no SET, no cursors outside a
    transaction, LISTEN on the worker's own connection, the migration lock a transaction's, a
    simulated clock set again at every acquire). Before this hook asyncpg has rolled back a
    transaction it knows of (which settles the connection: that ROLLBACK is an ``execute``);
    this one ends the implicit transaction it cannot know of (module docstring). A ROLLBACK
    outside a transaction block only draws PostgreSQL's warning "there is no transaction in
    progress". A failure here makes asyncpg close the connection rather than reuse it.
    """
    if conn.unsettled:
        await conn.execute("ROLLBACK")
