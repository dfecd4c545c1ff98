"""Slack's interaction callback over real HTTP, on the real store: bad and stale signatures
are refused, a click decides as the Slack user's mapped operator, and a signed click from
another workspace is refused."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from urllib.parse import urlencode

from receiver.model import ApprovalState
from tests.integration.http.conftest import SLACK_SECRET, MakeEdge


def _slack_click(
    approval_id: str, user: str, action: str = "remediator_approve", team: str = "T0TEAM"
) -> bytes:
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower()},
        "team": {"id": team},
        "actions": [{"action_id": action, "value": approval_id}],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def _signed(body: bytes, ts: int, secret: str = SLACK_SECRET) -> dict[str, str]:
    base = f"v0:{ts}:".encode() + body
    signature = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }


async def test_slack_refuses_bad_and_stale_signatures_and_decides_as_the_mapped_user(
    make_edge: MakeEdge,
) -> None:
    now = int(time.time())
    edge = await make_edge(slack_now=float(now))
    _, approval = await edge.env.pending_run()
    body = _slack_click(approval.id, "U0BOB")
    path = "/hooks/slack/interactions"

    assert (await edge.client.post(path, data=body, headers=_signed(body, now, "x"))).status == 401
    stale = _signed(body, now - 301)
    assert (await edge.client.post(path, data=body, headers=stale)).status == 401
    tampered = _slack_click(approval.id, "U0BOB", "remediator_reject")
    assert (await edge.client.post(path, data=tampered, headers=_signed(body, now))).status == 401
    unmapped = _slack_click(approval.id, "U0EVE")
    response = await edge.client.post(path, data=unmapped, headers=_signed(unmapped, now))
    assert response.status == 403
    assert (await edge.env.desk.store.get_approval(approval.id)).state is ApprovalState.PENDING  # type: ignore[union-attr]

    response = await edge.client.post(path, data=body, headers=_signed(body, now - 60))
    assert response.status == 200, await response.text()
    decided = await edge.env.desk.store.get_approval(approval.id)
    assert decided is not None
    assert (decided.state, decided.decided_by, decided.channel) == (
        ApprovalState.APPROVED,
        "bob",
        "slack",
    )


async def test_slack_refuses_a_signed_click_from_another_workspace(make_edge: MakeEdge) -> None:
    # The app's one signing secret signs for every workspace it is installed in: the signature
    # alone let a mapped user id clicked in another workspace decide.
    now = int(time.time())
    edge = await make_edge(slack_now=float(now), slack_teams=("T0TEAM",))
    _, approval = await edge.env.pending_run()
    path = "/hooks/slack/interactions"
    before = await edge.snapshot()

    foreign = _slack_click(approval.id, "U0BOB", team="T0OTHER")
    response = await edge.client.post(path, data=foreign, headers=_signed(foreign, now))
    assert response.status == 403
    assert (await response.json()) == {"error": "Slack team T0OTHER is not one approvals come from"}
    assert await edge.snapshot() == before  # decided nothing, recorded nothing

    body = _slack_click(approval.id, "U0BOB")
    response = await edge.client.post(path, data=body, headers=_signed(body, now))
    assert response.status == 200, await response.text()
    decided = await edge.env.desk.store.get_approval(approval.id)
    assert decided is not None
    assert (decided.state, decided.decided_by) == (ApprovalState.APPROVED, "bob")
