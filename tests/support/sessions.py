"""Real client sessions on a test's PostgreSQL, in the states the session actions look at: idle,
idle in a transaction, running a statement. What a test opens it hands back, and ``close`` ends
everything, whatever state each is in (the tests that terminate or cancel sessions leave some
dead and some still running)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg

__all__ = ["Sessions"]


class Sessions:
    """The sessions a test opened and the statements it left running on them."""

    def __init__(self) -> None:
        self.conns: list[asyncpg.Connection] = []
        self.tasks: list[asyncio.Task[Any]] = []

    async def connect(self, url: str, application: str = "") -> asyncpg.Connection:
        """A new session on ``url`` (``application_name`` set when ``application`` is given)."""
        settings = {"application_name": application} if application else {}
        conn = await asyncpg.connect(url, server_settings=settings)
        self.conns.append(conn)
        return conn

    async def idle(
        self, url: str, *, transaction: bool, application: str = ""
    ) -> asyncpg.Connection:
        """A new session that ran one statement and now waits: ``idle in transaction`` when
        ``transaction``, else ``idle``."""
        conn = await self.connect(url, application)
        if transaction:
            await conn.execute("BEGIN")
        await conn.execute("SELECT 1")
        return conn

    def sleep(self, conn: asyncpg.Connection, seconds: float) -> asyncio.Task[Any]:
        """Start ``SELECT pg_sleep(seconds)`` on ``conn``: the session is ``active`` until it
        ends or is cancelled. The task, to await for the statement's fate."""
        task = asyncio.create_task(conn.execute(f"SELECT pg_sleep({seconds})"))
        self.tasks.append(task)
        return task

    async def close(self) -> None:
        """Cancel every statement still running, then close every session (ended ones too)."""
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(BaseException):
                await task
        for conn in self.conns:
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)
