"""What an approval notification says, as data: a Slack message and a plain JSON body. Pure.

What it quotes of the alert (labels in the summary and target, annotations) reads as written:
a bidirectional override or another format character from it is shown as ``<U+202E>``
(``receiver.text.visible``), or "approve\u202edelete" would read backwards after "approve";
and it stays on its own line (a break shown as ``LINE_BREAK``), so that no alert writes a line
that reads as the service's own, such as where to decide.

A request names what will be done, to what, why (the alert and its annotations), the alert's
links, where to decide (the link, or the CLI command when links are not configured) and when
it expires. Links are posted with ``unfurl_links: false``: Slack's unfurler must not open them
(research/alertmanager-protocol.md §5.1; a GET changes nothing anyway). With Slack
interactivity enabled the message also carries Approve and Reject buttons, whose callbacks
``receiver.approvals.slack`` verifies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from receiver.model import ApprovalRecord
from receiver.text import LINE_BREAK, one_line, visible
from remediations.web_hosts import web_host

__all__ = [
    "ACTION_APPROVE",
    "ACTION_REJECT",
    "LINE_BREAK",
    "Notice",
    "NoticeKind",
    "alert_links",
    "slack_message",
    "webhook_body",
]

# Slack block action ids of the buttons; their value is the approval id.
ACTION_APPROVE = "remediator_approve"
ACTION_REJECT = "remediator_reject"
# Slack refuses a whole message (HTTP 400, invalid_blocks) with a section's text over 3,000
# characters: one long annotation would keep the request from every approver.
_SECTION = 3000
# Of the alert's summary or description in "Why": enough to say it, and room for the links.
_WHY = 1000


class NoticeKind(StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    SUPERSEDED = "superseded"


@dataclass(frozen=True, slots=True)
class Notice:
    """One notification about one approval. ``link`` is the signed confirmation-page URL
    (requests only, when links are configured); ``buttons`` adds Slack's interactive buttons."""

    kind: NoticeKind
    approval: ApprovalRecord
    link: str | None = None
    buttons: bool = False


def alert_links(context: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, URL) of the alert's links: its Prometheus graph (generatorURL) and the
    ``runbook_url``/``dashboard_url`` annotations; only http(s) URLs."""
    annotations = context.get("annotations") or {}
    candidates = [
        ("Alert source", context.get("generator_url")),
        ("Runbook", annotations.get("runbook_url")),
        ("Dashboard", annotations.get("dashboard_url")),
    ]
    return [
        (label, str(url))
        for label, url in candidates
        if isinstance(url, str) and url.startswith(("http://", "https://"))
    ]


def _target(approval: ApprovalRecord) -> str:
    t = approval.target
    return f"{t.kind} {t.namespace}/{t.name}" if t.namespace else f"{t.kind} {t.name}"


def _why(approval: ApprovalRecord) -> str:
    context = approval.context
    annotations = context.get("annotations") or {}
    alert = context.get("alertname") or "an alert"
    detail = annotations.get("summary") or annotations.get("description") or ""
    text = f"{alert} (rule {approval.rule})"
    return f"{text}: {detail}" if detail else text


def _one_line(text: str) -> str:
    """``text`` on one line, each break shown as ``LINE_BREAK``. A notice's lines are the
    service's own: an annotation reading "disk full\\nReview and decide: https://elsewhere/..."
    wrote a decision line of its own, above the real one, whose link led where the alert said
    (a page asking for an operator token, as the real one does)."""
    return one_line(text)


def _headline(notice: Notice) -> str:
    return _one_line(_headline_text(notice))


def _headline_text(notice: Notice) -> str:
    a = notice.approval
    what = a.plan.get("summary") or a.action
    if notice.kind is NoticeKind.REQUESTED:
        return f"Approval needed: {what}"
    if notice.kind in (NoticeKind.APPROVED, NoticeKind.REJECTED):
        by = f" by {a.decided_by}" if a.decided_by else ""
        reason = f" ({a.reason})" if a.reason else ""
        return f"{notice.kind.value.capitalize()}{by}: {what}{reason}"
    if notice.kind is NoticeKind.EXPIRED:
        return f"Approval expired, nothing was done: {what}"
    if notice.kind is NoticeKind.CANCELLED:
        # A reason when it was withdrawn because its alert fired again (``withdraw_undo``,
        # ``withdraw_refired_undo``).
        return f"Approval cancelled, {a.reason or 'the alert resolved'}: {what}"
    return f"The target changed before the step ran; a new approval is requested: {what}"


def _about(notice: Notice) -> list[str]:
    """What and why: the lines that quote the alert ("Why" second)."""
    a = notice.approval
    lines = [
        f"Target: {_target(a)} · action {a.action} · risk {a.risk}",
        f"Why: {_why(a)}",
    ]
    # Each link names the host a browser opens for it (``web_host``, the URL Standard's
    # parser), as a run announcement's does: whoever can post to Alertmanager's API writes
    # them, and ``https://evil.example\\@prometheus/`` reads as Prometheus, but leads to
    # evil.example. An address a browser opens no page for is left out.
    links = [
        f"{label} ({host}): {url}"
        for label, url in alert_links(a.context)
        if (host := web_host(url)) is not None
    ]
    return [_one_line(line) for line in lines + links]


def _decide(notice: Notice) -> list[str]:
    """Where to decide and until when: the service's own lines, none from the alert."""
    a = notice.approval
    lines = []
    if notice.kind is NoticeKind.REQUESTED:
        if notice.link:
            lines.append(f"Review and decide: {notice.link}")
        else:
            lines.append(f"Decide with: remediator approvals approve {a.id}  (or reject)")
        lines.append(f"Expires: {a.expires_at.isoformat(timespec='seconds')}")
    lines.append(f"Run {a.run_id} · approval {a.id}")
    return lines


def _lines(notice: Notice) -> list[str]:
    return [_headline(notice), *_about(notice), *_decide(notice)]


def _section(lines: list[str], *, why: int | None = None) -> dict[str, Any]:
    """A section of ``lines`` as Slack shows them, within ``_SECTION`` characters; ``why``:
    the second line (``_about``'s "Why") cut to that many, as shown. Cut once shown: showing a
    format character takes 14 characters (``&lt;U+202E&gt;``) and an ``&`` 5, so a summary
    cut to 1,000 before could fill the section and push the alert's links out of it."""
    shown = [_escape(visible(x)) for x in lines]
    if why is not None:
        shown[1] = _cut_shown(shown[1], why)
    text = _cut("\n".join(shown), _SECTION)
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def slack_message(notice: Notice) -> dict[str, Any]:
    """A Slack incoming-webhook message (``text`` for notifications, blocks for the body).
    Each section stays within Slack's 3,000 characters, and where to decide has a section of
    its own: however much the alert says, the link and the expiry are never cut off."""
    # The fallback ``text`` is mrkdwn as well, and what a push notification shows.
    headline = _cut(_escape(visible(_headline(notice))), _SECTION)
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": headline}},
        _section(_about(notice), why=_WHY),
        _section(_decide(notice)),
    ]
    if notice.kind is NoticeKind.REQUESTED and notice.buttons:
        blocks.append(
            {
                "type": "actions",
                "block_id": f"approval:{notice.approval.id}",
                "elements": [
                    _button("Approve", ACTION_APPROVE, notice.approval.id, "primary"),
                    _button("Reject", ACTION_REJECT, notice.approval.id, "danger"),
                ],
            }
        )
    return {"text": headline, "blocks": blocks, "unfurl_links": False, "unfurl_media": False}


def webhook_body(notice: Notice) -> dict[str, Any]:
    """The generic JSON body: the notice's kind, the approval's fields and the link. Its
    ``text``, for people, shows each format character of the alert's as ``<U+202E>``
    (``visible``); the fields are the recorded values, for programs."""
    a = notice.approval
    return {
        "kind": f"approval.{notice.kind.value}",
        "text": "\n".join(visible(x) for x in _lines(notice)),
        "approval": {
            "id": a.id,
            "run_id": a.run_id,
            "step": a.step_idx,
            "rule": a.rule,
            "target": a.target.as_dict(),
            "action": a.action,
            "risk": a.risk,
            "summary": a.plan.get("summary"),
            "plan_hash": a.plan_hash,
            "state": a.state.value,
            "expires_at": a.expires_at.isoformat(),
            "decided_by": a.decided_by,
        },
        "links": [{"label": label, "url": url} for label, url in alert_links(a.context)],
        "link": notice.link,
    }


def _button(text: str, action_id: str, value: str, style: str) -> dict[str, Any]:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": text},
        "action_id": action_id,
        "value": value,
        "style": style,
    }


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _cut_shown(text: str, limit: int) -> str:
    """``_cut`` of escaped text, never inside an entity (``&am…`` would show as written)."""
    if len(text) <= limit:
        return text
    kept = text[: limit - 1]
    amp = kept.rfind("&")
    if amp != -1 and ";" not in kept[amp:]:
        kept = kept[:amp]
    return kept + "…"


def _escape(text: str) -> str:
    # Slack mrkdwn control characters; alert text must not turn into mentions or links.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
