"""Fixtures of the HTTP edge's tests: the real Intake and Store behind ``create_app``."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import structlog

from receiver.approvals.slack import SlackInteractions
from receiver.audit_outbox import AuditedSwitch
from receiver.config import Settings
from receiver.guards.redis_guards import Guards
from receiver.http.app import create_app
from receiver.http.approvals import ApprovalWeb
from receiver.http.deps import STORE_TIMEOUT_S, HealthChecks
from receiver.intake import Intake
from receiver.model import ApprovalRecord
from receiver.store import Store
from receiver.telemetry import Metrics
from tests.support.approvals import ApprovalEnv, MakeApprovalEnv
from tests.support.http import AiohttpClient, Client, MakeClient, default_settings, ping


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def intake(store: Store) -> AsyncIterator[Intake]:
    created = Intake(store)
    try:
        yield created
    finally:
        await created.drain()


@pytest.fixture
async def make_client(
    aiohttp_client: AiohttpClient, store: Store, intake: Intake, metrics: Metrics
) -> MakeClient:
    """A factory: a test client around create_app with the real Intake and Store."""

    real_intake = intake

    async def make(
        *,
        settings: Settings | None = None,
        health: HealthChecks | None = None,
        intake: Any = None,
        guards: Any = None,
        approvals: Any = None,
        locks: Any = None,
    ) -> Client:
        metrics.track_queue_depth(store.queue_depth)
        if isinstance(guards, Guards):
            # The kill switch as serve builds it: its records written to this store, or
            # queued in the guards' Redis while the store is away.
            log = structlog.get_logger("test")
            guards = AuditedSwitch(guards, store.bounded(STORE_TIMEOUT_S), log)
        app = create_app(
            settings=settings or default_settings(),
            intake=intake or real_intake,
            metrics=metrics,
            health=health or HealthChecks(store=ping(store)),
            runs_reader=store,
            log=structlog.get_logger("test"),
            guards=guards,
            queues=store,
            locks=locks,
            approvals=approvals,
        )
        return await aiohttp_client(app)

    return make


SLACK_SECRET = "slack-signing-secret-for-tests"


@dataclass
class Edge:
    """An approval environment (pipeline, desk, peer) behind a test client of the real app."""

    env: ApprovalEnv
    client: Client

    @property
    def base(self) -> str:
        return str(self.client.make_url("")).rstrip("/")

    def link(self, approval: ApprovalRecord) -> str:
        """The approval's link, as a path on the test server."""
        link = self.env.desk.link(approval)
        assert link is not None
        return link.removeprefix(self.base)

    async def snapshot(self) -> list[Any]:
        """Everything a decision would change: approvals, runs, steps, jobs, audit rows."""
        async with self.env.harness.store._tx() as conn:
            return [
                [dict(r) for r in await conn.fetch(f"SELECT * FROM {table} ORDER BY 1")]
                for table in ("approvals", "runs", "steps", "jobs", "audit_log")
            ]


MakeEdge = Callable[..., Awaitable[Edge]]


@pytest.fixture
async def make_edge(approval_env: MakeApprovalEnv, make_client: MakeClient) -> MakeEdge:
    """A factory of ``Edge``; Slack user U0BOB is mapped to bob; ``slack_now`` fixes Slack's
    clock (seconds); ``slack_teams`` are the workspaces whose clicks are taken (none: any)."""

    async def make(*, slack_now: float | None = None, slack_teams: tuple[str, ...] = ()) -> Edge:
        env = await approval_env()
        slack = SlackInteractions(
            SLACK_SECRET,
            {"U0BOB": "bob"},
            teams=slack_teams,
            now=(lambda: slack_now) if slack_now else time.time,
        )
        client = await make_client(approvals=ApprovalWeb(env.desk, env.identities, slack))
        # The links and the Origin check name the server the test client talks to.
        env.desk.public_url = str(client.make_url("")).rstrip("/")
        return Edge(env, client)

    return make
