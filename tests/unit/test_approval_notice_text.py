"""What an approval's notices and page quote of the alert reads as it is written: a
bidirectional override or another format character from a label or an annotation is shown as
``<U+202E>``, in the Slack message, the webhook's text and the confirmation page. Before, they
went out as they were: "approve\\u202edelete" read "eteled" after "approve". Pure."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pytest

from receiver.approvals.messages import (
    LINE_BREAK,
    Notice,
    NoticeKind,
    slack_message,
    webhook_body,
)
from receiver.approvals.page import PageRenderer, view_of
from receiver.model import ApprovalRecord, ApprovalState
from receiver.text import visible
from remediations.targets import Target

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
# Every bidi embedding, override and isolate, and other format characters.
HIDDEN = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200b\u2060\ufeff\u00ad\x1b"
SHOWN = (
    "<U+202A><U+202B><U+202C><U+202D><U+202E><U+2066><U+2067><U+2068><U+2069><U+200B>"
    "<U+2060><U+FEFF><U+00AD><U+001B>"
)


def escaped(text: str) -> str:
    """``text`` as Slack's mrkdwn and HTML write ``<`` and ``>``."""
    return text.replace("<", "&lt;").replace(">", "&gt;")


def approval(
    reason: str | None = None, state: ApprovalState = ApprovalState.PENDING
) -> ApprovalRecord:
    return ApprovalRecord(
        id="a1",
        run_id="r1",
        step_idx=0,
        rule="restart",
        target=Target("Deployment", "shop", "api"),
        action="kubernetes.rollout_restart",
        risk="high",
        plan={"summary": f"restart {HIDDEN}api", "before": {"note": f"x{HIDDEN}"}},
        plan_hash="h",
        context={
            "alertname": f"Down{HIDDEN}",
            "labels": {"team": f"ops{HIDDEN}"},
            "annotations": {"summary": f"approve\u202edelete {HIDDEN}"},
        },
        requested_at=NOW,
        expires_at=NOW + timedelta(minutes=30),
        state=state,
        decided_by="alice" if reason else None,
        reason=reason,
    )


def test_visible_shows_each_format_and_control_character() -> None:
    assert visible(f"a{HIDDEN}b") == f"a{SHOWN}b"
    # Kept: newlines and tabs (a multi-line description), and the joiners Persian words and
    # emoji sequences need, which reorder nothing.
    assert visible(
        "line\n\tnext \u0645\u06cc\u200c\u0634\u0648\u062f \U0001f468\u200d\U0001f469"
    ) == ("line\n\tnext \u0645\u06cc\u200c\u0634\u0648\u062f \U0001f468\u200d\U0001f469")


@pytest.mark.parametrize("kind", list(NoticeKind))
def test_a_slack_notice_shows_the_alert_s_format_characters(kind: NoticeKind) -> None:
    message = slack_message(Notice(kind, approval(reason=f"ok{HIDDEN}")))
    text = json.dumps(message, ensure_ascii=False)
    assert not any(c in text for c in HIDDEN)
    # Slack's escaping comes after: the message shows <U+202E>.
    assert f"restart {escaped(SHOWN)}api" in text
    if kind is NoticeKind.REQUESTED:
        assert "approve&lt;U+202E&gt;delete" in text


def test_a_webhook_notice_s_text_shows_them_and_its_fields_keep_the_record() -> None:
    body = webhook_body(Notice(NoticeKind.REQUESTED, approval()))
    assert not any(c in body["text"] for c in HIDDEN)
    assert "Why: Down" + SHOWN + " (rule restart): approve<U+202E>delete " + SHOWN in body["text"]
    assert body["approval"]["summary"] == f"restart {HIDDEN}api"  # for programs: as recorded


def test_the_approval_page_shows_them() -> None:
    view = view_of(approval(reason=f"no{HIDDEN}", state=ApprovalState.REJECTED), can_decide=False)
    page = PageRenderer().render("approval", nonce="n", v=view, max_reason=1000)
    assert not any(c in page for c in HIDDEN)
    assert f"restart {escaped(SHOWN)}api" in page
    assert "approve&lt;U+202E&gt;delete" in page
    assert view.labels == [("team", f"ops{SHOWN}")]


def test_a_link_on_the_approval_page_opens_the_address_the_alert_gave() -> None:
    # The runbook's address holds a zero-width space. Shown as <U+200B>, it was the link's
    # target too: the browser opened .../%3CU+200B%3Edisk, a page the alert never linked.
    record = approval()
    context = {**record.context, "annotations": {"runbook_url": "https://rb.example/\u200bdisk"}}
    view = view_of(dataclasses.replace(record, context=context), can_decide=False)
    page = PageRenderer().render("approval", nonce="n", v=view, max_reason=1000)
    assert 'href="https://rb.example/%E2%80%8Bdisk"' in page  # as a browser sends it
    assert "<small>https://rb.example/&lt;U+200B&gt;disk</small>" in page
    assert "\u200b" not in page


# Every line break str.splitlines() knows, each of which a chat or a mail client may show as one.
BREAKS = ["\n", "\r\n", "\r", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
FORGED = "Review and decide: https://elsewhere.example/approve/k1..x"


@pytest.mark.parametrize(
    "brk", BREAKS, ids=[" ".join(f"U+{ord(c):04X}" for c in b) for b in BREAKS]
)
def test_an_alert_cannot_write_a_line_of_the_notice(brk: str) -> None:
    # The summary said "disk full", then, on a line of its own, where to decide: the webhook's
    # text showed that line above the real one, its link leading where the alert wanted (a
    # page asking for an operator token, as the real page does), then "Expires: never".
    record = approval()
    summary = f"disk full{brk}{FORGED}{brk}Expires: never"
    context = {
        **record.context,
        "alertname": f"Disk{brk}Target: none",
        "annotations": {"summary": summary, "runbook_url": f"https://rb.example/{brk}x"},
    }
    plan = {**record.plan, "summary": f"restart api{brk}Approved by alice"}
    notice = Notice(NoticeKind.REQUESTED, dataclasses.replace(record, context=context, plan=plan))
    notice = dataclasses.replace(notice, link="https://remediator.example/approve/k1..real")
    text = webhook_body(notice)["text"]
    lines = text.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "Approval needed",
        "Target",
        "Why",
        "Runbook (rb.example)",
        "Review and decide",
        "Expires",
        "Run r1 · approval a1",
    ], text
    assert f"Why: Disk{LINE_BREAK}Target: none (rule restart): disk full{LINE_BREAK}" in text
    assert lines[4] == "Review and decide: https://remediator.example/approve/k1..real"
    blocks = slack_message(notice)["blocks"]
    assert len(blocks[0]["text"]["text"].splitlines()) == 1
    about = blocks[1]["text"]["text"].splitlines()
    expected = ["Target", "Why", "Runbook (rb.example)"]
    assert [line.split(":")[0] for line in about] == expected, about
    assert blocks[2]["text"]["text"].startswith("Review and decide: https://remediator.example/")


def test_each_link_of_a_notice_names_the_host_a_browser_opens() -> None:
    # "https://evil.example\\@prometheus/" reads as Prometheus; a browser opens evil.example.
    record = dataclasses.replace(
        approval(),
        context={
            "alertname": "Down",
            "generator_url": "https://evil.example\\@prometheus:9090/graph",
            "annotations": {"runbook_url": "https://[::1/x", "dashboard_url": "https://grafana/d"},
        },
    )
    for text in (
        json.dumps(slack_message(Notice(NoticeKind.REQUESTED, record))),
        webhook_body(Notice(NoticeKind.REQUESTED, record))["text"],
    ):
        assert "Alert source (evil.example): https://evil.example" in text
        assert "Dashboard (grafana): https://grafana/d" in text
        assert "Runbook" not in text  # no page a browser would open: not shown as a link
