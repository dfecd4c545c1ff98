"""The review on an audit log someone edited to hold data Python cannot read back (an integer
of more than 4,300 digits, arrays nested 3,000 deep: jsonb holds both, no append writes
either), or data of another shape than its kind writes. Every page, the report and the run API
answered 500; now they answer, and the row is marked as edited (``audit verify`` and
``export`` name such a row since 9bbb6e6)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest

from receiver.store import Store
from tests.support.approvals import MakeApprovalEnv
from tests.support.http import OPERATOR, AiohttpClient, Client, default_settings
from tests.support.review import STORM_RULES, play_storm
from tests.support.review_app import review_app

EDITS = {
    "a huge number": "jsonb_set(data, '{x}', '1e5000'::jsonb)",
    "deep nesting": "jsonb_set(data, '{x}', (repeat('[', 3000) || repeat(']', 3000))::jsonb)",
    "not an object": "'[1, 2]'::jsonb",
    "a field of another type": 'data || \'{"idx": "one", "names": 5}\'::jsonb',
}


@dataclass
class Edited:
    client: Client
    run_id: str
    incident_id: str
    rows: list[int]  # the edited rows' ids: the run's step rows and a pause


@pytest.fixture
async def tamper(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection with the audit log's append-only trigger off, as its owner may."""
    conn = await asyncpg.connect(database_url)
    await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
    try:
        yield conn
    finally:
        await conn.close()


async def _edited(
    approval_env: MakeApprovalEnv,
    aiohttp_client: AiohttpClient,
    store: Store,
    tamper: asyncpg.Connection,
    edit: str,
) -> Edited:
    env = await approval_env(rules=STORM_RULES)
    storm = await play_storm(env)
    run_id = storm.runs["api"].id
    reloaded = {"count": 1, "names": ["restart-web"], "digest": "0123456789abcdef"}
    await store.append_audit("rules.reloaded", data=reloaded)
    client = await aiohttp_client(review_app(store, default_settings()))
    response = await client.get("/api/v1/report", headers=OPERATOR, params={"from": "1h"})
    [incident] = (await response.json())["incidents"]
    rows = await tamper.fetch(
        f"""UPDATE audit_log SET data = {edit}
            WHERE (run_id = $1::uuid AND kind = 'step') OR kind = 'rules.reloaded'
            RETURNING id""",
        run_id,
    )
    assert len(rows) >= 2
    return Edited(client, run_id, incident["id"], sorted(r["id"] for r in rows))


@pytest.mark.parametrize("edit", EDITS.values(), ids=EDITS.keys())
async def test_the_review_shows_an_edited_row_it_cannot_read_and_never_fails(
    approval_env: MakeApprovalEnv,
    aiohttp_client: AiohttpClient,
    store: Store,
    tamper: asyncpg.Connection,
    edit: str,
) -> None:
    edited = await _edited(approval_env, aiohttp_client, store, tamper, edit)
    client, run, incident = edited.client, edited.run_id, edited.incident_id
    marked = "cannot be read: it was edited after it was written"
    for path in (f"/runs/{run}", f"/incidents/{incident}"):
        response = await client.get(path, headers=OPERATOR)
        html = await response.text()
        assert response.status == 200, (path, html[:500])
        assert 'data-kind="unreadable"' in html, path
        assert marked in html, path
        assert "remediator audit verify names the first entry changed" in html
    response = await client.get(f"/runs/{run}", headers=OPERATOR)
    html = await response.text()
    step_rows = [i for i in edited.rows if f"Audit entry {i} (step) {marked}" in html]
    assert step_rows == edited.rows[:-1]  # every step row; the last is the reload
    # The incident's page also marks the rules reload, a row of no run.
    response = await client.get(f"/incidents/{incident}", headers=OPERATOR)
    assert "(rules.reloaded) " + marked in await response.text()

    for path in ("/incidents", "/runs"):
        response = await client.get(path, headers=OPERATOR)
        assert response.status == 200, path

    # The report lists the rows of its runs that cannot be read at all; a row that reads, with
    # a field of another type than its kind writes, is marked where that field is shown.
    unreadable = step_rows if "idx" not in edit else []
    response = await client.get(f"/incidents/{incident}/report.md", headers=OPERATOR)
    text = await response.text()
    assert response.status == 200, text[:500]
    assert ("### Audit entries that cannot be read (edited)" in text) == bool(unreadable)
    response = await client.get("/api/v1/report", headers=OPERATOR, params={"from": "1h"})
    assert response.status == 200
    [item] = (await response.json())["incidents"]
    assert [a["id"] for a in item["unreadable_audit"]] == unreadable
    assert all(a["run_id"] == run for a in item["unreadable_audit"])
    reloads = [s for s in item["service"] if s["kind"] == "rules.reloaded"]
    assert [marked in s["title"] for s in reloads] == [True]

    # The run API gives an unreadable row as `audit export` does: its JSON as stored, and why.
    response = await client.get(f"/api/v1/runs/{run}", headers=OPERATOR)
    assert response.status == 200
    audit = {a["id"]: a for a in (await response.json())["audit"]}
    if "jsonb_set" in edit:
        for row in step_rows:
            assert isinstance(audit[row]["data"], str)
            assert "cannot be read" in audit[row]["data_unreadable"]


# Times timestamptz holds and Python cannot (years past 9999, BC, infinity): no append writes
# one, and asyncpg raised OverflowError reading the first two, so the run's page, its API, its
# incident, the incidents' list and the report answered 500.
TIMES = {"year 20000": "20000-01-01 00:00:00+00", "BC": "0100-01-01 00:00:00+00 BC",
         "infinity": "infinity"}  # fmt: skip


@pytest.mark.parametrize("at", TIMES.values(), ids=TIMES.keys())
async def test_the_review_shows_a_row_whose_time_was_edited_out_of_range(
    approval_env: MakeApprovalEnv,
    aiohttp_client: AiohttpClient,
    store: Store,
    tamper: asyncpg.Connection,
    at: str,
) -> None:
    env = await approval_env(rules=STORM_RULES)
    storm = await play_storm(env)
    run = storm.runs["api"].id
    client = await aiohttp_client(review_app(store, default_settings()))
    response = await client.get("/api/v1/report", headers=OPERATOR, params={"from": "1h"})
    [incident] = (await response.json())["incidents"]
    rows = await tamper.fetch(
        """UPDATE audit_log SET at = $2::text::timestamptz WHERE run_id = $1::uuid AND kind = 'step'
           RETURNING id""",
        run,
        at,
    )
    edited = sorted(r["id"] for r in rows)
    assert edited

    marked = "cannot be read: it was edited after it was written"
    for path in (f"/runs/{run}", f"/incidents/{incident['id']}", "/incidents", "/runs"):
        response = await client.get(path, headers=OPERATOR)
        assert response.status == 200, (path, (await response.text())[:500])
    response = await client.get(f"/runs/{run}", headers=OPERATOR)
    html = await response.text()
    assert [i for i in edited if f"Audit entry {i} (step) {marked}" in html] == edited

    response = await client.get("/api/v1/report", headers=OPERATOR, params={"from": "1h"})
    assert response.status == 200
    [item] = (await response.json())["incidents"]
    assert [a["id"] for a in item["unreadable_audit"]] == edited
    assert all("is outside the years 1 to 9999" in a["why"] for a in item["unreadable_audit"])
    response = await client.get(f"/incidents/{incident['id']}/report.md", headers=OPERATOR)
    assert response.status == 200
    assert "### Audit entries that cannot be read (edited)" in await response.text()

    # The run API gives the time as stored, and why it cannot be read.
    response = await client.get(f"/api/v1/runs/{run}", headers=OPERATOR)
    assert response.status == 200
    audit = {a["id"]: a for a in (await response.json())["audit"]}
    stored = await tamper.fetchval("SELECT at::text FROM audit_log WHERE id = $1", edited[0])
    assert audit[edited[0]]["at"] == stored
    assert "is outside the years 1 to 9999" in audit[edited[0]]["at_unreadable"]
    assert all("at_unreadable" not in a for i, a in audit.items() if i not in edited)
