"""A person's reason that JSON can carry and PostgreSQL cannot store (a lone UTF-16 surrogate,
``"\\ud800"``, valid JSON) is stored as U+FFFD, as intake stores such alert text: the decision
is made and audited, never a 500 that leaves no trace of it (real HTTP, real store)."""

from __future__ import annotations

import json

from receiver.model import ApprovalState
from tests.integration.http.conftest import MakeEdge
from tests.support.approvals import OPERATORS


async def test_a_rejection_whose_reason_holds_a_lone_surrogate_is_decided_and_audited(
    make_edge: MakeEdge,
) -> None:
    edge = await make_edge()
    _run, approval = await edge.env.pending_run()
    bob = {"Authorization": f"Bearer {OPERATORS['bob']}", "Content-Type": "application/json"}
    # Sent as a client writes it: json.dumps escapes the surrogate as \ud800.
    body = json.dumps({"reason": "rollout \ud800 looks bad"})
    response = await edge.client.post(
        f"/api/v1/approvals/{approval.id}/reject", headers=bob, data=body
    )
    assert response.status == 200, await response.text()
    decided = await edge.env.desk.store.get_approval(approval.id)
    assert decided is not None
    assert (decided.state, decided.reason) == (ApprovalState.REJECTED, "rollout \ufffd looks bad")
    store = edge.env.harness.store
    rows = [r async for r in store.export_audit() if r["kind"] == "approval.rejected"]
    assert [(r["data"]["by"], r["data"]["reason"]) for r in rows] == [
        ("bob", "rollout \ufffd looks bad")
    ]
    assert (await store.verify_audit()).ok
