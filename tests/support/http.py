"""What the HTTP edge's tests share: the token, the sample webhook body, the client factory's
type and small helpers. The fixtures themselves are in ``tests/integration/http/conftest.py``."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from aiohttp.test_utils import TestClient

import receiver
from receiver.config import Settings
from receiver.http.deps import HealthChecks
from receiver.store import Store

TOKEN = "t0ken-for-tests"
SAMPLE = Path(receiver.__file__).parent / "samples" / "high-memory.json"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

AiohttpClient = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]
Client = TestClient[web.Request, web.Application]


class MakeClient(Protocol):
    """The ``make_client`` fixture: a test client around ``create_app``; what is not given is
    the real Intake and Store, the token above and a store-only readiness check."""

    async def __call__(
        self,
        *,
        settings: Settings | None = None,
        health: HealthChecks | None = None,
        intake: Any = None,
        guards: Any = None,
        approvals: Any = None,
    ) -> Client: ...


def sample() -> dict[str, Any]:
    """The sample webhook body (``receiver/samples/high-memory.json``)."""
    data: dict[str, Any] = json.loads(SAMPLE.read_text())
    return data


def basic(user: str, password: str) -> dict[str, str]:
    """A basic-auth Authorization header."""
    pair = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


def ping(store: Store) -> Callable[[], Awaitable[str]]:
    """A readiness check of the store."""

    async def check() -> str:
        await store.ping()
        return "ok"

    return check
