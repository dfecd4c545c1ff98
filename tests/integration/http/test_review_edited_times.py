"""The review, the run and approval APIs and the approval link on a run whose times were
edited in the database outside Python's years (year 20000, BC, 'infinity', '-infinity'):
timestamptz holds them, no write of this service makes one. asyncpg raised OverflowError
reading the first two (and read the infinities as years 1 and 9999, unmarked), so the run's
page, its API, the runs list, the incidents, the report, the approvals API and the link page
answered 500 when they met one of the run's, its steps', its approval's or its event's times.
Now each is read (receiver.store.stored_times), shown as stored and marked as edited, and the
rest of the run, and every other run, is shown as before."""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import unescape
from typing import Any

import asyncpg
import pytest
import structlog

from receiver.approvals.slack import SlackInteractions
from receiver.http.app import create_app
from receiver.http.approvals import ApprovalWeb
from receiver.http.deps import HealthChecks
from receiver.http.login import ReviewWeb
from receiver.intake import Intake
from receiver.review.loader import Review
from receiver.review.sessions import Sessions
from receiver.store import Store
from receiver.telemetry import Metrics
from tests.support.approvals import OPERATORS, MakeApprovalEnv
from tests.support.http import OPERATOR, AiohttpClient, Client, default_settings
from tests.support.review import STORM_RULES, play_storm

ALICE = {"Authorization": f"Bearer {OPERATORS['alice']}"}
# As PostgreSQL writes them (TimeZone UTC): what the pages and the APIs give back.
TIMES = {"year 20000": "20000-01-01 00:00:00+00", "BC": "0100-01-01 00:00:00+00 BC",
         "infinity": "infinity", "-infinity": "-infinity"}  # fmt: skip
RUN_TIMES = ("created_at", "started_at", "finished_at", "resolved_at", "verify_deadline")
STEP_TIMES = ("started_at", "finished_at")
APPROVAL_TIMES = ("requested_at", "expires_at", "decided_at")
EVENT_TIMES = ("received_at", "done_at")
WHY = "the stored time {at} is outside the years 1 to 9999 Python can hold"


def _set(columns: tuple[str, ...]) -> str:
    return ", ".join(f"{c} = $2::text::timestamptz" for c in columns)


@dataclass
class Edited:
    client: Client
    run: str  # the run whose times were edited
    other: str  # a run of the same incident, not edited
    incident: str
    approval: str
    link: str  # the approval's link, as a path
    at: str  # the time set, as PostgreSQL writes it


@pytest.fixture
async def edited(
    approval_env: MakeApprovalEnv,
    aiohttp_client: AiohttpClient,
    store: Store,
    database_url: str,
    request: pytest.FixtureRequest,
) -> Edited:
    """The storm played, the review and the approvals served, then every time of the run of
    'api' (its row, its steps, its approval, its event) set to ``request.param``."""
    env = await approval_env(rules=STORM_RULES)
    storm = await play_storm(env)
    settings = default_settings()
    app = create_app(
        settings=settings,
        intake=Intake(store),
        metrics=Metrics(),
        health=HealthChecks(),
        runs_reader=store,
        log=structlog.get_logger("test.review"),
        queues=store,
        approvals=ApprovalWeb(env.desk, env.identities, SlackInteractions("s" * 32, {})),
        review=ReviewWeb(Review(store), Sessions(settings.operator_tokens), env.identities),
    )
    client = await aiohttp_client(app)
    response = await client.get("/api/v1/report", headers=OPERATOR, params={"from": "1h"})
    [incident] = (await response.json())["incidents"]
    run, approval = storm.runs["api"], storm.approvals["api"]
    link = env.desk.link(approval)
    assert link is not None
    conn = await asyncpg.connect(database_url)
    try:
        at = request.param
        await conn.execute(f"UPDATE runs SET {_set(RUN_TIMES)} WHERE id = $1::uuid", run.id, at)
        await conn.execute(
            f"UPDATE steps SET {_set(STEP_TIMES)} WHERE run_id = $1::uuid", run.id, at
        )
        await conn.execute(
            f"UPDATE approvals SET {_set(APPROVAL_TIMES)} WHERE run_id = $1::uuid", run.id, at
        )
        await conn.execute(
            f"UPDATE alert_events SET {_set(EVENT_TIMES)} WHERE id = $1", run.event_id, at
        )
    finally:
        await conn.close()
    path = "/approve/" + link.split("/approve/", 1)[1]
    return Edited(client, run.id, storm.runs["cart"].id, incident["id"], approval.id, path, at)


async def _get(client: Client, path: str, headers: dict[str, str], **params: str) -> str:
    response = await client.get(path, headers=headers, params=params)
    text = await response.text()
    assert response.status == 200, (path, params, text[:500])
    return unescape(text)


async def _json(client: Client, path: str, headers: dict[str, str], **params: str) -> Any:
    response = await client.get(path, headers=headers, params=params)
    assert response.status == 200, (path, params, (await response.text())[:500])
    return await response.json()


@pytest.mark.parametrize("edited", TIMES.values(), ids=TIMES.keys(), indirect=True)
async def test_every_page_and_api_shows_an_edited_time_as_stored_and_marked(
    edited: Edited,
) -> None:
    client, at = edited.client, edited.at
    why = WHY.format(at=at)

    # The pages: the run's times as stored, said to be edited; its steps' and approval's
    # fields named with why; the lists, the incident and its report answer.
    html = await _get(client, f"/runs/{edited.run}", OPERATOR)
    assert f"{at} (cannot be read: edited)" in html
    for field in STEP_TIMES + APPROVAL_TIMES:
        assert f"{field} cannot be read: it was edited after it was written ({why})" in html
    assert "poked for 'api'" in html  # the rest of the run is there
    # Its incident, and its group's other runs' (another, when its creation was edited).
    [incident] = re.findall(r'href="\.\./incidents/([^"]+)"', html)
    other = await _get(client, f"/runs/{edited.other}", OPERATOR)
    [other_incident] = re.findall(r'href="\.\./incidents/([^"]+)"', other)
    for path in ("/runs", "/incidents"):
        await _get(client, path, OPERATOR)
    await _get(client, "/runs", OPERATOR, outcome="verified")
    assert edited.run in await _get(client, f"/incidents/{incident}", OPERATOR)
    assert edited.other in await _get(client, f"/incidents/{other_incident}", OPERATOR)
    for name in (incident, other_incident):
        await _get(client, f"/incidents/{name}/report.md", OPERATOR)
    # The incident's report names the run's own edited times, as its steps' (they were left
    # out: a reviewer reading the report alone did not learn the run's times were edited).
    markdown = await _get(client, f"/incidents/{incident}/report.md", OPERATOR)
    for field in RUN_TIMES:
        escaped = field.replace("_", "\\_")
        assert f"| {edited.run} | run | {escaped} | {why} |" in markdown, field
    # The whole history's report and incidents name it, and its incident answers.
    whole = {"from": "0001-01-01T00:00:00Z"}
    listed = await _get(client, "/incidents", OPERATOR, **whole)
    report = await _json(client, "/api/v1/report", OPERATOR, **whole)
    named = {i["id"] for i in report["incidents"]}
    if at in ("0100-01-01 00:00:00+00 BC", "-infinity"):  # else after the window's end
        assert incident in named
        assert incident in listed
        [item] = [i for i in report["incidents"] if i["id"] == incident]
        fields = {f["field"]: f["why"] for f in item["unreadable_fields"] if f["of"] == "run"}
        assert fields == dict.fromkeys(RUN_TIMES, why)
    for name in named:
        await _get(client, f"/incidents/{name}", OPERATOR)

    # The run API: each time as stored, and why beside it; another run has no mark.
    body = await _json(client, f"/api/v1/runs/{edited.run}", OPERATOR)
    for field in RUN_TIMES:
        assert (body["run"][field], body["run"][f"{field}_unreadable"]) == (at, why), field
    [step] = body["run"]["steps"]
    for field in STEP_TIMES:
        assert (step[field], step[f"{field}_unreadable"]) == (at, why), field
    assert not [k for k in body["run"] if k.startswith("s_")]
    other = await _json(client, f"/api/v1/runs/{edited.other}", OPERATOR)
    assert not [k for k in other["run"] if k.endswith("_unreadable")]
    listed = await _json(client, "/api/v1/runs", OPERATOR)
    await _json(client, "/api/v1/runs", OPERATOR, since="1h")
    [found] = [r for r in listed["runs"] if r["id"] == edited.run]
    assert (found["created_at"], found["created_at_unreadable"]) == (at, why)

    # The report of the last hour answers, with the group's other runs.
    report = await _json(client, "/api/v1/report", OPERATOR, **{"from": "1h"})
    assert edited.other in {r["id"] for i in report["incidents"] for r in i["runs"]}

    # The approvals API and the link page.
    approvals = await _json(client, "/api/v1/approvals", ALICE)
    [approval] = [a for a in approvals["approvals"] if a["id"] == edited.approval]
    for field in APPROVAL_TIMES:
        assert (approval[field], approval[f"{field}_unreadable"]) == (at, why), field
    one = await _json(client, f"/api/v1/approvals/{edited.approval}", ALICE)
    assert one["approval"]["expires_at_unreadable"] == why
    page = await _get(client, edited.link, {})
    assert f"{at} (cannot be read: edited)" in page
    assert f"expires_at cannot be read: it was edited after it was written ({why})" in page

    # The events API gives the event's times as stored.
    events = await _json(client, "/api/v1/events", OPERATOR)
    assert at in {e["received_at"] for e in events["events"]}
