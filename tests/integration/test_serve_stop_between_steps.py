"""SIGTERM to ``remediator serve`` while a run's step acts: the step in progress finishes, and
no step after it is begun by the stopping service. The event goes back to the queue with the
steps left pending, and the next start takes the run up from there: each step is called once,
and the run ends ok.

Before, the stopping service went on to the next step within its shutdown grace. An
``http.call`` whose endpoint did not answer before the service was to exit was then cut off
(or timed out) mid-request: recorded as a step that may have acted, the run failed, and the
next start could not call it again. A real ``remediator serve`` (embedded PostgreSQL and Redis)
with its endpoint on a local aiohttp server.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.support.peer import answering
from tests.support.polling import current, eventually
from tests.support.served import Served, ServeFactory
from tests.support.two_calls import two_calls_alert, two_calls_rule

RULE = two_calls_rule()
ALERT = two_calls_alert("2ca112ca112ca11f", {"alertname": "TwoCalls"})


async def _runs(session: aiohttp.ClientSession, served: Served) -> list[dict[str, Any]]:
    operator = {"Authorization": f"Bearer {served.operator}"}
    async with session.get(f"{served.url}/api/v1/runs", headers=operator) as resp:
        assert resp.status == 200
        runs: list[dict[str, Any]] = (await resp.json())["runs"]
    return runs


async def test_a_stopping_service_begins_no_further_step_and_the_next_start_goes_on(
    serve: ServeFactory, tmp_path: Path
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "two.yaml").write_text(RULE)
    calls: list[str] = []
    first_called = asyncio.Event()
    answer_first = asyncio.Event()
    # Set once the first service has exited: until then the second endpoint does not answer
    # (a slow system), so a call the stopping service made would be cut off or time out.
    first_gone = asyncio.Event()

    async def endpoint(request: web.Request) -> web.Response:
        step = (await request.json())["step"]
        calls.append(step)
        if step == "first":
            first_called.set()
            await answer_first.wait()
        elif not first_gone.is_set():
            await first_gone.wait()
        return web.Response(text="ok")

    async with answering(endpoint) as base, aiohttp.ClientSession() as session:
        endpoints = {"sink": {"url": f"{base}/sink"}}
        env = {
            "REMEDIATOR_RULES_DIR": str(rules),
            "REMEDIATOR_HTTP_ENDPOINTS": json.dumps(endpoints),
        }
        served = serve(env)
        webhook = {"Authorization": f"Bearer {served.token}"}
        async with session.post(f"{served.url}/api/v1/alerts", json=ALERT, headers=webhook) as r:
            assert r.status == 200
        await asyncio.wait_for(first_called.wait(), 60)

        # The first step is acting: the service is told to stop, and it has begun to.
        served.proc.send_signal(signal.SIGTERM)
        await eventually(
            current(lambda: any("stopping: finishing" in line for line in served.output)),
            what="the service stopping",
        )
        answer_first.set()  # the step in progress finishes within the grace
        code = await asyncio.to_thread(served.proc.wait, 60)
        first_gone.set()
        assert code == 0, "".join(served.output[-40:])
        assert calls == ["first"], "the stopping service began the second step"

        again = serve(env)

        async def ended() -> list[dict[str, Any]]:
            return [r for r in await _runs(session, again) if r["outcome"] != "running"]

        runs = await eventually(ended)
        operator = {"Authorization": f"Bearer {again.operator}"}
        async with session.get(f"{again.url}/api/v1/runs/{runs[0]['id']}", headers=operator) as r:
            detail = await r.json()
    assert runs[0]["outcome"] == "succeeded", detail
    assert calls == ["first", "second"]
    steps = [(s["idx"], s["outcome"]) for s in detail["run"]["steps"] if s["phase"] == "run"]
    assert steps == [(0, "ok"), (1, "ok")], detail
