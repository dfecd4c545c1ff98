"""A rule whose params template would loop for minutes does not hold up the service: its run
is refused quickly, before its guards (``template``), saying which template and which bound,
while ``/healthz`` keeps answering. A
real ``remediator serve`` (embedded PostgreSQL and Redis) with an HTTP endpoint on a local
aiohttp server, driven over HTTP."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.support.peer import answering
from tests.support.polling import eventually
from tests.support.served import ServeFactory

# n x n empty loop iterations: 3.6 billion for n = 60000 (minutes of CPU), printing nothing.
RULE = """\
rules:
  - name: loop-sink
    match: ['alertname="LoopMe"']
    target: {kind: HttpEndpoint, name: sink}
    steps:
      - action: http.call
        params:
          body:
            c: "{% for i in range(labels.n|int) %}{% for j in range(labels.n|int) %}\\
{% endfor %}{% endfor %}x"
        approval: never
"""

ALERT = {
    "receiver": "remediator",
    "status": "firing",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "LoopMe", "n": "60000"},
            "annotations": {},
            "startsAt": "2024-05-27T07:14:54.523Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "",
            "fingerprint": "1ee7100b1ee7100b",
        }
    ],
    "groupLabels": {"alertname": "LoopMe"},
    "commonLabels": {"alertname": "LoopMe", "n": "60000"},
    "commonAnnotations": {},
    "externalURL": "http://alertmanager:9093",
    "version": "4",
    "groupKey": '{}:{alertname="LoopMe"}',
    "truncatedAlerts": 0,
}


async def test_a_looping_template_refuses_its_run_while_the_service_answers(
    serve: ServeFactory, tmp_path: Path
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "loop.yaml").write_text(RULE)
    sent: list[bytes] = []

    async def sink(request: web.Request) -> web.Response:
        sent.append(await request.read())
        return web.Response(text="ok")

    async with answering(sink) as base, aiohttp.ClientSession() as session:
        endpoints = {"sink": {"url": f"{base}/sink"}}
        served = serve(
            {
                "REMEDIATOR_RULES_DIR": str(rules),
                "REMEDIATOR_HTTP_ENDPOINTS": json.dumps(endpoints),
            }
        )
        operator = {"Authorization": f"Bearer {served.operator}"}
        webhook = {"Authorization": f"Bearer {served.token}"}
        async with session.post(f"{served.url}/api/v1/alerts", json=ALERT, headers=webhook) as r:
            assert r.status == 200
        slowest = 0.0

        async def finished() -> dict[str, Any] | None:
            nonlocal slowest
            # Each probe of /healthz must be answered promptly, whatever the step is doing.
            started = time.monotonic()
            timeout = aiohttp.ClientTimeout(total=5)
            async with session.get(f"{served.url}/healthz", timeout=timeout) as health:
                assert health.status == 200
            slowest = max(slowest, time.monotonic() - started)
            async with session.get(f"{served.url}/api/v1/runs", headers=operator) as resp:
                runs = (await resp.json())["runs"]
            done = [r for r in runs if r["outcome"] not in ("pending", "running")]
            return done[0] if done else None

        run = await eventually(finished, lambda run: run is not None)
        assert run is not None
        async with session.get(f"{served.url}/api/v1/runs/{run['id']}", headers=operator) as r:
            detail = await r.json()
    assert slowest < 1.0
    assert (run["outcome"], run.get("refusal_guard")) == ("refused", "template"), detail
    text = json.dumps(detail)
    assert "template body.c" in text
    assert "more than 100000 steps of work" in text
    assert sent == []
