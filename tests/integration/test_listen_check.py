"""The worker's LISTEN check runs on every connection the listener makes, not on the first only:
after a reconnection (a restart, a failover) the same ``database.direct_url`` may lead to a
server that hears none of the store's NOTIFYs, and a tester's reconnection went unchecked.

A real PostgreSQL; the store's NOTIFY is the test's own: the first one reaches the listener's
server, the next goes nowhere the listener hears (as a store on another server than the one the
listener reached again)."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import pytest

from receiver.worker.attempt import Backoff
from receiver.worker.listen import Listener
from tests.support.polling import eventually
from tests.support.said import Said

pytestmark = pytest.mark.postgres

WARNING = "the listen connection did not hear a NOTIFY"


async def test_each_connection_is_checked_and_one_that_hears_nothing_is_said(
    database_url: str,
) -> None:
    sent: list[str] = []

    async def send(channel: str, payload: str) -> None:
        sent.append(channel)
        if len(sent) == 1:
            conn = await asyncpg.connect(database_url)
            try:
                await conn.execute("SELECT pg_notify($1, $2)", channel, payload)
            finally:
                await conn.close()

    said = Said()
    listener = Listener(
        database_url,
        lambda *_: None,
        lambda: None,
        poll_interval_s=60.0,
        backoff=Backoff(base_s=0.1, max_s=0.1),
        log=said,
        send_check=send,
        check_timeout_s=1.0,
    )
    task = asyncio.create_task(listener.run(lambda: False))
    admin = await asyncpg.connect(database_url)
    try:
        await asyncio.wait_for(listener.checked.wait(), 30)
        assert not [e for _, e, _ in said.lines if e.startswith(WARNING)], said.lines
        # The listener's connection ends (a restart, a failover): it connects again.
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )

        async def warned() -> list[str]:
            return [e for _, e, _ in said.lines if e.startswith(WARNING)]

        await eventually(warned, what="the second connection's check to warn")
        assert len(sent) == 2
    finally:
        await admin.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
