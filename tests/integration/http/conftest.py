"""Fixtures of the HTTP edge's tests: the real Intake and Store behind ``create_app``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog

from receiver.config import Settings
from receiver.http.app import create_app
from receiver.http.deps import HealthChecks
from receiver.intake import Intake
from receiver.store import Store
from receiver.telemetry import Metrics
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
    ) -> Client:
        metrics.track_queue_depth(store.queue_depth)
        app = create_app(
            settings=settings or default_settings(),
            intake=intake or real_intake,
            metrics=metrics,
            health=health or HealthChecks(store=ping(store)),
            runs_reader=store,
            log=structlog.get_logger("test"),
            guards=guards,
            audit=store.append_audit,
        )
        return await aiohttp_client(app)

    return make
