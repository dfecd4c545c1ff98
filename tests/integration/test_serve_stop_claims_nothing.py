"""SIGTERM to ``remediator serve``: from that moment the worker claims nothing and no run is
admitted, however long the rest of the stop takes (aiohttp's cleanup waits up to its shutdown
timeout for a request in progress).

Before, the worker went on claiming until aiohttp's cleanup had ended: an event claimed then was
planned, admitted (a rate slot, and the budget's for a disruptive run, taken in Redis for a run
that would not start here), handed back by the execute stage, and released: an attempt counted
and the queue churned for nothing. A real ``remediator serve`` on the test PostgreSQL and
Redis, one event in progress (its step held by a local HTTP endpoint) and one queued behind it,
while a client holds a request open through the stop.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio
from aiohttp import web

from tests.support.daemons import end
from tests.support.peer import answering
from tests.support.polling import current, eventually
from tests.support.served import env_for, launch
from tests.support.two_calls import two_calls_alert, two_calls_env, two_calls_rule

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

RULE = two_calls_rule("{max_runs: {count: 100, per: 1h}}")

# The rate guard's window in Redis: one member per admitted run (GuardKeys.rate).
RATE_KEY = "remediator:rate:two-calls"


def _alert(fingerprint: str) -> dict[str, Any]:
    """A notification of one firing TwoCalls alert; the same alert name puts both alerts in one
    lane, so the queued one is not taken by an express claim beside the one in progress."""
    return two_calls_alert(fingerprint, {"alertname": "TwoCalls", "instance": fingerprint})


async def _event(db: asyncpg.Connection, fingerprint: str) -> dict[str, Any]:
    row = await db.fetchrow(
        "SELECT state, attempts FROM alert_events WHERE fingerprint = $1", fingerprint
    )
    assert row is not None, fingerprint
    return dict(row)


async def test_a_stopping_service_claims_and_admits_nothing_while_aiohttp_cleans_up(
    embedded_dir: Path,
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    redis_client: redis.asyncio.Redis,
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "two.yaml").write_text(RULE)
    calls: list[str] = []
    first_called = asyncio.Event()
    answer_first = asyncio.Event()

    async def endpoint(request: web.Request) -> web.Response:
        calls.append((await request.json())["step"])
        first_called.set()
        await answer_first.wait()
        return web.Response(text="ok")

    token = secrets.token_urlsafe(24)
    async with answering(endpoint) as base, aiohttp.ClientSession() as session:
        # One event at a time (worker.concurrency 1): the second waits in the queue behind it.
        env = two_calls_env(
            env_for(embedded_dir),
            database_url=database_url,
            redis_url=redis_url,
            token=token,
            rules=rules,
            sink=f"{base}/sink",
        )
        # The open request below is not closed by the server's own timeout meanwhile.
        env["REMEDIATOR_READ_TIMEOUT"] = "5m"
        proc, url, output = await asyncio.to_thread(launch, env)
        db = await asyncpg.connect(database_url)
        try:
            webhook = {"Authorization": f"Bearer {token}"}
            for fingerprint in ("aaaa000000000001", "bbbb000000000002"):
                async with session.post(
                    f"{url}/api/v1/alerts", json=_alert(fingerprint), headers=webhook
                ) as r:
                    assert r.status == 200
                if fingerprint.startswith("aaaa"):
                    await asyncio.wait_for(first_called.wait(), 60)
            assert (await _event(db, "bbbb000000000002"))["attempts"] == 0
            assert await redis_client.zcard(RATE_KEY) == 1

            # A request whose body has not all come: aiohttp's cleanup waits for it.
            host, port = url.removeprefix("http://").rsplit(":", 1)
            _, writer = await asyncio.open_connection(host, int(port))
            writer.write(
                b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Authorization: Bearer " + token.encode() + b"\r\nContent-Length: 100\r\n\r\n{"
            )
            await writer.drain()

            proc.send_signal(signal.SIGTERM)
            await eventually(
                current(lambda: any("stopping: finishing" in line for line in output)),
                what="the service stopping",
            )
            # The first event's step finishes; its run hands the event back (no second step
            # begins in a stopping service), and the worker's slot is free while aiohttp still
            # waits for the open request.
            answer_first.set()

            async def settled() -> str | None:
                if (await _event(db, "bbbb000000000002"))["attempts"] > 0:
                    return "the queued event was claimed"
                first = await _event(db, "aaaa000000000001")
                stopped = any("stopped claiming" in line for line in output)
                return "handed back" if first["state"] == "pending" and stopped else None

            outcome = await eventually(settled, what="the first event back")
            writer.close()  # aiohttp's cleanup may end now
            code = await asyncio.to_thread(proc.wait, 60)
            assert code == 0, "".join(output[-40:])
            queued = await _event(db, "bbbb000000000002")
            admitted = await redis_client.zcard(RATE_KEY)
        finally:
            await db.close()
            await asyncio.to_thread(end, proc, 60)
    # Nothing claimed after SIGTERM, and no rate slot taken: only the first run's, before it.
    assert (outcome, queued, admitted) == ("handed back", {"state": "pending", "attempts": 0}, 1)
    assert calls == ["first"], "the stopping service began another step"
