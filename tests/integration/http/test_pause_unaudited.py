"""The kill switch works while PostgreSQL is away, and says its audit row is missing: the pause
takes effect in Redis, the answer is 200 with ``"audited": false``, an error line names it."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio
from click.testing import CliRunner
from structlog.testing import capture_logs

from receiver.cli import main
from receiver.guards.policy import GuardSettings
from receiver.guards.redis_guards import Guards
from receiver.model import NamespacePolicy
from receiver.store import Store
from tests.support.http import OPERATOR, OPERATOR_TOKEN, MakeClient
from tests.support.postgres import PostgresServer

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


async def test_pause_and_resume_without_the_store_say_they_were_not_audited(
    make_client: MakeClient,
    redis_client: redis.asyncio.Redis,
    pg_controlled: PostgresServer,
    store: Store,
) -> None:
    guards = Guards(redis_client, NamespacePolicy(), GuardSettings())
    client = await make_client(guards=guards)
    with pg_controlled.stopped(mode="fast"):
        with capture_logs() as logs:
            paused = await client.put(
                "/api/v1/pause", json={"reason": "db maintenance"}, headers=OPERATOR
            )
            assert paused.status == 200
            assert (await paused.json())["audited"] is False
            assert (await guards.status())["paused"] is True  # the kill switch took effect
            resumed = await client.delete("/api/v1/pause", headers=OPERATOR)
            assert resumed.status == 200
            assert (await resumed.json())["audited"] is False
            assert (await guards.status())["paused"] is False
        # The CLI says it too.
        env = {"REMEDIATOR_OPERATOR_TOKEN": OPERATOR_TOKEN}
        url = str(client.make_url("")).rstrip("/")
        args = ["pause", "--reason", "db maintenance", "--url", url]
        result = await asyncio.to_thread(CliRunner().invoke, main, args, env=env)
        assert result.exit_code == 0, result.output
        assert "the pause is in effect but not recorded in the audit log" in result.stderr
        await guards.resume()
    errors = [e for e in logs if e["log_level"] == "error"]
    assert [(e["event"], e["kind"], e["by"]) for e in errors] == [
        ("not recorded in the audit log: the store is unavailable", "guards.pause", "alice"),
        ("not recorded in the audit log: the store is unavailable", "guards.resume", "alice"),
    ]
    # With the store back, the same calls are on the record.
    paused = await client.put("/api/v1/pause", json={"reason": "again"}, headers=OPERATOR)
    assert (await paused.json())["audited"] is True
    resumed = await client.delete("/api/v1/pause", headers=OPERATOR)
    assert (await resumed.json())["audited"] is True
