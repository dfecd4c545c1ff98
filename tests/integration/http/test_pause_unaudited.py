"""The kill switch works while PostgreSQL is away, and its record is written once it is back.

The pause takes effect in Redis, the answer is 200 with ``"audited": false`` and
``"audit_queued": true``, an error line names it, and the CLI says it will be recorded. Once the
store answers, a drainer (another replica's here) writes the records queued meanwhile: each
once, in the order they happened, with their own time and operator, marked as recorded late,
and the chain still verifies."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from typing import Any

import pytest
import redis.asyncio
import structlog
from click.testing import CliRunner
from structlog.testing import capture_logs

from receiver.audit_outbox import AuditedSwitch
from receiver.cli import main
from receiver.guards.policy import GuardSettings
from receiver.guards.redis_guards import Guards
from receiver.model import NamespacePolicy
from receiver.store import Store
from tests.support.http import OPERATOR, OPERATOR_TOKEN, MakeClient
from tests.support.postgres import PostgresServer

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

QUEUED = "not yet recorded in the audit log: queued, to be recorded once the store is back"


async def _pause_rows(store: Store) -> list[dict[str, Any]]:
    async with store._pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT id, at, kind, data::text AS data FROM audit_log
               WHERE kind LIKE 'guards.%' ORDER BY id"""
        )
    return [{**dict(r), "data": json.loads(r["data"])} for r in rows]


async def test_pause_and_resume_without_the_store_are_recorded_once_it_is_back(
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
                "/api/v1/pause", json={"reason": "db maintenance", "for": "2h"}, headers=OPERATOR
            )
            assert paused.status == 200
            answer = await paused.json()
            assert (answer["audited"], answer["audit_queued"]) == (False, True)
            status = await guards.status()  # the kill switch took effect
            assert status["paused"] is True
            since = status["pause"]["since"]
            resumed = await client.delete("/api/v1/pause", headers=OPERATOR)
            assert resumed.status == 200
            answer = await resumed.json()
            assert (answer["audited"], answer["audit_queued"]) == (False, True)
            assert (await guards.status())["paused"] is False
        # The CLI says it too, and that it will be on the record.
        env = {"REMEDIATOR_OPERATOR_TOKEN": OPERATOR_TOKEN}
        url = str(client.make_url("")).rstrip("/")
        args = ["pause", "--reason", "db still down", "--url", url]
        result = await asyncio.to_thread(CliRunner().invoke, main, args, env=env)
        assert result.exit_code == 0, result.output
        assert "it will be recorded there once the store is back" in result.stderr
    errors = [e for e in logs if e["log_level"] == "error"]
    assert [(e["event"], e["kind"], e["by"]) for e in errors] == [
        (QUEUED, "guards.pause", "alice"),
        (QUEUED, "guards.resume", "alice"),
    ]

    # The store is back: nothing of the three is written yet, and another replica's drainer
    # writes them, in order, once.
    assert await _pause_rows(store) == []
    drainer = AuditedSwitch(guards, store, structlog.get_logger("test"))
    assert await drainer.drain(min_age_s=0) == 3
    rows = await _pause_rows(store)
    data = [r["data"] for r in rows]
    assert [
        (r["kind"], d["by"], d["via"], d.get("reason")) for r, d in zip(rows, data, strict=True)
    ] == [
        ("guards.pause", "alice", "api", "db maintenance"),
        ("guards.resume", "alice", "api", None),
        ("guards.pause", "alice", "api", "db still down"),
    ]
    assert all(d["recorded_late"] is True for d in data)
    assert len({d["entry"] for d in data}) == 3
    occurred = [datetime.fromisoformat(d["occurred_at"]) for d in data]
    recorded = [datetime.fromisoformat(d["recorded_at"]) for d in data]
    # Their own time: the pause's is the one Redis kept with it; each came before it was
    # recorded, and they are in the order they happened.
    assert data[0]["occurred_at"] == since
    assert datetime.fromisoformat(data[0]["until"]) == occurred[0] + timedelta(hours=2)
    assert data[1]["was_paused"] is True
    assert occurred == sorted(occurred)
    assert all(o < r <= row["at"] for o, r, row in zip(occurred, recorded, rows, strict=True))
    assert (await store.verify_audit()).ok

    # Drained again, by either replica: nothing more.
    assert await drainer.drain(min_age_s=0) == 0
    assert await drainer.switch.depth() == 0
    assert len(await _pause_rows(store)) == 3

    # With the store up, a pause is on the record at once, as it always was.
    paused = await client.put("/api/v1/pause", json={"reason": "again"}, headers=OPERATOR)
    assert (await paused.json())["audited"] is True
    resumed = await client.delete("/api/v1/pause", headers=OPERATOR)
    answer = await resumed.json()
    assert (answer["audited"], answer["audit_queued"]) == (True, False)
    on_time = [r["data"] for r in (await _pause_rows(store))[3:]]
    assert [d.get("reason") for d in on_time] == ["again", None]
    assert not any("recorded_late" in d for d in on_time)
    assert (await store.verify_audit()).ok


async def test_entries_not_utf8_or_with_nul_are_recorded_escaped_and_block_no_pause(
    make_client: MakeClient, redis_client: redis.asyncio.Redis, store: Store
) -> None:
    # Written by hand or by another program: bytes that are not UTF-8, and a U+0000, which
    # PostgreSQL's text cannot hold. Each is recorded as it is, escaped, in its turn; the pauses
    # queued behind them are written at once, and the routes answer as usual.
    guards = Guards(redis_client, NamespacePolicy(), GuardSettings())
    client = await make_client(guards=guards)
    outbox = guards.keys.audit_outbox()
    await redis_client.xadd(
        outbox, {"entry": "by-hand", "kind": "guards.pause", "data": b"\xff\xfe"}
    )
    await redis_client.xadd(outbox, {"kind": b"guards.resume\x00", "data": "{}"})

    paused = await client.put(
        "/api/v1/pause", json={"reason": "db maintenance", "for": "1h"}, headers=OPERATOR
    )
    assert paused.status == 200
    assert (await paused.json())["audited"] is True
    resumed = await client.delete("/api/v1/pause", headers=OPERATOR)
    assert resumed.status == 200
    assert (await resumed.json())["audited"] is True

    rows = [(r["kind"], r["data"]) for r in await _pause_rows(store)]
    (k1, bad_bytes), (k2, nul), (k3, pause), (k4, resume) = rows
    assert (k1, k2, k3, k4) == (
        "guards.outbox_unreadable",
        "guards.outbox_unreadable",
        "guards.pause",
        "guards.resume",
    )
    assert bad_bytes["entry"] == "by-hand"
    assert bad_bytes["fields"] == {"entry": "by-hand", "kind": "guards.pause", "data": "\\xff\\xfe"}
    assert bad_bytes["escaped"] == ["data"]
    assert nul["fields"] == {"kind": "guards.resume\\x00", "data": "{}"}
    assert nul["escaped"] == ["kind"]
    assert nul["entry"].startswith("outbox:")
    assert pause["reason"] == "db maintenance"
    assert "recorded_late" not in resume
    assert await AuditedSwitch(guards, store, structlog.get_logger("test")).switch.depth() == 0
    assert (await store.verify_audit()).ok


async def test_a_pause_whose_record_the_store_refuses_still_answers_200(
    make_client: MakeClient, redis_client: redis.asyncio.Redis, store: Store
) -> None:
    # Not an outage: the store answers, with an error (here the once table is away, as under a
    # botched restore). The pause took effect, so the answer says so, with its record queued.
    guards = Guards(redis_client, NamespacePolicy(), GuardSettings())
    client = await make_client(guards=guards)
    await store._pool.execute("ALTER TABLE audit_once RENAME TO audit_once_away")
    try:
        with capture_logs() as logs:
            paused = await client.put(
                "/api/v1/pause", json={"reason": "db maintenance"}, headers=OPERATOR
            )
            assert paused.status == 200
            answer = await paused.json()
            assert (answer["audited"], answer["audit_queued"]) == (False, True)
            assert (await guards.status())["paused"] is True
    finally:
        await store._pool.execute("ALTER TABLE audit_once_away RENAME TO audit_once")
    failed = [e for e in logs if e["event"] == "writing the audit outbox failed"]
    assert [(e["log_level"], e["kind"]) for e in failed] == [("error", "guards.pause")]

    drainer = AuditedSwitch(guards, store, structlog.get_logger("test"))
    assert await drainer.drain(min_age_s=0) == 1
    assert [r["data"]["reason"] for r in await _pause_rows(store)] == ["db maintenance"]
