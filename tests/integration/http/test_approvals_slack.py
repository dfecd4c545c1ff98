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
from tests.support.rawhttp import exchange, status_of


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
    # The unmapped user's click is in the audit log under their Slack id: it left no trace.
    audit = await edge.env.harness.store.audit_entries(approval.run_id)
    refused = [e["data"] for e in audit if e["kind"] == "approval.refused"]
    assert [(r["by"], r["decision"], r["why"]) for r in refused] == [
        ("Slack user T0TEAM/U0EVE", "approve", "Slack user U0EVE is not mapped to an approver")
    ]

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
    # Decided nothing; the click Slack vouches for is recorded beside the approval, once.
    after = await edge.snapshot()
    assert after[:4] == before[:4]
    added = [json.loads(r["data"]) for r in after[4] if r not in before[4]]
    assert [(r["approval_id"], r["by"], r["via"], r["channel"], r["why"]) for r in added] == [
        (
            approval.id,
            "Slack user T0OTHER/U0BOB",
            "slack",
            "slack",
            "Slack team T0OTHER is not one approvals come from",
        )
    ]

    body = _slack_click(approval.id, "U0BOB")
    response = await edge.client.post(path, data=body, headers=_signed(body, now))
    assert response.status == 200, await response.text()
    decided = await edge.env.desk.store.get_approval(approval.id)
    assert decided is not None
    assert (decided.state, decided.decided_by) == (ApprovalState.APPROVED, "bob")


async def test_a_signature_or_timestamp_that_is_not_ascii_is_401_never_500(
    make_edge: MakeEdge,
) -> None:
    # The callback is open to anyone: hmac.compare_digest raises TypeError on a str that is not
    # ASCII (a 500), where any other wrong signature is a 401.
    now = int(time.time())
    edge = await make_edge(slack_now=float(now))
    _, approval = await edge.env.pending_run()
    body = _slack_click(approval.id, "U0BOB")
    port = edge.client.server.port
    assert port is not None
    good = _signed(body, now)
    before = await edge.snapshot()
    for timestamp, signature in (
        (str(now).encode(), b"v0=\xc3\xa9"),  # UTF-8, not ASCII
        (str(now).encode(), b"v0=\xff"),  # not UTF-8
        (str(now).encode(), good["X-Slack-Signature"].encode() + b"\xc2\xa0"),
        (str(now).encode() + b"\xff", good["X-Slack-Signature"].encode()),
        ("".join(chr(0x660 + int(d)) for d in str(now)).encode(), b"v0=\xc3\xa9"),
    ):
        request = (
            f"POST /hooks/slack/interactions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
        ).encode()
        request += b"X-Slack-Request-Timestamp: " + timestamp + b"\r\n"
        request += b"X-Slack-Signature: " + signature + b"\r\n\r\n" + body
        assert status_of(await exchange(port, request)) == 401, (timestamp, signature)
    assert await edge.snapshot() == before
