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

from typing import Any

import asyncpg

__all__ = ["SettledConnection", "settle"]


class SettledConnection(asyncpg.Connection):  # type: ignore[misc]  # asyncpg is untyped
    """An asyncpg connection that knows whether its last statement returned.

    ``unsettled`` is True from the start of ``execute``, ``executemany``, ``fetch``,
    ``fetchval``, ``fetchrow`` or ``fetchmany`` until it returns, and stays True when it
    raised or was cancelled: the server may then hold a transaction the client does not know
    of. ``prepare`` outside a transaction leaves it True (a Parse without a Sync). A server
    that answered with an error has ended the statement (asyncpg syncs after an error), but a
    failure cannot always be told apart from one raised before the Sync, so every failure
    counts; they are rare, and the price is one ROLLBACK at release.
    """

    __slots__ = ("unsettled",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unsettled = False

    async def execute(self, query: str, *args: Any, **options: Any) -> Any:
        self.unsettled = True
        result = await super().execute(query, *args, **options)
        self.unsettled = False
        return result

    async def executemany(self, command: str, args: Any, **options: Any) -> Any:
        self.unsettled = True
        result = await super().executemany(command, args, **options)
        self.unsettled = False
        return result

    async def fetch(self, query: str, *args: Any, **options: Any) -> Any:
        self.unsettled = True
        result = await super().fetch(query, *args, **options)
        self.unsettled = False
        return result

    async def fetchval(self, query: str, *args: Any, **options: Any) -> Any:
        self.unsettled = True
        result = await super().fetchval(query, *args, **options)
        self.unsettled = False
        return result

    async def fetchrow(self, query: str, *args: Any, **options: Any) -> Any:
        self.unsettled = True
        result = await super().fetchrow(query, *args, **options)
        self.unsettled = False
        return result

    async def fetchmany(self, query: str, args: Any, **options: Any) -> Any:
        self.unsettled = True
        result = await super().fetchmany(query, args, **options)
        self.unsettled = False
        return result

    async def prepare(self, query: str, **options: Any) -> Any:
        # Inside a transaction the Parse is part of it, which asyncpg knows of and rolls back.
        self.unsettled = self.unsettled or not self.is_in_transaction()
        return await super().prepare(query, **options)


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
