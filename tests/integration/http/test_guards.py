"""The kill switch: /api/v1/guards and /api/v1/pause, audited, and `remediator pause`."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis.asyncio

from receiver.guards.policy import AdmissionRequest, GuardSettings
from receiver.guards.redis_guards import Guards
from receiver.http.guards import GUARDS_PATH, PAUSE_PATH
from receiver.model import GuardSpec, NamespacePolicy, Target
from receiver.store import Store
from tests.support.http import OPERATOR, OPERATOR_NAME, OPERATOR_TOKEN, MakeClient
from tests.support.redis import RedisServer

pytestmark = [pytest.mark.postgres]


async def test_pause_refuses_every_run_until_resume_and_is_audited(
    make_client: MakeClient, redis_client: redis.asyncio.Redis, store: Store
) -> None:
    guards = Guards(redis_client, NamespacePolicy(), GuardSettings())
    client = await make_client(guards=guards)
    request = AdmissionRequest(
        run_id="r1",
        rule="any-rule",
        target=Target("Deployment", "demo", "web"),
        disruptive=True,
        spec=GuardSpec(),
    )

    response = await client.put(
        PAUSE_PATH, json={"reason": "incident 42", "for": "30m"}, headers=OPERATOR
    )
    assert response.status == 200
    body = await response.json()
    assert body["paused"] is True
    assert body["until"] is not None
    refused = await guards.admit(request)
    assert refused.refusal is not None
    assert refused.refusal.guard == "pause"
    assert "incident 42" in refused.refusal.reason

    response = await client.get(GUARDS_PATH, headers=OPERATOR)
    assert response.status == 200
    shown = await response.json()
    assert shown["paused"]
    # Who paused, from Redis: the on-call asks it when the store is down too.
    assert shown["pause"]["by"] == OPERATOR_NAME

    response = await client.delete(PAUSE_PATH, headers=OPERATOR)
    assert response.status == 200
    assert (await response.json())["was_paused"] is True
    assert (await guards.admit(request)).admitted
    # Nothing paused: the answer and the record say the resume changed nothing.
    response = await client.delete(PAUSE_PATH, headers=OPERATOR)
    assert response.status == 200
    assert (await response.json())["was_paused"] is False

    async with store._pool.acquire() as conn:
        rows = await conn.fetch("SELECT kind, data FROM audit_log ORDER BY id")
    assert [r["kind"] for r in rows] == ["guards.pause", "guards.resume", "guards.resume"]
    # The audit names the operator whose token paused and resumed.
    data = [json.loads(r["data"]) for r in rows]
    assert [d["by"] for d in data] == [OPERATOR_NAME] * 3
    assert [d.get("was_paused") for d in data] == [None, True, False]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "reason"),
        ({"reason": "  "}, "reason"),
        ({"reason": "x", "for": "soon"}, "for"),
        ({"reason": "x", "for": 30}, "for"),
        ({"reason": "x", "for": "8d"}, "for"),
        # The bound the error states: 1s at least, not whatever the syntax takes.
        ({"reason": "x", "for": "999ms"}, "for"),
        ({"reason": "x", "for": "0s"}, "for"),
        # A typo of `for` must not become a pause until resumed.
        ({"reason": "t", "duration": "1h"}, "duration"),
        ([], "body"),
    ],
)
async def test_bad_pause_requests_are_400_naming_the_field(
    make_client: MakeClient, redis_client: redis.asyncio.Redis, body: Any, field: str
) -> None:
    guards = Guards(redis_client, NamespacePolicy(), GuardSettings())
    client = await make_client(guards=guards)
    response = await client.put(PAUSE_PATH, json=body, headers=OPERATOR)
    assert response.status == 400
    assert (await response.json())["field"] == field
    assert not (await guards.status())["paused"]


async def test_an_unknown_pause_field_is_named_with_the_closest_one(
    make_client: MakeClient, redis_client: redis.asyncio.Redis
) -> None:
    client = await make_client(guards=Guards(redis_client, NamespacePolicy(), GuardSettings()))
    response = await client.put(PAUSE_PATH, json={"reason": "x", "fro": "1h"}, headers=OPERATOR)
    assert response.status == 400
    assert await response.json() == {
        "error": "unknown field 'fro' (did you mean 'for'?); this body takes 'for', 'reason'",
        "field": "fro",
    }


async def test_a_pause_field_given_twice_is_named_and_pauses_nothing(
    make_client: MakeClient, redis_client: redis.asyncio.Redis
) -> None:
    # json kept the last "for": this paused for a week, not for the minute also written.
    guards = Guards(redis_client, NamespacePolicy(), GuardSettings())
    client = await make_client(guards=guards)
    headers = {**OPERATOR, "Content-Type": "application/json"}
    for body, field, error in (
        (b'{"reason": "x", "for": "1m", "for": "7d"}', "for", "for is given more than once"),
        (b'{"reason": "x", "reason": "y"}', "reason", "reason is given more than once"),
        # The key is inside reason, not a field of the body: its path says so.
        (
            b'{"reason": {"a": 1, "a": 2}}',
            "reason.a",
            "reason holds the key 'a' more than once",
        ),
        (
            b'{"reason": "x", "for": [{"b": {"a": 1, "a": 2}}]}',
            "for.0.b.a",
            "for.0.b holds the key 'a' more than once",
        ),
        # Not echoed as a name: the key cannot be stored, whether given once or twice.
        (
            rb'{"reason": "x", "\u0000": 1, "\u0000": 2}',
            "body",
            "a key must not contain U+0000 (NUL)",
        ),
    ):
        response = await client.put(PAUSE_PATH, data=body, headers=headers)
        assert response.status == 400, body
        suffix = "" if field == "body" else ": give it once"
        assert await response.json() == {"error": error + suffix, "field": field}, body
    assert not (await guards.status())["paused"]


async def test_a_misspelled_pause_field_given_twice_is_named_with_the_closest_one(
    make_client: MakeClient, redis_client: redis.asyncio.Redis
) -> None:
    # The repeat was found first: "fro is given more than once" hid that "fro" is no field.
    client = await make_client(guards=Guards(redis_client, NamespacePolicy(), GuardSettings()))
    headers = {**OPERATOR, "Content-Type": "application/json"}
    body = b'{"reason": "x", "fro": "1h", "fro": "2h"}'
    response = await client.put(PAUSE_PATH, data=body, headers=headers)
    assert response.status == 400
    assert await response.json() == {
        "error": "unknown field 'fro' (did you mean 'for'?); this body takes 'for', 'reason'",
        "field": "fro",
    }


async def test_without_guards_their_routes_say_so(make_client: MakeClient) -> None:
    client = await make_client()  # no Redis configured: no guards
    for method, path in (("GET", GUARDS_PATH), ("PUT", PAUSE_PATH), ("DELETE", PAUSE_PATH)):
        response = await client.request(method, path, json={"reason": "x"}, headers=OPERATOR)
        assert response.status == 404, (method, path)
        assert (await response.json())["error"] == "guards are not configured"


async def test_pause_needs_auth_and_redis(
    make_client: MakeClient, redis_client: redis.asyncio.Redis, redis_controlled: RedisServer
) -> None:
    guards = Guards(redis_client, NamespacePolicy(), GuardSettings(timeout_s=1.0))
    client = await make_client(guards=guards)
    response = await client.put(PAUSE_PATH, json={"reason": "x"})
    assert response.status == 401
    redis_controlled.stop()
    try:
        response = await client.put(PAUSE_PATH, json={"reason": "x"}, headers=OPERATOR)
        assert response.status == 503
    finally:
        redis_controlled.start()


async def test_cli_pause_resume_and_status(
    make_client: MakeClient, redis_client: redis.asyncio.Redis
) -> None:
    from click.testing import CliRunner

    from receiver.cli import main

    guards = Guards(redis_client, NamespacePolicy(), GuardSettings())
    client = await make_client(guards=guards)
    url = str(client.make_url("/"))
    env = {"REMEDIATOR_OPERATOR_TOKEN": OPERATOR_TOKEN}

    async def cli(*args: str) -> Any:
        return await asyncio.to_thread(CliRunner().invoke, main, [*args, "--url", url], env=env)

    paused = await cli("pause", "--reason", "db failover", "--for", "1h")
    assert paused.exit_code == 0, paused.output
    assert "automation paused until" in paused.stdout
    assert (await guards.status())["pause"]["reason"] == "db failover"

    shown = await cli("status", "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["paused"] is True

    table = await cli("status")
    assert table.exit_code == 0, table.output
    assert "PAUSED since" in table.stdout
    assert f" by {OPERATOR_NAME} until " in table.stdout
    assert "db failover" in table.stdout
    assert "0 of 10 disruptive actions used in the last 1h" in table.stdout
    assert "{" not in table.stdout  # a table, not the JSON

    # A duration the server would refuse is a usage error naming --for, sent nowhere.
    for duration, why in (("forever", "is not a duration"), ("500ms", "between 1s and 7d")):
        bad = await cli("pause", "--reason", "x", "--for", duration)
        assert bad.exit_code == 2, bad.output
        assert "'--for'" in bad.output
        assert why in bad.output

    resumed = await cli("resume")
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stdout.strip() == "automation resumed"
    assert not (await guards.status())["paused"]
    again = await cli("resume")
    assert again.exit_code == 0, again.output
    assert again.stdout.strip() == "nothing was paused: automation was running"
