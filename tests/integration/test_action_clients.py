"""Clients by name end to end: the service's builder opens only what the loaded rules need, and
a PostgreSQL runbook runs through the real pipeline (terminate idle sessions, then notify a
local Slack-compatible server), or records dry_run naming the client that is missing."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import structlog

from receiver.clients import build_clients, check_required, required_clients
from receiver.config import load_settings
from receiver.model import NamespacePolicy
from receiver.rules.compile import compile_files
from remediations.http.post import HttpPolicy
from remediations.notify.message import ChannelKind
from remediations.notify.notifier import Channel, Notifier
from remediations.postgres.connection import PostgresConnection
from remediations.registry import default_registry
from tests.support.peer import Peer, peer
from tests.support.pipeline import MakeHarness
from tests.support.polling import eventually
from tests.support.postgres import PostgresServer

__all__ = ["peer"]

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

RULES = """
rules:
  - name: idle-sessions
    match: ['alertname="DatabaseConnectionsHigh"']
    target: {kind: PostgresDatabase, name: "{{ labels.database }}"}
    steps:
      - action: postgres.terminate_idle
        params: {roles: [%(role)s], idle_for: 1s, max_sessions: 5}
      - action: notify
        params:
          channel: oncall
          message: "Ended idle sessions on {{ labels.database }}: {{ annotations.summary }}"
"""


def rules_needing(text: str) -> Any:
    return compile_files({"rules.yaml": text}, default_registry(), NamespacePolicy())


async def test_only_connections_the_rules_need_are_opened(
    tmp_path: Path, pg_server: PostgresServer, redis_url: str
) -> None:
    (tmp_path / "dsn").write_text(pg_server.url("postgres"))
    (tmp_path / "redis").write_text(redis_url)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""
postgres:
  databases:
    orders: {{dsn_file: {tmp_path}/dsn}}
    billing: {{dsn_file: {tmp_path}/dsn}}
redis:
  queues:
    jobs:
      url_file: {tmp_path}/redis
      queues: {{emails: {{layout: list, key: e, dead_letter_key: d}}}}
"""
    )
    settings = load_settings(config, {})
    rules = rules_needing(
        """
rules:
  - name: fixed
    match: ['alertname="A"']
    target: {kind: PostgresDatabase, name: orders}
    steps: [{action: postgres.terminate_idle, params: {roles: [app], idle_for: 10m}}]
"""
    )
    built = build_clients(settings)
    try:
        assert built.clients.has("postgres:orders")
        assert built.clients.has("postgres:billing")
        assert built.clients.has("redis:jobs")
        assert not built.clients.has("http")
        await check_required(
            built, required_clients(rules, default_registry()), structlog.get_logger()
        )
        assert built.postgres["orders"].opened
        assert not built.postgres["billing"].opened
    finally:
        await built.close()
    assert not built.postgres["orders"].opened


@pytest.fixture
async def app_role(pg_server: PostgresServer) -> AsyncIterator[tuple[str, str]]:
    """A login role for application sessions and the remediator's least-privilege role."""
    suffix = os.urandom(3).hex()
    app, remediator = f"app_{suffix}", f"remediator_{suffix}"
    admin = await asyncpg.connect(pg_server.url("postgres"))
    await admin.execute(f"CREATE ROLE {app} LOGIN")
    await admin.execute(f"CREATE ROLE {remediator} LOGIN")
    await admin.execute(f"GRANT pg_signal_backend, pg_read_all_stats TO {remediator}")
    try:
        yield app, remediator
    finally:
        for role in (app, remediator):
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role
            )
            await admin.execute(f"DROP ROLE {role}")
        await admin.close()


async def test_a_database_runbook_through_the_pipeline(
    make_harness: MakeHarness,
    empty_database_url: str,
    app_role: tuple[str, str],
    peer: Peer,
) -> None:
    app, remediator = app_role
    session = await asyncpg.connect(empty_database_url.replace("postgres@", f"{app}@"))
    await session.execute("BEGIN")
    await session.execute("SELECT 1")
    pid = session.get_server_pid()
    conn = PostgresConnection("orders", empty_database_url.replace("postgres@", f"{remediator}@"))
    async with aiohttp.ClientSession() as http:
        notifier = Notifier(
            {"oncall": Channel("oncall", ChannelKind.SLACK, peer.url("/slack"), HttpPolicy())},
            http,
        )
        harness = await make_harness(
            RULES % {"role": app},
            clients={"postgres:orders": conn, "notify": notifier},
            dry_run=False,
        )
        try:
            probe = TerminateProbe(conn, app)
            await eventually(probe.idle_long_enough)
            await harness.deliver(
                {"alertname": "DatabaseConnectionsHigh", "database": "orders"},
            )
            run = await harness.only_run()
        finally:
            await conn.close()
            with contextlib.suppress(Exception):
                await session.close(timeout=1)
    terminate, notify = run.steps
    assert (terminate.action, terminate.outcome) == ("postgres.terminate_idle", "ok")
    assert terminate.after == {"terminated": [pid]}
    assert (notify.action, notify.outcome) == ("notify", "ok")
    (seen,) = peer.seen("/slack")
    assert "Ended idle sessions on orders: test" in str(seen.body)


class TerminateProbe:
    """Waits until the application's session has been idle past the rule's 1s threshold."""

    def __init__(self, conn: PostgresConnection, role: str) -> None:
        self.conn = conn
        self.role = role

    async def idle_long_enough(self) -> bool:
        rows = await self.conn.fetch(
            "probe",
            "SELECT 1 FROM pg_stat_activity WHERE usename = $1 "
            "AND state_change < now() - interval '1.2 seconds'",
            self.role,
        )
        return bool(rows)


async def test_a_missing_database_records_dry_run_naming_it(
    make_harness: MakeHarness, peer: Peer
) -> None:
    harness = await make_harness(RULES % {"role": "app"}, dry_run=False)

    await harness.deliver({"alertname": "DatabaseConnectionsHigh", "database": "billing"})

    run = await harness.only_run()
    assert run.outcome == "dry_run"
    terminate, notify = run.steps
    assert terminate.outcome == "dry_run"
    assert terminate.message.startswith("dry-run (postgres:billing not configured)")
    assert notify.outcome == "dry_run"
    assert notify.message.startswith("dry-run (notify not configured)")
    assert peer.requests == []


async def test_a_run_whose_database_step_ran_dry_is_dry_run_though_its_notice_was_sent(
    make_harness: MakeHarness, peer: Peer
) -> None:
    """The notify step is configured and sent; the step that acts on the database runs dry
    (no such connection). The run read `succeeded` in the run list and the report, as if the
    sessions had been ended."""
    async with aiohttp.ClientSession() as http:
        notifier = Notifier(
            {"oncall": Channel("oncall", ChannelKind.SLACK, peer.url("/slack"), HttpPolicy())},
            http,
        )
        harness = await make_harness(
            RULES % {"role": "app"}, clients={"notify": notifier}, dry_run=False
        )
        await harness.deliver({"alertname": "DatabaseConnectionsHigh", "database": "billing"})
        run = await harness.only_run()
    terminate, notify = run.steps
    assert (terminate.outcome, notify.outcome) == ("dry_run", "ok")
    assert len(peer.seen("/slack")) == 1
    assert run.outcome == "dry_run"
