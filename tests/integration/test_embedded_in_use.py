"""The embedded default keeps working while it is used: commands beside a running `serve` use
its servers, a second `serve` is refused, the CLI's token goes to its own server only, and a
server that dies is restarted while /readyz says so."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.support.peer import answering
from tests.support.polling import eventually
from tests.support.served import (
    SAMPLE,
    Served,
    ServeFactory,
    cli,
    env_for,
    serve_to_exit,
    stop,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def _pid(pid_file: Path) -> int:
    return int(pid_file.read_text().split()[0])


async def _ready(session: aiohttp.ClientSession, served: Served) -> tuple[int, dict[str, object]]:
    async with session.get(f"{served.url}/readyz") as resp:
        return resp.status, await resp.json()


async def _post_sample(session: aiohttp.ClientSession, served: Served) -> int:
    headers = {"Authorization": f"Bearer {served.token}", "Content-Type": "application/json"}
    async with session.post(
        f"{served.url}/api/v1/alerts", data=SAMPLE.read_bytes(), headers=headers
    ) as resp:
        return resp.status


async def test_commands_beside_a_running_serve_use_its_servers(
    serve: ServeFactory, embedded_dir: Path
) -> None:
    served = serve()
    data = embedded_dir
    postmaster = _pid(data / "postgres" / "data" / "postmaster.pid")
    owner = f"PID {served.proc.pid} (remediator serve)"

    for args in (["migrate"], ["audit", "verify"]):
        code, out, err = await cli(env_for(data), *args)
        assert code == 0, (args, out, err)
        assert f"using the PostgreSQL of {owner}" in err

    # A second serve on the directory refuses, naming the first, and changes nothing.
    second = await asyncio.to_thread(serve_to_exit, env_for(data))
    assert second.returncode == 1
    assert owner in second.stderr

    # The server's own PostgreSQL was neither stopped nor taken over.
    assert _pid(data / "postgres" / "data" / "postmaster.pid") == postmaster
    async with aiohttp.ClientSession() as session:
        status, body = await _ready(session, served)
        assert status == 200, body
        assert await _post_sample(session, served) == 200

    # The CLI needs no configuration: the directory's operator token, to its own server.
    code, out, err = await cli(env_for(data), "status")
    assert code == 0, err
    assert "off: remediation runs" in out
    code, out, err = await cli(env_for(data), "pause", "--reason", "from the CLI")
    assert code == 0, err
    code, out, err = await cli(env_for(data), "status")
    assert "PAUSED" in out
    assert "from the CLI" in out
    code, out, err = await cli(env_for(data), "resume")
    assert code == 0, err
    code, out, err = await cli(env_for(data), "runs", "--url", served.url)
    assert code == 0, err
    # The table's header, or "no runs" while the sample's run is still being made.
    assert "outcome" in out or out == "no runs\n", out
    # The approvals API takes the same generated operator token as every operator route.
    code, out, err = await cli(env_for(data), "approvals", "list", "--json")
    assert code == 0, err
    assert json.loads(out) == {"approvals": []}

    assert stop(served) == 0


async def test_the_directory_token_is_never_sent_to_another_server(
    serve: ServeFactory, embedded_dir: Path
) -> None:
    served = serve()
    seen: list[str | None] = []

    async def elsewhere(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.json_response({"error": "unauthorized"}, status=401)

    async with answering(elsewhere) as url:
        code, _, err = await cli(env_for(embedded_dir), "runs", "--url", url)
    assert code == 1
    assert seen == [None]
    assert f"is for {served.url}" in err
    assert served.operator not in err
    assert stop(served) == 0


async def test_a_dead_embedded_server_is_restarted_and_readyz_says_so_meanwhile(
    serve: ServeFactory, embedded_dir: Path
) -> None:
    served = serve()
    data = embedded_dir
    async with aiohttp.ClientSession() as session:
        for pid_file, component in (
            (data / "postgres" / "data" / "postmaster.pid", "store"),
            (data / "redis" / "redis.pid", "redis"),
        ):
            dead = _pid(pid_file)
            os.kill(dead, signal.SIGKILL)
            # Not ready while it is down (the restart takes hundreds of milliseconds at least,
            # far longer than one readiness call)...
            details: list[object] = []

            async def back_after_an_outage(
                component: str = component, details: list[object] = details
            ) -> bool:
                status, body = await _ready(session, served)
                components = body["components"]
                assert isinstance(components, dict)
                if status == 503:
                    details.append(components[component]["detail"])
                return status == 200 and bool(details)

            await eventually(back_after_an_outage, what=f"{component} down, then back")
            # ...and ready again once it is back, on the same port, as a new process.
            assert _pid(pid_file) != dead
            assert await _post_sample(session, served) == 200
    assert stop(served) == 0
    log = "".join(served.output)
    assert '"server": "PostgreSQL"' in log
    assert '"server": "Redis"' in log
    assert "embedded server restarted" in log
