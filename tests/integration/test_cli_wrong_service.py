"""The CLI pointed at a server that is not remediator (``--url`` a port another service answers
on) says so, exit 1, and never reports what did not happen: ``pause`` printed "automation
paused until resume" on any 200, whatever its body, so the on-call took automation for paused;
``runs`` printed a traceback on an answer whose ``runs`` was no list. Over real HTTP, to a
real server that answers 200 with JSON of its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from click.testing import CliRunner

from receiver.cli import main
from tests.support.peer import answering

# Each answer is JSON, 200, and not remediator's: another service, an old proxy's catch-all.
ANSWERS: list[Any] = [[1, 2], {"ok": True}, {"runs": 5, "paused": "yes", "approval": []}]


@pytest.fixture(params=range(len(ANSWERS)), ids=["a list", "another object", "wrong types"])
async def elsewhere(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    answer = ANSWERS[request.param]

    async def anything(_: web.Request) -> web.Response:
        return web.json_response(answer)

    async with answering(anything) as base:
        yield base


COMMANDS = [
    ["pause", "--reason", "incident 7"],
    ["resume"],
    ["status"],
    ["runs"],
    ["events"],
    ["jobs"],
    ["events", "show", "1"],
    ["events", "retry", "1"],
    ["jobs", "drop", "1", "--reason", "x"],
    ["approvals", "list"],
    ["approvals", "approve", "0b5e4f6a-1c2d-4e3f-8a9b-0c1d2e3f4a5b"],
    ["report"],
]


async def test_an_answer_that_is_not_remediators_is_said_and_fails(elsewhere: str) -> None:
    env = {"REMEDIATOR_OPERATOR_TOKEN": "operator-token-0123456789"}
    wrong: list[str] = []
    for command in COMMANDS:
        args = [*command, "--url", elsewhere]
        result = await asyncio.to_thread(CliRunner().invoke, main, args, env=env)
        said = result.stderr
        crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
        if result.exit_code != 1 or crashed or "is it the remediator" not in said:
            shown = repr(result.exception) if crashed else said or result.output
            wrong.append(f"{' '.join(command)}: exit {result.exit_code}: {shown}")
        if "paused" in result.stdout or "resumed" in result.stdout:
            wrong.append(f"{' '.join(command)}: said {result.stdout!r}")
    assert wrong == [], "\n".join(wrong)
