"""A TCP relay that adds a round trip's delay, as a server far away does (another region, a
congested link): a server that answers every request, correctly, only later.

A real asyncio server (no mock) on a free loopback port, in the test's own event loop: every
chunk each way is passed on ``rtt_s / 2`` seconds after it arrived, in order, so each request
and reply of a protocol costs ``rtt_s`` more. A protocol's handshake (a Redis client's AUTH,
CLIENT SETINFO, ...) pays it once per round trip too, which is what tells a new connection
from one already open.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

__all__ = ["lagging_relay"]


async def _pass_on(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, lag_s: float
) -> None:
    """Each chunk from ``reader`` to ``writer`` ``lag_s`` seconds after it came, in order;
    the end of ``reader`` (or an error) closes ``writer`` as late."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            due, data = await queue.get()
            await asyncio.sleep(max(0.0, due - loop.time()))
            if not data:
                writer.close()
                return
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                queue.put_nowait((loop.time() + lag_s, data))
        queue.put_nowait((loop.time() + lag_s, b""))
        with contextlib.suppress(OSError):
            await sender
    finally:
        sender.cancel()
        writer.close()


@contextlib.asynccontextmanager
async def lagging_relay(host: str, port: int, rtt_s: float) -> AsyncIterator[int]:
    """A relay to ``host:port`` adding ``rtt_s`` seconds to every round trip; yields its port
    on 127.0.0.1. Closed, with its connections, on leaving."""
    relays: set[asyncio.Task[object]] = set()
    ends: list[asyncio.StreamWriter] = []

    async def relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        relays.add(task)
        ends.append(client_w)
        try:
            with contextlib.suppress(OSError):
                server_r, server_w = await asyncio.open_connection(host, port)
                ends.append(server_w)
                await asyncio.gather(
                    _pass_on(client_r, server_w, rtt_s / 2),
                    _pass_on(server_r, client_w, rtt_s / 2),
                )
        finally:
            client_w.close()
            relays.discard(task)

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        # Not cancelled: asyncio's stream server reports a handler it sees cancelled as an
        # error. Their connections closed, they end.
        for end in ends:
            end.close()
        await asyncio.gather(*relays)
        await server.wait_closed()
