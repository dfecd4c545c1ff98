"""An operator route that reads no query refuses one (400 naming it), on the real application
over real HTTP: a query it ignored did what the caller did not ask for.

``PUT /api/v1/pause?for=2h`` with ``{"reason": "..."}`` paused until someone resumed, where the
caller asked for two hours; every other route that reads no query (the guards, one run, one
event or job, their retry and drop, one approval and its decision) ignored one the same way,
while the lists and the report refuse an unknown parameter (test_bad_parameters.py). The
webhook's route keeps ignoring one: a URL in Alertmanager's ``webhook_config`` may carry one.
"""

from __future__ import annotations

import pytest
import redis.asyncio

from receiver.guards.policy import GuardSettings
from receiver.guards.redis_guards import Guards
from receiver.http.alerts import ALERTS_PATH
from receiver.http.approvals import APPROVALS_API
from receiver.http.guards import GUARDS_PATH, PAUSE_PATH
from receiver.http.queues import EVENTS_PATH, JOBS_PATH
from receiver.http.runs import RUNS_PATH
from receiver.model import NamespacePolicy
from tests.integration.http.conftest import MakeEdge
from tests.support.http import AUTH, OPERATOR, MakeClient, _headers

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


async def test_a_pause_given_its_duration_in_the_query_pauses_nothing(
    make_client: MakeClient, redis_client: redis.asyncio.Redis
) -> None:
    guards = Guards(redis_client, NamespacePolicy(), GuardSettings())
    client = await make_client(guards=guards)
    response = await client.put(f"{PAUSE_PATH}?for=2h", json={"reason": "deploy"}, headers=OPERATOR)
    assert response.status == 400
    assert await response.json() == {
        "error": (
            "unknown parameter 'for': PUT /api/v1/pause takes no query parameter"
            " (give its fields in the JSON body)"
        ),
        "parameter": "for",
    }
    assert not (await guards.status())["paused"]
    # Without the query the same request pauses, for as long as the body says.
    response = await client.put(
        PAUSE_PATH, json={"reason": "deploy", "for": "2h"}, headers=OPERATOR
    )
    assert response.status == 200
    assert (await response.json())["until"] is not None
    response = await client.delete(f"{PAUSE_PATH}?force=1", headers=OPERATOR)
    assert response.status == 400
    assert (await response.json())["parameter"] == "force"
    assert (await guards.status())["paused"]
    await guards.resume()


async def test_every_operator_route_that_reads_no_query_refuses_one_and_changes_nothing(
    make_edge: MakeEdge,
) -> None:
    edge = await make_edge()
    run, approval = await edge.env.pending_run()
    routes = [
        ("GET", GUARDS_PATH),
        ("GET", f"{RUNS_PATH}/{run.id}"),
        ("GET", f"{EVENTS_PATH}/1"),
        ("GET", f"{JOBS_PATH}/1"),
        ("POST", f"{EVENTS_PATH}/1/retry"),
        ("POST", f"{EVENTS_PATH}/1/drop"),
        ("POST", f"{JOBS_PATH}/1/retry"),
        ("POST", f"{JOBS_PATH}/1/drop"),
        ("GET", f"{APPROVALS_API}/{approval.id}"),
        ("POST", f"{APPROVALS_API}/{approval.id}/approve"),
        ("POST", f"{APPROVALS_API}/{approval.id}/reject"),
    ]
    before = await edge.snapshot()
    wrong: list[str] = []
    for method, path in routes:
        response = await edge.client.request(
            method, f"{path}?reason=now", json={"reason": "from the body"}, headers=_headers(path)
        )
        body = await response.json()
        if response.status != 400 or body.get("parameter") != "reason":
            wrong.append(f"{method} {path}?reason=now: {response.status} {body}")
    assert wrong == [], "\n".join(wrong)
    assert await edge.snapshot() == before
    # The routes that read a query still take theirs.
    for path in (f"{RUNS_PATH}?limit=1", f"{APPROVALS_API}?limit=1", f"{EVENTS_PATH}?limit=1"):
        response = await edge.client.get(path, headers=_headers(path))
        assert response.status == 200, path


async def test_the_webhook_still_takes_a_url_with_a_query(make_client: MakeClient) -> None:
    client = await make_client()
    payload = {
        "version": "4",
        "status": "firing",
        "receiver": "remediator",
        "groupKey": "{}:{}",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "QueryKept"},
                "annotations": {},
                "startsAt": "2026-01-01T00:00:00Z",
                "fingerprint": "00000000000000aa",
            }
        ],
    }
    response = await client.post(f"{ALERTS_PATH}?source=am", json=payload, headers=AUTH)
    assert response.status == 200, await response.text()
