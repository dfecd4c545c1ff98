"""The review on steps, approvals and alert events someone edited to hold JSON Python cannot
read back (an integer of more than 4,300 digits, arrays nested 3,000 deep: jsonb holds both,
no write of this service makes either), or of another shape than this service writes there
(labels that are a list, a plan that is a number). The pages, the report and report.md read
those columns with json.loads and as written (``plan.get``, ``labels.items()``): each
answered 500, hiding every run of the window. Now the field is empty and marked as edited, as
an unreadable audit row is (test_review_unreadable.py)."""

from __future__ import annotations

import asyncpg
import pytest

from receiver.store import Store
from tests.support.approvals import MakeApprovalEnv
from tests.support.http import OPERATOR, AiohttpClient, default_settings
from tests.support.review import STORM_RULES, play_storm
from tests.support.review_app import review_app

HUGE = "('{\"x\": 1' || repeat('0', 5000) || '}')::jsonb"
DEEP = "('{\"x\": ' || repeat('[', 3000) || repeat(']', 3000) || '}')::jsonb"
# What each edit writes into the columns of each table (None: left as written).
EDITS = {
    "a huge number": {"steps": HUGE, "approvals": HUGE, "events": HUGE, "skips": None},
    "deep nesting": {"steps": DEEP, "approvals": DEEP, "events": DEEP, "skips": None},
    "another shape": {
        "steps": "'[1, 2]'::jsonb",
        "approvals": "'7'::jsonb",
        "events": "'{\"severity\": 5}'::jsonb",
        "skips": '\'{"rule": "x"}\'::jsonb',
    },
}
MARK = "cannot be read: it was edited after it was written"


async def _edit(conn: asyncpg.Connection, run_id: str, edit: dict[str, str | None]) -> None:
    steps, plan, event, skips = edit["steps"], edit["approvals"], edit["events"], edit["skips"]
    await conn.execute(
        f"UPDATE steps SET params = {steps}, before = {steps}, after = {steps}"
        " WHERE run_id = $1::uuid",
        run_id,
    )
    await conn.execute(f"UPDATE approvals SET plan = {plan} WHERE run_id = $1::uuid", run_id)
    await conn.execute(f"UPDATE alert_events SET labels = {event}, annotations = {event}")
    if skips is not None:
        await conn.execute(f"UPDATE alert_events SET skips = {skips} WHERE skips <> '[]'")


@pytest.mark.parametrize("edit", EDITS.values(), ids=EDITS.keys())
async def test_the_review_marks_a_step_approval_or_event_field_it_cannot_read(
    approval_env: MakeApprovalEnv,
    aiohttp_client: AiohttpClient,
    store: Store,
    database_url: str,
    edit: dict[str, str | None],
) -> None:
    env = await approval_env(rules=STORM_RULES)
    storm = await play_storm(env)
    run_id = storm.runs["api"].id
    client = await aiohttp_client(review_app(store, default_settings()))
    response = await client.get("/api/v1/report", headers=OPERATOR, params={"from": "1h"})
    [incident] = (await response.json())["incidents"]
    conn = await asyncpg.connect(database_url)
    try:
        await _edit(conn, run_id, edit)
    finally:
        await conn.close()

    response = await client.get(f"/runs/{run_id}", headers=OPERATOR)
    html = await response.text()
    assert response.status == 200, html[:500]
    for field in ("params", "before", "after", "plan", "labels", "annotations"):
        assert f"{field} {MARK}" in html, field
    assert 'id="alert-unreadable"' in html
    for path in (f"/incidents/{incident['id']}", "/incidents", "/runs"):
        response = await client.get(path, headers=OPERATOR)
        assert response.status == 200, (path, (await response.text())[:500])
    response = await client.get(f"/incidents/{incident['id']}", headers=OPERATOR)
    html = await response.text()
    assert f"labels {MARK}" in html
    if edit["skips"] is not None:
        assert f"skips {MARK}" in html

    response = await client.get(f"/incidents/{incident['id']}/report.md", headers=OPERATOR)
    text = await response.text()
    assert response.status == 200, text[:500]
    assert "### Recorded fields that cannot be read (edited)" in text
    response = await client.get("/api/v1/report", headers=OPERATOR, params={"from": "1h"})
    assert response.status == 200
    [item] = (await response.json())["incidents"]
    fields = item["unreadable_fields"]
    of_run = {(f["of"], f["field"]) for f in fields if f["run_id"] == run_id}
    assert ("run step 1", "params") in of_run
    assert ("run step 1", "before") in of_run
    assert ("alert", "labels") in of_run
    assert any(of.startswith("approval ") and name == "plan" for of, name in of_run)
    # The events nothing was done for (the denied namespace's, the unmatched one) too.
    of_events = {f["field"] for f in fields if f["event_id"] is not None}
    assert of_events == {"labels", "annotations"} | ({"skips"} if edit["skips"] else set())
    assert all(f["why"] for f in fields)


@pytest.mark.parametrize("edit", [EDITS["a huge number"], EDITS["deep nesting"]])
async def test_the_events_api_gives_labels_it_cannot_read_as_stored(
    approval_env: MakeApprovalEnv,
    aiohttp_client: AiohttpClient,
    store: Store,
    database_url: str,
    edit: dict[str, str | None],
) -> None:
    """GET /api/v1/events answered 500 for the whole page on one such event; now the event
    is listed with its labels as the stored JSON text and why, as ``audit export`` gives an
    unreadable audit row."""
    env = await approval_env(rules=STORM_RULES)
    storm = await play_storm(env)
    client = await aiohttp_client(review_app(store, default_settings()))
    conn = await asyncpg.connect(database_url)
    try:
        await _edit(conn, storm.runs["api"].id, edit)
    finally:
        await conn.close()
    response = await client.get("/api/v1/events", headers=OPERATOR, params={"limit": "500"})
    assert response.status == 200, await response.text()
    events = (await response.json())["events"]
    assert events
    for event in events:
        assert isinstance(event["labels"], str)
        assert "cannot be read" in event["labels_unreadable"]
        assert "cannot be read" in event["annotations_unreadable"]
        assert "skips_unreadable" not in event
