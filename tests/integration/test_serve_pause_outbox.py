"""`remediator serve` loses no pause while its PostgreSQL is down, not even across a restart.

A pause and a resume made while the store is down take effect, and the CLI says they will be
recorded once the store is back; the service is stopped before it is, and started again after:
the new process writes both to the audit log, once each, in the order they happened, with their
own time and operator, marked as recorded late, and `remediator audit verify` passes. Redis is
the embedded default's (kept on disk in the data directory, as a user runs it); PostgreSQL is
the tests' server, which the test stops and starts."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from receiver.audit_outbox import DRAIN_EVERY_S, GRACE_S
from tests.support.polling import eventually
from tests.support.postgres import PostgresServer
from tests.support.served import ServeFactory, cli, database_env, env_for, stop

pytestmark = [pytest.mark.postgres]

QUEUED = "it will be recorded there once the store is back"


async def _pause_rows(database_url: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            """SELECT kind, data::text AS data FROM audit_log
               WHERE kind LIKE 'guards.%' ORDER BY id"""
        )
    finally:
        await conn.close()
    return [{"kind": r["kind"], **json.loads(r["data"])} for r in rows]


async def _outbox_records(url: str) -> float:
    """``remediator_audit_outbox_records`` as the service's /metrics shows it."""
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as resp:
        text = await resp.text()
    found = re.search(r"^remediator_audit_outbox_records (\S+)$", text, re.M)
    assert found, text
    return float(found.group(1))


async def test_a_pause_made_while_the_store_is_down_is_recorded_after_a_restart(
    database_url: str, pg_controlled: PostgresServer, serve: ServeFactory, embedded_dir: Path
) -> None:
    db = {"REMEDIATOR_DATABASE_URL": database_url}
    first = serve(db)
    env = {**env_for(embedded_dir), **db}  # the CLI finds the server in the data directory
    with pg_controlled.stopped(mode="fast"):
        code, out, err = await cli(env, "pause", "--reason", "db down", timeout_s=60)
        assert code == 0, err
        assert "automation paused until resume" in out
        assert QUEUED in err
        code, out, err = await cli(env, "resume", timeout_s=60)
        assert code == 0, err
        assert "automation resumed" in out
        assert QUEUED in err
        # The service's drain reads the outbox every few seconds, the store away or not.
        await eventually(
            lambda: _outbox_records(first.url),
            lambda n: n == 2,
            timeout_s=DRAIN_EVERY_S + 30,
            interval_s=0.5,
            what="both records waiting in the gauge",
        )
        stop(first)  # before the store is back: nothing of them is in this process any more
    assert await _pause_rows(database_url) == []

    second = serve(db)
    rows = await eventually(
        lambda: _pause_rows(database_url),
        lambda rows: len(rows) >= 2,
        timeout_s=GRACE_S + DRAIN_EVERY_S + 30,
        interval_s=0.5,
        what="the pause and the resume in the audit log",
    )
    assert [(r["kind"], r["by"], r["via"], r.get("reason")) for r in rows] == [
        ("guards.pause", "local", "api", "db down"),
        ("guards.resume", "local", "api", None),
    ]
    assert [r["recorded_late"] for r in rows] == [True, True]
    occurred = [datetime.fromisoformat(r["occurred_at"]) for r in rows]
    recorded = [datetime.fromisoformat(r["recorded_at"]) for r in rows]
    assert occurred[0] < occurred[1] < recorded[0] <= recorded[1]
    assert any("recorded late in the audit log" in line for line in second.output)
    code, out, err = await cli(database_env(database_url), "audit", "verify", timeout_s=60)
    assert code == 0, out + err
    assert await _pause_rows(database_url) == rows  # once
    await eventually(
        lambda: _outbox_records(second.url),
        lambda n: n == 0,
        timeout_s=DRAIN_EVERY_S + 30,
        interval_s=0.5,
        what="the gauge emptied by the drain",
    )
