"""Every refused decision is in the audit log, with who tried, how, from where and why not:
a person off the step's allow-list, and a second decision of one already used (a replayed
click, the loser of a race). The log shows everything refused, not only what was done."""

from __future__ import annotations

import pytest

from receiver.approvals.policy import Identity
from receiver.approvals.state import AlreadyDecided, Channel, Decision, NotAllowed, Origin
from tests.support.approvals import MakeApprovalEnv

ALICE = Identity("alice", "operator-token", "alice")
BOB = Identity("bob", "slack", "T1/U2")
CAROL = Identity("carol", "sso", "carol")
WEB = Origin(Channel.WEB, "10.1.1.9", "browser", "jti-1")
SLACK = Origin(Channel.SLACK, "10.1.1.8", "Slackbot")


async def test_refused_decisions_are_audited_with_who_and_why(
    approval_env: MakeApprovalEnv,
) -> None:
    env = await approval_env()
    run, approval = await env.pending_run()
    with pytest.raises(NotAllowed):
        await env.desk.decide(approval.id, Decision.REJECT, CAROL, WEB, reason="x")
    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, WEB)
    with pytest.raises(AlreadyDecided):
        await env.desk.decide(approval.id, Decision.APPROVE, BOB, SLACK)

    audit = await env.harness.store.audit_entries(run.id)
    refused = [e["data"] for e in audit if e["kind"] == "approval.refused"]
    assert len(refused) == 2
    off_list, replay = refused
    assert off_list["approval_id"] == approval.id
    assert {k: off_list[k] for k in ("by", "via", "decision", "channel", "source_ip")} == {
        "by": "carol",
        "via": "sso",
        "decision": "reject",
        "channel": "web",
        "source_ip": "10.1.1.9",
    }
    assert off_list["token_id"] == "jti-1"
    assert "carol may not decide steps of rule poke" in off_list["why"]
    assert (replay["by"], replay["via"], replay["channel"]) == ("bob", "slack", "slack")
    assert "already approved by alice" in replay["why"]
    assert (await env.harness.store.verify_audit()).ok
