"""The commands that print what a running server answered, into a pipe nobody reads
(``remediator runs | head -1`` once head has exited): they stop quietly, blaming nothing."""

from __future__ import annotations

import pytest

from receiver.model import AlertEvent, Status, Target
from receiver.store import Store
from tests.support.http import OPERATOR_TOKEN, AiohttpClient, default_settings
from tests.support.review_app import review_app
from tests.support.served import cli_into_closed_pipe

pytestmark = [pytest.mark.postgres]


@pytest.mark.parametrize(
    "command",
    [
        ["runs"],
        ["runs", "--json"],
        ["events"],
        ["report"],
        ["report", "--format", "json"],
    ],
    ids=" ".join,
)
async def test_output_into_a_closed_pipe_ends_quietly(
    aiohttp_client: AiohttpClient, store: Store, command: list[str]
) -> None:
    event = AlertEvent(
        id=1,
        fingerprint="00000000000000e1",
        starts_at="2026-11-25T10:00:00Z",
        status=Status.FIRING,
        labels={"alertname": "HighMemoryUsage", "namespace": "demo"},
        annotations={},
    )
    await store.create_run(
        rule="restart-web", event=event, target=Target("Deployment", "demo", "web"), dry_run=True
    )
    client = await aiohttp_client(review_app(store, default_settings()))
    url = str(client.make_url("/")).rstrip("/")
    env = {"REMEDIATOR_OPERATOR_TOKEN": OPERATOR_TOKEN, "PATH": "/usr/bin:/bin"}
    code, err = await cli_into_closed_pipe(env, *command, "--url", url)
    assert code == 1, err
    assert err == ""
