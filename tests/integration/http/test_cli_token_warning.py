"""The CLI against a server its token does not belong to: nothing is sent, and it says so.

A server that answers anyway (here an open one: no credentials configured) made ``pause`` print
success with no word that the operator's token never went there; now every operator command
warns on stderr, naming the URL and why. And ``runs`` shows target keys as the API has them
(``HttpEndpoint/sink``, not ``HttpEndpoint//sink``)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
from click.testing import CliRunner, Result

from receiver.cli import main
from receiver.config import Settings
from receiver.embedded.owner import OwnerLock, OwnerRecord, write_record
from receiver.guards.policy import GuardSettings
from receiver.guards.redis_guards import Guards
from receiver.model import AlertEvent, NamespacePolicy, Status
from receiver.store import Store
from remediations.targets import Target
from tests.support.http import OPERATOR_TOKEN, MakeClient

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ELSEWHERE = "http://127.0.0.1:9311"


@pytest.fixture
def owned_elsewhere(tmp_path: Path) -> Iterator[Path]:
    """A data directory whose (live) owner serves at ELSEWHERE, with its generated token."""
    (tmp_path / "operator-token").write_text("generated-operator-token-0123456789\n")
    lock = OwnerLock(tmp_path)
    assert lock.try_acquire()
    write_record(tmp_path, OwnerRecord(os.getpid(), "remediator serve", True, 1, 2, ELSEWHERE))
    yield tmp_path
    lock.release()


async def _cli(*args: str, env: dict[str, str]) -> Result:
    # The command runs its own event loop, so it runs in a thread while this loop serves.
    return await asyncio.to_thread(CliRunner().invoke, main, list(args), env=env)


async def test_every_operator_command_says_when_no_token_was_sent(
    make_client: MakeClient, redis_client: redis.asyncio.Redis, owned_elsewhere: Path
) -> None:
    guards = Guards(redis_client, NamespacePolicy(), GuardSettings())
    client = await make_client(settings=Settings(), guards=guards)  # open: answers anyone
    url = str(client.make_url("")).rstrip("/")
    env = {"REMEDIATOR_DATA_DIR": str(owned_elsewhere)}
    commands: list[list[str]] = [
        ["pause", "--reason", "test"],
        ["resume"],
        ["status"],
        ["runs"],
        ["events"],
        ["jobs"],
    ]
    for command in commands:
        result = await _cli(*command, "--url", url, env=env)
        assert result.exit_code == 0, (command, result.output)
        warning = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
        assert warning == [
            f"warning: no operator token was sent to {url}: set REMEDIATOR_OPERATOR_TOKEN_FILE"
            f" to a file with your operator token; the token in {owned_elsewhere} is for"
            f" {ELSEWHERE} (PID {os.getpid()} (remediator serve)) only"
        ], command
    paused = await _cli("pause", "--reason", "test", "--url", url, env=env)
    assert paused.stdout.startswith("automation paused until resume")
    await guards.resume()


async def test_a_configured_token_is_sent_and_nothing_is_said(
    make_client: MakeClient, owned_elsewhere: Path
) -> None:
    client = await make_client()
    url = str(client.make_url("")).rstrip("/")
    env = {"REMEDIATOR_DATA_DIR": str(owned_elsewhere), "REMEDIATOR_OPERATOR_TOKEN": OPERATOR_TOKEN}
    result = await _cli("runs", "--url", url, env=env)
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr


async def test_runs_shows_the_key_of_a_target_without_a_namespace(
    make_client: MakeClient, store: Store
) -> None:
    event = AlertEvent(
        id=1,
        fingerprint="0" * 16,
        starts_at="2024-05-27T07:00:00Z",
        status=Status.FIRING,
        labels={"alertname": "SinkDown"},
        annotations={},
    )
    targets: list[Any] = [Target("HttpEndpoint", "", "sink"), Target("Deployment", "demo", "web")]
    for n, target in enumerate(targets):
        assert await store.create_run(rule=f"r{n}", event=event, target=target, dry_run=True)
    client = await make_client()
    url = str(client.make_url("")).rstrip("/")
    result = await _cli("runs", "--url", url, env={"REMEDIATOR_OPERATOR_TOKEN": OPERATOR_TOKEN})
    assert result.exit_code == 0, result.output
    assert "HttpEndpoint/sink" in result.stdout
    assert "HttpEndpoint//sink" not in result.stdout
    assert "Deployment/demo/web" in result.stdout
