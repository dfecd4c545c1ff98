"""What a notification says, and how it is rendered for Slack and for a generic webhook. Pure.

One ``Message`` serves every event: a run started, was refused, waits for approval, finished,
failed verification, its undo (on_resolved steps) did not happen, or a rule's ``notify`` step.
The Slack rendering follows the incoming webhook format (``text`` as the fallback, Block Kit
``blocks``); every value that came from an alert or a system is escaped for mrkdwn (``&``,
``<``, ``>``: Slack's control characters) in every mrkdwn field, the fallback ``text``
included (Slack parses it as mrkdwn and shows it in push notifications), so a label value can
never become a link or an ``@channel`` mention. Slack's limits (150 characters in a header,
3000 in a section or a context's text, 2000 in a field, 10 fields) are applied by cutting,
never by failing; a link that does not fit is left out rather than cut.

What a person reads reads as written: in every Slack field and in a webhook's ``title`` and
``text``, a bidirectional override or isolate (U+202A-U+202E, U+2066-U+2069), another format
character or a control character from a label or an annotation is shown as ``<U+202E>``
(``visible``), or "restart\u202eweb" would read in another order than it is written (in a
rule author's mrkdwn, ``&lt;U+202E&gt;``: a bare ``>`` would end the author's link). And each
value stays on its line: a line break in the title, in a Slack field, a step's line or a link's
label is shown as ``LINE_BREAK`` (``one_line``), so that no label or annotation writes a line
that reads as the service's own; a message's ``text`` keeps the breaks its maker wrote, who
makes what it quotes of the alert one line (``receiver.pipeline.announce``, the ``notify``
action). A webhook's structured fields (``alert``, ``target``, ``steps``, ``rule``,
``links``) are for programs: they keep the values as recorded.

Mattermost and Rocket.Chat accept this payload, but they render ``text`` as Markdown, where
``@channel``, ``@here`` and ``[label](url)`` need none of ``&<>``: the escaping does not make
alert values safe there. The channel kind cannot tell them from Slack, so nothing claims it
does; point them at a ``webhook`` channel and a formatter of your own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from remediations.base import AlertFacts
from remediations.visible_text import address, one_line, visible
from remediations.web_hosts import web_host

__all__ = [
    "ChannelKind",
    "Event",
    "Message",
    "StepSummary",
    "mrkdwn_escape",
    "mrkdwn_value",
    "slack_payload",
    "web_host",
    "webhook_payload",
]

WEBHOOK_VERSION = "1"
# The most characters Slack takes in one text object (a section's text, a context element).
_TEXT = 3000


class ChannelKind(StrEnum):
    """How a channel wants its messages."""

    SLACK = "slack"  # Slack incoming webhook (escaping is Slack's; see the module docstring)
    WEBHOOK = "webhook"  # any URL taking the generic JSON document (``webhook_payload``)


class Event(StrEnum):
    """Why a message is sent."""

    RUN_STARTED = "run_started"
    RUN_REFUSED = "run_refused"
    AWAITING_APPROVAL = "awaiting_approval"
    RUN_FINISHED = "run_finished"
    VERIFICATION_FAILED = "verification_failed"
    UNDO_FAILED = "undo_failed"  # a run's on_resolved steps stopped: its change may remain
    REFUSED_DIGEST = "refused_digest"  # the refusals of a rule folded into one window
    STEP = "step"  # a rule's notify step


@dataclass(frozen=True, slots=True)
class StepSummary:
    """One step as a message reports it: what ran, how it ended, and what it changed."""

    action: str
    outcome: str
    message: str = ""
    before: Mapping[str, Any] = field(default_factory=dict)
    after: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "outcome": self.outcome,
            "message": self.message,
            "before": dict(self.before),
            "after": dict(self.after),
        }


@dataclass(frozen=True, slots=True)
class Message:
    """A notification. ``title`` is plain text; so is ``text`` unless ``text_is_mrkdwn``, which
    says it is a rule author's mrkdwn whose values were escaped where it was rendered (then it
    is sent to Slack as it is). ``target`` is ``Target.as_dict()`` plus ``key``; ``links`` maps a
    label (``run``, ``approve``, ``source``) to a URL."""

    event: Event
    title: str
    text: str = ""
    text_is_mrkdwn: bool = False
    rule: str = ""
    run_id: str = ""
    outcome: str = ""
    dry_run: bool = False
    target: Mapping[str, str] = field(default_factory=dict)
    alert: AlertFacts | None = None
    steps: Sequence[StepSummary] = ()
    links: Mapping[str, str] = field(default_factory=dict)


def mrkdwn_escape(text: str) -> str:
    """Escape Slack's three control characters; everything else is shown as written."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _fitting(links: Sequence[str], separator: str, limit: int) -> str:
    """``links`` joined, in order, leaving out each that would take the text past ``limit``:
    Slack refuses the whole message for one text object over 3,000 characters (an alert's
    generatorURL can be that long), and a link cut short leads nowhere."""
    shown: list[str] = []
    for link in links:
        if len(separator.join([*shown, link])) <= limit:
            shown.append(link)
    return separator.join(shown)


# What a `|` in a value becomes in an author's mrkdwn: U+2223 DIVIDES, which reads as a bar.
VALUE_BAR = "\u2223"


def mrkdwn_value(text: str) -> str:
    """A value printed into a rule author's mrkdwn (a ``notify`` step's message to Slack):
    escaped (``mrkdwn_escape``), and each ``|`` written as ``VALUE_BAR``. In a link the author
    wrote, ``<{{ annotations.runbook_url }}|Runbook>``, Slack ends the URL at the first ``|``:
    a runbook_url of ``https://evil.example|Trusted docs`` linked to evil.example, shown as
    "Trusted docs|Runbook"; in ``<{{ run.url }}|{{ labels.team }}>`` a bar set where the
    shown text starts. Slack has no escape for ``|`` (only ``&amp;``, ``&lt;``, ``&gt;``),
    so the value's bar becomes one that is no separator: shown nearly alike, never a link's
    edge. A URL holding a ``|`` is then no working link: it cannot point elsewhere either."""
    return mrkdwn_escape(text).replace("|", VALUE_BAR)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _link(url: str, label: str) -> str:
    # Inside <url|label> a "|" or ">" would end the link early; the rest is escaped as text.
    # A character that shows nothing is percent-encoded, as a browser sends it: the same page,
    # and nothing that turns the text around it where Slack shows the address.
    safe_url = mrkdwn_escape(address(url)).replace("|", "%7C")
    return f"<{safe_url}|{_value(label)}>"


def _web(url: str | None) -> bool:
    """Only http(s) links are shown, as in approval requests (``alert_links``): another scheme
    (``slack://``, ``file:``, ``javascript:``) is not a page to look at."""
    return bool(url) and str(url).lower().startswith(("http://", "https://"))


def _change(step: StepSummary) -> str:
    if not step.before and not step.after:
        return ""
    before = json.dumps(dict(step.before), sort_keys=True, default=str)
    after = json.dumps(dict(step.after), sort_keys=True, default=str)
    return f" ({_cut(before, 200)} → {_cut(after, 200)})"


def _shown(text: str) -> str:
    """``text`` made visible (``visible``) and escaped for mrkdwn."""
    return mrkdwn_escape(visible(text))


def _value(text: str) -> str:
    """A value on its line (``one_line``), made visible and escaped for mrkdwn."""
    return _shown(one_line(text))


def slack_payload(message: Message) -> dict[str, Any]:
    """The JSON body for a Slack incoming webhook: ``text`` (the mrkdwn fallback that push
    notifications show) and ``blocks``; every alert-derived value in a mrkdwn field is escaped,
    and every text shows its format characters as ``<U+202E>`` (``visible``). The title, a
    field's value, a step's line and a link's label stay on one line (``one_line``)."""
    esc = _value
    body = visible(message.text, mrkdwn=True) if message.text_is_mrkdwn else _shown(message.text)
    title = visible(one_line(message.title))
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(title, 150)}}
    ]
    if body:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(body, _TEXT)}})
    fields: list[str] = []
    if message.alert is not None and message.alert.labels.get("alertname"):
        status = f" ({esc(message.alert.status)})" if message.alert.status else ""
        fields.append(f"*Alert*\n{esc(message.alert.labels['alertname'])}{status}")
    if message.target:
        fields.append(
            f"*Target*\n{esc(message.target.get('key') or message.target.get('name', ''))}"
        )
    if message.rule:
        fields.append(f"*Rule*\n{esc(message.rule)}")
    if message.outcome:
        dry = " (dry run)" if message.dry_run else ""
        fields.append(f"*Outcome*\n{esc(message.outcome)}{dry}")
    if fields:
        blocks.append(
            {
                "type": "section",
                "fields": [{"type": "mrkdwn", "text": _cut(f, 2000)} for f in fields[:10]],
            }
        )
    if message.steps:
        lines = [
            f"• `{esc(s.action)}` {esc(s.outcome)}"
            + (f": {esc(_cut(s.message, 300))}" if s.message else "")
            + esc(_change(s))
            for s in message.steps
        ]
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": _cut("\n".join(lines), _TEXT)}}
        )
    links = [_link(url, label) for label, url in message.links.items() if _web(url)]
    if message.alert is not None and _web(message.alert.generator_url):
        # Whoever can post to Alertmanager's API writes the generatorURL: the link names the
        # host it leads to, so a "source" link cannot pass for Prometheus.
        host = web_host(message.alert.generator_url)
        if host is not None:  # else no page a browser would open: no link
            links.append(_link(message.alert.generator_url, f"source ({host})"))
    if shown := _fitting(links, " · ", _TEXT):
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": shown}]})
    # The fallback is mrkdwn too: the title is escaped here, unlike in the plain_text header.
    fallback = esc(title) + (f": {body}" if body else "")
    return {"text": _cut(fallback, _TEXT), "blocks": blocks}


def webhook_payload(message: Message) -> dict[str, Any]:
    """A generic JSON document with every field, unescaped (``version`` says its shape). Its
    ``title`` and ``text``, for people, show each format character as ``<U+202E>``
    (``visible``), and the title stays one line (``one_line``); the other fields are the
    recorded values, for programs."""
    alert = message.alert
    return {
        "version": WEBHOOK_VERSION,
        "event": str(message.event),
        "title": visible(one_line(message.title)),
        "text": visible(message.text),
        "rule": message.rule,
        "run_id": message.run_id,
        "outcome": message.outcome,
        "dry_run": message.dry_run,
        "target": dict(message.target),
        "alert": None
        if alert is None
        else {
            "labels": dict(alert.labels),
            "annotations": dict(alert.annotations),
            "status": alert.status,
            "starts_at": alert.starts_at,
            "generator_url": alert.generator_url,
        },
        "steps": [s.as_dict() for s in message.steps],
        "links": dict(message.links),
    }
