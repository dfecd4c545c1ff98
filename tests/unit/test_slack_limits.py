"""Slack's limits on a message, however long the alert's values: Slack refuses the whole message
(HTTP 400, invalid_blocks) when one text object is over its limit (a section's text and a
context element's text 3,000 characters, a header 150, a field 2,000), so one long annotation
or generatorURL kept an approval request, or an announcement, from the channel. Pure: the
payloads as built (receiver/approvals/messages.py, remediations/notify/message.py)."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from receiver.approvals.messages import Notice, NoticeKind, slack_message
from receiver.model import ApprovalRecord, ApprovalState
from remediations.base import AlertFacts
from remediations.notify.message import Event, Message, slack_payload
from remediations.targets import Target

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
TARGET = Target("Deployment", "shop", "api")
LONG = "the pool is exhausted because " * 400  # 12,000 characters
LONG_URL = "http://prometheus:9090/graph?g0.expr=" + "sum(rate(x[5m]))+" * 300
LINK = "https://remediator.example/approve/a1?token=signed"
# Slack's limit of each kind of text object.
LIMITS = {"header": 150, "field": 2000, "text": 3000}


def texts(payload: dict[str, Any]) -> list[tuple[str, str]]:
    """(kind, text) of every text object in ``payload``'s blocks, and of its ``text``."""
    found = [("text", payload["text"])]
    for block in payload["blocks"]:
        if block["type"] == "header":
            found.append(("header", block["text"]["text"]))
        if "text" in block:
            found.append(("text", block["text"]["text"]))
        found += [("field", f["text"]) for f in block.get("fields", [])]
        found += [("text", e["text"]) for e in block.get("elements", []) if "text" in e]
    return [(kind, text) for kind, text in found if isinstance(text, str)]


def assert_within_limits(payload: dict[str, Any]) -> None:
    for kind, text in texts(payload):
        if kind == "text" and text is payload["text"]:
            continue  # the fallback: Slack cuts it at 40,000, refusing nothing
        assert len(text) <= LIMITS[kind], (kind, len(text))


def approval() -> ApprovalRecord:
    return ApprovalRecord(
        id="a1",
        run_id="r1",
        step_idx=0,
        rule="rollback",
        target=TARGET,
        action="kubernetes.rollout_undo",
        risk="high",
        plan={"summary": "roll back deployment shop/api to revision 1"},
        plan_hash="h",
        context={
            "alertname": "HighErrorRate",
            "annotations": {"description": LONG, "runbook_url": "https://rb/x"},
            "generator_url": LONG_URL,
        },
        requested_at=NOW,
        expires_at=NOW + timedelta(minutes=30),
        state=ApprovalState.PENDING,
    )


def test_an_approval_request_quoting_a_long_description_fits_and_keeps_its_link() -> None:
    message = slack_message(Notice(NoticeKind.REQUESTED, approval(), link=LINK, buttons=True))

    assert_within_limits(message)
    text = json.dumps(message)
    assert "the pool is exhausted" in text  # the description is quoted, cut
    assert f"Review and decide: {LINK}" in text  # where to decide is never what is cut
    assert (NOW + timedelta(minutes=30)).isoformat(timespec="seconds") in text
    assert message["blocks"][-1]["type"] == "actions"


def test_an_announcement_with_a_long_generator_url_fits_and_keeps_the_run_link() -> None:
    message = Message(
        event=Event.RUN_FINISHED,
        title="Remediation succeeded: " + LONG,
        text=LONG,
        rule="rollback",
        run_id="r1",
        outcome="succeeded",
        target={**TARGET.as_dict(), "key": TARGET.key},
        alert=AlertFacts(labels={"alertname": LONG}, status="firing", generator_url=LONG_URL),
        links={"run": "https://remediator.example/api/v1/runs/r1"},
    )

    payload = slack_payload(message)

    assert_within_limits(payload)
    (context,) = [b for b in payload["blocks"] if b["type"] == "context"]
    assert context["elements"][0]["text"] == "<https://remediator.example/api/v1/runs/r1|run>"


def test_a_summary_that_grows_when_shown_does_not_push_the_alert_s_links_out() -> None:
    # "Why" was cut to 1,000 characters before escaping: 1,000 "&" shown as "&amp;", or
    # format characters shown as "&lt;U+202E&gt;", filled the section's 3,000 and the cut
    # took the runbook and the alert's source with it.
    for summary in ("&" * 1000, "\u202e" * 1000, "<" * 999 + "&"):
        record = approval()
        context = {
            **record.context,
            "annotations": {"summary": summary, "runbook_url": "https://rb/x"},
            "generator_url": LONG_URL[:200],
        }
        record = dataclasses.replace(record, context=context)
        message = slack_message(Notice(NoticeKind.REQUESTED, record, link=LINK))
        assert_within_limits(message)
        about = message["blocks"][1]["text"]["text"]
        assert "Runbook (rb): https://rb/x" in about, summary[:1]
        assert f"Alert source (prometheus:9090): {LONG_URL[:200]}" in about
        why = about.split("\n")[1]
        assert len(why) <= 1000
        # Never cut inside an entity: what is left of the last one reads as written.
        assert why.endswith("…")
        assert re.fullmatch(r"Why: .*(&amp;|&lt;|&gt;|[^&;])…", why)
