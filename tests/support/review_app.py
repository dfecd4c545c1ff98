"""The service's HTTP application with the review pages, around a test's store."""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from receiver.config import Settings
from receiver.http.app import create_app
from receiver.http.deps import HealthChecks
from receiver.http.login import ReviewWeb
from receiver.intake import Intake
from receiver.review.loader import Review
from receiver.review.sessions import Sessions
from receiver.store import Store
from receiver.telemetry import Metrics

__all__ = ["review_app"]


def review_app(
    store: Store,
    settings: Settings,
    *,
    identities: Any = None,
    open_: bool = False,
    metrics: Metrics | None = None,
) -> web.Application:
    """``create_app`` with the review (pages, login, report API) on ``store``. ``open_``:
    no credential configured at all (``REMEDIATOR_ALLOW_UNAUTHENTICATED``), everything open."""
    if open_:
        settings = Settings(allow_unauthenticated=True)
    return create_app(
        settings=settings,
        intake=Intake(store),
        metrics=metrics or Metrics(),
        health=HealthChecks(),
        runs_reader=store,
        log=structlog.get_logger("test.review"),
        queues=store,
        review=ReviewWeb(Review(store), Sessions(settings.operator_tokens), identities),
    )
