"""Ctrl-C in the middle of `remediator events retry ID...`: the CLI says which item was on its
way and which were never sent, against a real server whose answer for one item is held."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable

import pytest
import structlog
from aiohttp import web

from receiver.http.app import create_app
from receiver.http.deps import HealthChecks
from receiver.intake import Intake
from receiver.store import Store
from receiver.telemetry import Metrics
from tests.integration.http.test_queues import dead_events
from tests.support.http import OPERATOR_TOKEN, AiohttpClient, default_settings
from tests.support.served import ROOT, database_env

pytestmark = [pytest.mark.postgres]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def test_ctrl_c_in_a_bulk_retry_names_the_item_on_its_way_and_those_not_sent(
    aiohttp_client: AiohttpClient, store: Store, database_url: str
) -> None:
    first, second, third = await dead_events(store, 3)
    reached = asyncio.Event()

    @web.middleware
    async def hold_second(request: web.Request, handler: Handler) -> web.StreamResponse:
        # The server takes the second retry and does not answer: Ctrl-C comes meanwhile.
        if request.path == f"/api/v1/events/{second}/retry":
            reached.set()
            await asyncio.Event().wait()
        return await handler(request)

    app = create_app(
        settings=default_settings(),
        intake=Intake(store),
        metrics=Metrics(),
        health=HealthChecks(),
        runs_reader=store,
        log=structlog.get_logger("test"),
        queues=store,
    )
    app.middlewares.append(hold_second)
    client = await aiohttp_client(app)
    url = str(client.make_url("")).rstrip("/")

    env = database_env(database_url) | {"REMEDIATOR_OPERATOR_TOKEN": OPERATOR_TOKEN}
    ids = (str(first), str(second), str(third))
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "receiver.cli", "events", "retry", *ids, "--url", url),
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    await asyncio.wait_for(reached.wait(), 60)
    proc.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(proc.communicate(), 60)

    assert proc.returncode == 1, err
    assert f"event {first}: retried, now pending" in out.decode()
    said = err.decode()
    assert "Traceback" not in said
    assert "Aborted!" not in said
    assert said.endswith(
        f"error: interrupted: event {second} may or may not be retried (see `remediator events"
        f" show {second}`); not retried, never sent: {third}\n"
    ), said
    third_now = await store.get_event(third)
    assert third_now is not None
    assert third_now["state"] == "dead"
