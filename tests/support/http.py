"""What the HTTP edge's tests share: the token, the sample webhook body, the client factory's
type and small helpers (the headers for a path: an approver on the approvals API, the
app's operator elsewhere). The fixtures themselves are in ``tests/integration/http/conftest.py``."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

import receiver
from receiver.config import Settings
from receiver.http.approvals import APPROVALS_API
from receiver.http.deps import HealthChecks
from receiver.store import Store
from tests.support.approvals import OPERATORS

TOKEN = "t0ken-for-tests"
SAMPLE = Path(receiver.__file__).parent / "samples" / "high-memory.json"
# The webhook credential: posts alerts and nothing else.
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# An operator's token: runs, guards, pause and resume.
OPERATOR_NAME = "alice"
OPERATOR_TOKEN = "alice-operator-t0ken-for-tests"
OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
# An approver of the approval environment (``tests.support.approvals``): its API knows only them.
ALICE = {"Authorization": f"Bearer {OPERATORS['alice']}"}


def default_settings() -> Settings:
    """The settings of ``make_client`` when none are given: the webhook token and one
    operator, ``alice``."""
    return Settings(
        webhook_token=SecretStr(TOKEN), operator_tokens={OPERATOR_NAME: SecretStr(OPERATOR_TOKEN)}
    )


AiohttpClient = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]
Client = TestClient[web.Request, web.Application]


class MakeClient(Protocol):
    """The ``make_client`` fixture: a test client around ``create_app``; what is not given is
    the real Intake and Store, ``default_settings()`` and a store-only readiness check."""

    async def __call__(
        self,
        *,
        settings: Settings | None = None,
        health: HealthChecks | None = None,
        intake: Any = None,
        guards: Any = None,
        approvals: Any = None,
        locks: Any = None,
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


def _headers(path: str) -> dict[str, str]:
    # The approvals API knows the approval environment's operators; the rest the app's.
    return ALICE if path.startswith(APPROVALS_API) else OPERATOR
