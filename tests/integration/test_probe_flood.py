"""A flood of /readyz and /metrics, which are open to anyone, against a real `serve`: every
answer is right, and the guards' Redis is asked once per check on its way, not once per
request. A tester's 3,000 /readyz, 400 at once, used up the guards' Redis connections (redis-py
stops at 101): up to 473 answered 503 "Too many connections"."""

from __future__ import annotations

import asyncio
import re

import aiohttp

from tests.support.served import ServeFactory

REQUESTS = 3000
AT_ONCE = 400


async def _flood(url: str) -> list[int]:
    connector = aiohttp.TCPConnector(limit=AT_ONCE)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> int:
            async with session.get(url) as response:
                await response.read()
                return response.status

        return await asyncio.gather(*(one() for _ in range(REQUESTS)))


def _up(exposition: str, component: str) -> float:
    found = re.search(rf'remediator_component_up\{{component="{component}"\}} (\S+)', exposition)
    assert found is not None, exposition
    return float(found.group(1))


async def test_a_flood_of_readiness_probes_and_scrapes_answers_every_one_rightly(
    serve: ServeFactory,
) -> None:
    served = serve()
    statuses = await _flood(served.url + "/readyz")
    assert statuses.count(200) == REQUESTS, {s: statuses.count(s) for s in set(statuses)}
    statuses = await _flood(served.url + "/metrics")
    assert statuses.count(200) == REQUESTS, {s: statuses.count(s) for s in set(statuses)}
    async with aiohttp.ClientSession() as session, session.get(served.url + "/metrics") as r:
        exposition = await r.text()
    assert _up(exposition, "redis") == 1
    assert _up(exposition, "store") == 1
