"""Every approvals route, and the other store-backed routes, of the real application answer 503
while PostgreSQL is down (a real server, stopped), over real HTTP."""

from __future__ import annotations

import pytest

from receiver.http.approvals import APPROVALS_API
from tests.integration.http.conftest import MakeEdge
from tests.support.http import _headers
from tests.support.postgres import PostgresServer

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


async def test_every_store_backed_route_is_503_while_postgres_is_down(
    make_edge: MakeEdge, pg_controlled: PostgresServer
) -> None:
    edge = await make_edge()
    _, approval = await edge.env.pending_run()
    routes = [
        ("GET", APPROVALS_API, None),
        ("GET", f"{APPROVALS_API}/{approval.id}", None),
        ("POST", f"{APPROVALS_API}/{approval.id}/approve", {"reason": "ok"}),
        ("POST", f"{APPROVALS_API}/{approval.id}/reject", None),
        ("GET", "/api/v1/runs", None),
        ("GET", "/api/v1/runs/00000000-0000-0000-0000-000000000000", None),
        ("GET", "/api/v1/events", None),
        ("GET", "/api/v1/events/1", None),
        ("GET", "/api/v1/jobs", None),
        ("POST", "/api/v1/events/1/retry", None),
        ("POST", "/api/v1/jobs/1/drop", {"reason": "x"}),
    ]
    with pg_controlled.stopped(mode="fast"):
        statuses = {
            f"{method} {path}": (
                await edge.client.request(method, path, json=body, headers=_headers(path))
            ).status
            for method, path, body in routes
        }
    assert statuses == {key: 503 for key in statuses}
