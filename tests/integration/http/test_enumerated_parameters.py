"""One answer for a value a parameter does not take, and for a method a route does not take:
every enumerated query parameter is 400 naming it and listing its values; a method not allowed is
405 with Allow whatever the credential; the 403 names the credential's role in English."""

from __future__ import annotations

import pytest

from receiver.http.alerts import ALERTS_PATH
from tests.integration.http.conftest import MakeEdge
from tests.support.approvals import OPERATORS
from tests.support.http import AUTH, OPERATOR, MakeClient

pytestmark = [pytest.mark.postgres]

# (path, parameter, the values it takes)
ENUMERATED = [
    ("/api/v1/runs", "outcome", "pending, running"),
    ("/api/v1/events", "state", "pending, claimed, done, dead"),
    ("/api/v1/jobs", "state", "pending, claimed, done, dead"),
    (
        "/api/v1/jobs",
        "kind",
        "resume_run, verify_deadline, resume_resolve, release_lock, finish_end",
    ),
    ("/api/v1/events", "skipped", "true, false"),
]


@pytest.mark.parametrize(("path", "parameter", "values"), ENUMERATED)
async def test_a_value_an_enumerated_parameter_does_not_take_is_400_listing_them(
    make_client: MakeClient, path: str, parameter: str, values: str
) -> None:
    client = await make_client()
    response = await client.get(path, params={parameter: "bogus"}, headers=OPERATOR)
    assert response.status == 400
    body = await response.json()
    assert body["parameter"] == parameter
    assert body["error"].startswith(f"unknown {parameter} 'bogus'; one of ")
    assert values in body["error"]


async def test_the_approvals_state_is_checked_the_same_way(make_edge: MakeEdge) -> None:
    edge = await make_edge()
    alice = {"Authorization": f"Bearer {OPERATORS['alice']}"}
    response = await edge.client.get("/api/v1/approvals?state=bogus", headers=alice)
    assert response.status == 400
    body = await response.json()
    assert body["parameter"] == "state"
    assert body["error"].startswith("unknown state 'bogus'; one of pending, ")


@pytest.mark.parametrize("headers", [AUTH, OPERATOR, {}], ids=["webhook", "operator", "none"])
async def test_a_method_a_route_does_not_take_is_405_whatever_the_credential(
    make_client: MakeClient, headers: dict[str, str]
) -> None:
    client = await make_client()
    response = await client.get(ALERTS_PATH, headers=headers)
    assert response.status == 405
    assert response.headers["Allow"] == "POST"
    runs = await client.delete("/api/v1/runs", headers=headers)
    assert runs.status == 405


async def test_the_403_names_the_role_in_english(make_client: MakeClient) -> None:
    client = await make_client()
    response = await client.post(ALERTS_PATH, json={}, headers=OPERATOR)
    assert response.status == 403
    assert (await response.json())["error"].startswith(
        "forbidden: an operator credential cannot call this endpoint"
    )
    response = await client.get("/api/v1/runs", headers=AUTH)
    assert (await response.json())["error"].startswith("forbidden: a webhook credential")
