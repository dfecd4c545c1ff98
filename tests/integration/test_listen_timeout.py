"""The worker's LISTEN connection when its server takes the connection and then stops answering.

asyncpg's ``add_listener`` sends LISTEN with no timeout of its own, and the listen connection
had no ``command_timeout``: a server that went quiet right then (frozen, or gone from behind a
proxy that kept the connection) held the listener in LISTEN for good, saying nothing and never
connecting again. The connection's statements are now bounded (``command_timeout_s``): the
listener gives up on it, says so and connects again.

Against the test PostgreSQL, through a relay (tests.support.relay) that holds everything from
the LISTEN on, as a server that stopped answering does.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from receiver.worker.attempt import Backoff
from receiver.worker.listen import Listener
from tests.support.polling import eventually
from tests.support.relay import relay_to_postgres, through
from tests.support.said import Said

pytestmark = pytest.mark.postgres


async def test_a_listen_the_server_never_answers_is_given_up_and_said(database_url: str) -> None:
    said = Said()
    connected: list[int] = []
    async with relay_to_postgres(database_url) as relay:
        relay.hold_from(b"LISTEN")
        listener = Listener(
            through(database_url, relay.port),
            lambda *_: None,
            lambda: connected.append(1),
            poll_interval_s=60.0,
            backoff=Backoff(base_s=0.1, max_s=0.1),
            log=said,
            command_timeout_s=0.5,
        )
        task = asyncio.create_task(listener.run(lambda: False))
        try:
            await asyncio.wait_for(relay.holding.wait(), 20)

            async def failures() -> list[str]:
                return [event for level, event, _ in said.lines if level != "info"]

            failed = await eventually(failures, what="the listener gives up on its LISTEN")
            assert failed[0].startswith("listen connection failed"), said.lines
            assert connected == []
            assert not listener.listening.is_set()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
