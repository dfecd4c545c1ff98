"""The approval rules that need no server: plan hashes, allow-lists, states, identities,
notification messages, Slack payloads and signatures."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from pydantic import SecretStr

from receiver.approvals.identity import IdentityResolver, token_table
from receiver.approvals.messages import Notice, NoticeKind, slack_message, webhook_body
from receiver.approvals.plan import bound_plan, plan_hash
from receiver.approvals.policy import ApproverPolicy, Identity, rules_not_loaded
from receiver.approvals.slack import SlackInteractions, SlackPayloadError
from receiver.approvals.state import (
    AlertResolved,
    AlreadyDecided,
    ApprovalExpired,
    Decision,
    why_not_pending,
)
from receiver.model import ApprovalRecord, ApprovalState
from remediations.base import Change
from remediations.targets import Target

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
TARGET = Target("Deployment", "shop", "api")


def plan(**preconditions: str) -> dict[str, object]:
    change = Change(
        "roll back", {"revision": 2}, {"to_revision": 1}, preconditions or {"current_revision": "2"}
    )
    return bound_plan(action="kubernetes.rollout_undo", target=TARGET, params={}, change=change)


def approval(state: ApprovalState = ApprovalState.PENDING, **fields: object) -> ApprovalRecord:
    values: dict[str, object] = {
        "id": "a1",
        "run_id": "r1",
        "step_idx": 0,
        "rule": "rollback",
        "target": TARGET,
        "action": "kubernetes.rollout_undo",
        "risk": "high",
        "plan": plan(),
        "plan_hash": plan_hash(plan()),
        "context": {
            "alertname": "HighErrorRate",
            "annotations": {"summary": "5% of requests fail", "runbook_url": "https://rb/x"},
            "generator_url": "http://prom:9090/graph?g0.expr=x",
        },
        "requested_at": NOW,
        "expires_at": NOW + timedelta(minutes=30),
        "state": state,
    }
    values.update(fields)
    return ApprovalRecord(**values)  # type: ignore[arg-type]


def test_plan_hash_binds_preconditions_and_is_stable() -> None:
    assert plan_hash(plan()) == plan_hash(plan())
    assert plan_hash(plan()) == plan_hash(json.loads(json.dumps(plan())))  # survives jsonb
    assert plan_hash(plan(current_revision="3")) != plan_hash(plan())
    other = bound_plan(
        action="kubernetes.rollout_undo",
        target=Target("Deployment", "shop", "web"),
        params={},
        change=Change("roll back", {"revision": 2}, {"to_revision": 1}, {"current_revision": "2"}),
    )
    assert plan_hash(other) != plan_hash(plan())


def test_allow_lists_rule_wins_over_risk_over_default_and_empty_means_nobody() -> None:
    policy = ApproverPolicy.of(
        by_rule={"rollback": ["alice"]}, by_risk={"high": ["bob"]}, default=["carol"]
    )
    alice, bob, carol = (Identity(n, "operator-token") for n in ("alice", "bob", "carol"))
    assert policy.allows(alice, "rollback", "high")
    assert not policy.allows(bob, "rollback", "high")
    assert policy.allows(bob, "grow", "high")
    assert not policy.allows(carol, "grow", "high")
    assert policy.allows(carol, "grow", "low")
    assert ApproverPolicy().empty
    assert not ApproverPolicy().allows(alice, "rollback", "high")


def test_why_a_decision_cannot_be_taken() -> None:
    assert isinstance(
        why_not_pending(approval(), NOW + timedelta(hours=1), alert_resolved=False),
        ApprovalExpired,
    )
    assert isinstance(why_not_pending(approval(), NOW, alert_resolved=True), AlertResolved)
    decided = approval(ApprovalState.APPROVED, decided_by="alice", decided_at=NOW)
    error = why_not_pending(decided, NOW, alert_resolved=False)
    assert isinstance(error, AlreadyDecided)
    assert "already approved by alice" in error.message
    assert Decision.REJECT.state is ApprovalState.REJECTED


def test_identities_come_from_tokens_or_a_trusted_proxy_only() -> None:
    resolver = IdentityResolver(
        token_table({"alice": SecretStr("tok-a"), "bob": SecretStr("tok-b")}),
        sso_header="X-Forwarded-User",
        trusted_proxies=(ipaddress.ip_network("10.0.0.0/8"),),
    )
    assert resolver.from_headers({"Authorization": "Bearer tok-b"}, "1.2.3.4") == Identity(
        "bob", "operator-token", "bob"
    )
    assert resolver.from_headers({"Authorization": "Bearer nope"}, "10.0.0.1") is None
    sso = {"X-Forwarded-User": "carol"}
    assert resolver.from_headers(sso, "10.1.2.3") == Identity("carol", "sso", "carol")
    assert resolver.from_headers(sso, "192.168.1.1") is None  # anyone can set a header
    assert IdentityResolver(token_table({})).from_sso(sso, "10.1.2.3") is None
    assert resolver.source_ip({"X-Forwarded-For": "7.7.7.7, 10.0.0.2"}, "10.0.0.1") == "7.7.7.7"
    assert resolver.source_ip({"X-Forwarded-For": "7.7.7.7"}, "8.8.8.8") == "8.8.8.8"
    # A client behind the proxy writes a hop of its own; the proxy appends where it came from.
    # Only what the trusted proxies appended is believed (the first hop was the client's word).
    spoofed = {"X-Forwarded-For": "6.6.6.6, 7.7.7.7, 10.0.0.2"}
    assert resolver.source_ip(spoofed, "10.0.0.1") == "7.7.7.7"
    assert resolver.source_ip({"X-Forwarded-For": "not-an-ip, 7.7.7.7"}, "10.0.0.1") == "7.7.7.7"
    # Every hop a trusted proxy: the first of them, the nearest to the client.
    assert resolver.source_ip({"X-Forwarded-For": "10.0.0.3, 10.0.0.2"}, "10.0.0.1") == "10.0.0.3"
    assert resolver.source_ip({"X-Forwarded-For": " , "}, "10.0.0.1") == "10.0.0.1"


def test_a_source_ip_reads_every_forwarded_line_and_a_hop_without_its_port() -> None:
    resolver = IdentityResolver(
        token_table({}), trusted_proxies=(ipaddress.ip_network("10.0.0.0/8"),)
    )
    # HAProxy's `option forwardfor` adds a line after the one the client sent: the headers as
    # aiohttp hands them over, two lines of one name.
    lines = CIMultiDict([("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "7.7.7.7")])
    assert resolver.source_ip(CIMultiDictProxy(lines), "10.0.0.1") == "7.7.7.7"
    lines = CIMultiDict([("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "7.7.7.7, 10.0.0.2")])
    assert resolver.source_ip(CIMultiDictProxy(lines), "10.0.0.1") == "7.7.7.7"
    # A trusted proxy that writes its port is still the trusted proxy, not the client.
    ported = {"X-Forwarded-For": "6.6.6.6, 7.7.7.7:5555, 10.0.0.2:41000"}
    assert resolver.source_ip(ported, "10.0.0.1") == "7.7.7.7"
    assert resolver.source_ip({"X-Forwarded-For": "[2001:db8::7]:443"}, "10.0.0.1") == (
        "2001:db8::7"
    )
    # An IPv4 proxy as a socket on `::` sees it, and a hop a proxy wrote in that form.
    mapped = {"X-Forwarded-For": "6.6.6.6, 7.7.7.7, ::ffff:10.0.0.2"}
    assert resolver.source_ip(mapped, "::ffff:10.0.0.1") == "7.7.7.7"


def test_request_message_says_what_to_what_why_links_where_and_until_when() -> None:
    notice = Notice(NoticeKind.REQUESTED, approval(), link="https://rem/approve/tok", buttons=True)
    message = slack_message(notice)
    text = json.dumps(message)
    for needle in (
        "roll back",
        "Deployment shop/api",
        "HighErrorRate",
        "5% of requests fail",
        "https://rb/x",
        "http://prom:9090/graph?g0.expr=x",
        "https://rem/approve/tok",
        (NOW + timedelta(minutes=30)).isoformat(timespec="seconds"),
    ):
        assert needle in text, needle
    assert message["unfurl_links"] is False
    buttons = message["blocks"][-1]["elements"]
    assert [(b["text"]["text"], b["value"]) for b in buttons] == [
        ("Approve", "a1"),
        ("Reject", "a1"),
    ]
    body = webhook_body(Notice(NoticeKind.EXPIRED, approval(ApprovalState.EXPIRED)))
    assert body["kind"] == "approval.expired"
    assert "Approval expired" in body["text"]
    no_link = slack_message(Notice(NoticeKind.REQUESTED, approval()))
    assert "remediator approvals approve a1" in json.dumps(no_link)


def test_request_message_escapes_alert_values_in_every_mrkdwn_field() -> None:
    evil = "<!channel> <http://evil.example|x> <@U1> &"
    hostile = plan()
    hostile["summary"] = f"roll back {evil}"
    notice = Notice(
        NoticeKind.REJECTED,
        approval(plan=hostile, decided_by=evil, reason=evil, context={"alertname": evil}),
    )

    message = slack_message(notice)

    mrkdwn = [message["text"]] + [
        b["text"]["text"] for b in message["blocks"] if b.get("text", {}).get("type") == "mrkdwn"
    ]
    for text in mrkdwn:
        for live in ("<!", "<http", "<@"):
            assert live not in text, text
    assert message["text"].startswith("Rejected by &lt;!channel&gt;")


def _signed(secret: str, body: bytes, ts: int) -> dict[str, str]:
    base = b"v0:" + str(ts).encode() + b":" + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": f"v0={digest}"}


def _click(action_id: str, user: str = "U1") -> bytes:
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": "al"},
        "team": {"id": "T1"},
        "actions": [{"action_id": action_id, "value": "a1"}],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def test_slack_signature_window_and_payload() -> None:
    now = 1_700_000_000
    slack = SlackInteractions("s3cret", {"U1": "alice"}, now=lambda: float(now))
    body = _click("remediator_approve")
    assert slack.verified(body, _signed("s3cret", body, now))
    assert not slack.verified(body, _signed("wrong", body, now))
    assert not slack.verified(body + b"x", _signed("s3cret", body, now))
    assert not slack.verified(body, _signed("s3cret", body, now - 301))  # stale
    assert not slack.verified(
        body, {"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=1"}
    )
    action = slack.parse(body)
    assert (action.approval_id, action.decision, action.user_id) == ("a1", Decision.APPROVE, "U1")
    assert slack.identity(action) == Identity("alice", "slack", "T1/U1")
    assert slack.identity(slack.parse(_click("remediator_reject", "U9"))) is None
    with pytest.raises(SlackPayloadError):
        slack.parse(b"payload=%7B%7D")
    with pytest.raises(SlackPayloadError):
        slack.parse(_click("something_else"))


def test_token_lookup_compares_digests_so_a_tokens_length_does_not_show(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # hmac.compare_digest returns at once when the lengths differ: comparing the tokens
    # themselves told how long an operator's token is.
    compared: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    lookup = token_table({"alice": SecretStr("tok-a"), "bob": SecretStr("a-much-longer-token")})
    assert [lookup("tok-a"), lookup("x"), lookup("a-much-longer-token")] == ["alice", None, "bob"]
    assert set(compared) == {(32, 32)}


def test_by_rule_keys_that_name_no_loaded_rule_are_reported() -> None:
    assert rules_not_loaded(["restart", "rollback"], ["restart", "rollback", "scale"]) == []
    [problem] = rules_not_loaded(["restart", "rolback"], ["restart", "rollback"])
    assert "by_rule names 'rolback', which no loaded rule is called" in problem
    assert "(loaded: restart, rollback)" in problem
    assert rules_not_loaded(["x"], []) == [
        "approvers file: by_rule names 'x', which no loaded rule is called (loaded: none): its"
        " steps would be decided by the by_risk or default list instead"
    ]
