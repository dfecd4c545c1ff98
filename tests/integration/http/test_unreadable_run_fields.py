"""The run and approval API, and the approval link, on a step, approval or run whose JSON was
edited in the database to hold what Python cannot read back (an integer of more than 4,300
digits, arrays nested 3,000 deep: jsonb holds both, no write of this service makes either) or
another shape than this service writes there (a list as params, plan or context).

``GET /api/v1/runs/{id}`` and ``GET /api/v1/runs`` read them with json.loads (500 on the first
two edits), the approvals API and the link page too (500 on all three: a plan or context read
as written, ``plan.get``); now the rest of the run or approval is given, and the one field is
marked ``<field>_unreadable`` with why, as ``GET /api/v1/events`` marks such a field."""

from __future__ import annotations

from html import unescape

import asyncpg
import pytest

from tests.integration.http.conftest import MakeEdge
from tests.support.approvals import OPERATORS
from tests.support.http import OPERATOR

HUGE = "('{\"x\": 1' || repeat('0', 5000) || '}')::jsonb"
DEEP = "('{\"x\": ' || repeat('[', 3000) || repeat(']', 3000) || '}')::jsonb"
EDITS = {"a huge number": HUGE, "deep nesting": DEEP, "another shape": "'[1, 2]'::jsonb"}
ALICE = {"Authorization": f"Bearer {OPERATORS['alice']}"}


async def _edit(database_url: str, value: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f"UPDATE steps SET params = {value}, before = {value}, after = {value}")
        await conn.execute(f"UPDATE approvals SET plan = {value}, context = {value}")
        await conn.execute(f"UPDATE runs SET decision = {value}")
    finally:
        await conn.close()


@pytest.mark.parametrize("value", EDITS.values(), ids=EDITS.keys())
async def test_a_run_or_approval_with_an_unreadable_field_is_given_with_it_marked(
    make_edge: MakeEdge, database_url: str, value: str
) -> None:
    edge = await make_edge()
    run, approval = await edge.env.pending_run()
    await _edit(database_url, value)

    response = await edge.client.get(f"/api/v1/runs/{run.id}", headers=OPERATOR)
    assert response.status == 200, await response.text()
    body = await response.json()
    [step] = body["run"]["steps"]
    assert (step["action"], step["outcome"]) == ("test.poke", "awaiting_approval")
    for field in ("params", "before", "after"):
        assert step[f"{field}_unreadable"].startswith("the stored "), field
    assert (step["params"], step["before"], step["after"]) == ({}, None, None)
    assert body["run"]["decision"] is None
    assert body["run"]["decision_unreadable"]
    assert body["audit"]  # the rest of the run is there

    response = await edge.client.get("/api/v1/runs", headers=OPERATOR)
    assert response.status == 200, await response.text()
    [listed] = (await response.json())["runs"]
    assert listed["id"] == run.id
    assert listed["decision_unreadable"]

    for path in ("/api/v1/approvals", f"/api/v1/approvals/{approval.id}"):
        response = await edge.client.get(path, headers=ALICE)
        assert response.status == 200, (path, await response.text())
        body = await response.json()
        [found] = body["approvals"] if "approvals" in body else [body["approval"]]
        assert found["id"] == approval.id
        assert (found["plan"], found["context"]) == ({}, {})
        assert found["plan_unreadable"]
        assert found["context_unreadable"]

    response = await edge.client.get(edge.link(approval))
    html = unescape(await response.text())
    assert response.status == 200, html[:500]
    assert "plan cannot be read: it was edited after it was written" in html
    assert "context cannot be read: it was edited after it was written" in html
