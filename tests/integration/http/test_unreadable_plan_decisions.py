"""Approving a step whose approval's plan was edited in the database so that it cannot be read
(an integer of more than 4,300 digits, arrays nested 3,000 deep, another shape than an object).

What would be approved (the change, the preconditions the step is bound to) is unknown: the
API, the link page and the CLI let an engineer approve it all the same, and the worker then
failed the step. Now the approve decision is refused, 409, saying why and what to do (reject
it), recorded ``approval.refused``; the link page offers reject only; reject still works."""

from __future__ import annotations

import re
from html import unescape

import pytest

from receiver.model import ApprovalState, RunOutcome
from tests.integration.http.conftest import MakeEdge
from tests.support.approvals import OPERATORS
from tests.support.unreadable import DEEP, EDITS, edit

ALICE = {"Authorization": f"Bearer {OPERATORS['alice']}"}
REFUSED = "this step cannot be approved: its plan cannot be read: it was edited after it was"


async def _edit(database_url: str, value: str) -> None:
    await edit(database_url, f"UPDATE approvals SET plan = {value}")


@pytest.mark.parametrize("value", EDITS.values(), ids=EDITS.keys())
async def test_the_api_refuses_to_approve_a_plan_that_cannot_be_read_and_rejects_it(
    make_edge: MakeEdge, database_url: str, value: str
) -> None:
    edge = await make_edge()
    run, approval = await edge.env.pending_run()
    await _edit(database_url, value)
    path = f"/api/v1/approvals/{approval.id}"

    response = await edge.client.post(f"{path}/approve", headers=ALICE, json={"reason": "go"})

    assert response.status == 409, await response.text()
    error = (await response.json())["error"]
    assert error.startswith(REFUSED)
    assert error.endswith("reject it: its run then ends rejected")
    still = await edge.env.desk.store.get_approval(approval.id)
    assert still is not None
    assert still.state is ApprovalState.PENDING
    audit = await edge.env.harness.store.audit_entries(run.id)
    [refused] = [e["data"] for e in audit if e["kind"] == "approval.refused"]
    assert refused["decision"] == "approve"
    assert refused["why"].startswith(REFUSED)

    response = await edge.client.post(f"{path}/reject", headers=ALICE, json={"reason": "edited"})
    assert response.status == 200, await response.text()
    assert (await edge.env.harness.only_run()).outcome is RunOutcome.REJECTED
    assert edge.env.peer.pokes == 0


async def test_the_link_page_offers_reject_only_and_refuses_an_approve(
    make_edge: MakeEdge, database_url: str
) -> None:
    edge = await make_edge()
    _run, approval = await edge.env.pending_run()
    await _edit(database_url, DEEP)
    path = edge.link(approval)

    html = unescape(await (await edge.client.get(path)).text())
    assert 'id="reject"' in html
    assert 'id="approve"' not in html
    assert "it cannot be approved: reject it" in html
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found
    form = {"decision": "approve", "operator_token": OPERATORS["alice"], "csrf": found.group(1)}

    response = await edge.client.post(path, data=form, headers={"Origin": edge.base})

    assert response.status == 409
    assert REFUSED in unescape(await response.text())
    response = await edge.client.post(
        path, data=form | {"decision": "reject"}, headers={"Origin": edge.base}
    )
    assert response.status == 200
    assert (await edge.env.harness.only_run()).outcome is RunOutcome.REJECTED
    assert edge.env.peer.pokes == 0
