"""make bench's closed loop counts CPU over the posting alone: the reads of ``cpu`` bracket
every request and nothing else of the loop (the bodies are built before, the connections closed
after). A local aiohttp server counts what it received at each read."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from bench.loads import closed_loop


@pytest.fixture
async def counting_server() -> AsyncIterator[tuple[str, list[int]]]:
    """A server answering every POST like the ceiling; ``received[0]``: requests so far."""
    received = [0]

    async def alerts(request: web.Request) -> web.Response:
        await request.read()
        received[0] += 1
        return web.json_response({"accepted": 1, "duplicates": 0})

    app = web.Application()
    app.router.add_post("/api/v1/alerts", alerts)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/api/v1/alerts", received
    finally:
        await runner.cleanup()


async def test_the_cpu_reads_bracket_the_posting_and_nothing_else(
    counting_server: tuple[str, list[int]],
) -> None:
    url, received = counting_server
    seen: list[int] = []

    def cpu() -> tuple[float, ...]:
        seen.append(received[0])
        return (float(received[0]), 10.0 * len(seen))

    figures = await closed_loop(url, 40, 4, start=0, cpu=cpu)
    assert figures.errors == 0
    assert seen == [0, 40]  # read once before the first request, once after the last
    assert figures.cpu_spent == (40.0, 10.0)


async def test_without_cpu_nothing_is_read(counting_server: tuple[str, list[int]]) -> None:
    url, received = counting_server
    figures = await closed_loop(url, 10, 2, start=0)
    assert (figures.errors, figures.cpu_spent, received[0]) == (0, (), 10)
