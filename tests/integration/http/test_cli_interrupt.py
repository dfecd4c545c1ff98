"""Ctrl-C in the middle of a command that changes something: `remediator events retry ID...`
says which item was on its way and which were never sent, `pause` that the server may or may
not have paused; against a real server whose answer to one request is held."""

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


async def _interrupted(
    aiohttp_client: AiohttpClient, store: Store, database_url: str, held: str, *args: str
) -> tuple[int | None, str, str]:
    """``remediator ARGS --url`` a real server that holds its answer to the request for path
    ``held``; SIGINT once that request arrives. Its exit code, stdout and stderr."""
    reached = asyncio.Event()

    @web.middleware
    async def hold(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == held:
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
    app.middlewares.append(hold)
    client = await aiohttp_client(app)
    url = str(client.make_url("")).rstrip("/")
    env = database_env(database_url) | {"REMEDIATOR_OPERATOR_TOKEN": OPERATOR_TOKEN}
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "receiver.cli", *args, "--url", url),
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    await asyncio.wait_for(reached.wait(), 60)
    proc.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


async def test_ctrl_c_in_a_bulk_retry_names_the_item_on_its_way_and_those_not_sent(
    aiohttp_client: AiohttpClient, store: Store, database_url: str
) -> None:
    first, second, third = await dead_events(store, 3)
    ids = (str(first), str(second), str(third))
    code, out, said = await _interrupted(
        aiohttp_client,
        store,
        database_url,
        f"/api/v1/events/{second}/retry",
        *("events", "retry", *ids),
    )
    assert code == 1, said
    assert f"event {first}: retried, now pending" in out
    assert "Traceback" not in said
    assert "Aborted!" not in said
    assert said.endswith(
        f"error: interrupted: event {second} may or may not be retried (see `remediator events"
        f" show {second}`); not retried, never sent: {third}\n"
    ), said
    third_now = await store.get_event(third)
    assert third_now is not None
    assert third_now["state"] == "dead"


async def test_ctrl_c_in_a_pause_says_it_may_have_paused_and_what_tells(
    aiohttp_client: AiohttpClient, store: Store, database_url: str
) -> None:
    code, out, said = await _interrupted(
        aiohttp_client, store, database_url, "/api/v1/pause", "pause", "--reason", "incident 7"
    )
    assert code == 1, said
    assert out == ""
    assert "Aborted!" not in said
    assert said.endswith(
        "/api/v1/pause answered: the server may or may not have done it: `remediator status`"
        " tells\n"
    ), said
