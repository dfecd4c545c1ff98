"""notify and the Notifier against a real local HTTP server standing in for Slack and for a
generic webhook receiver: payload shapes, mrkdwn escaping, failures that never fail a run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from remediations.base import ActionContext, AlertFacts, Clients, Outcome
from remediations.http.post import HttpPolicy
from remediations.notify.action import Notify, NotifyParams
from remediations.notify.message import Event, Message, StepSummary
from remediations.notify.notifier import Channel, ChannelKind, Notifier
from remediations.targets import Target
from remediations.visible_text import LINE_BREAK
from tests.support.peer import Peer, Reply, peer

__all__ = ["peer"]

FAST = HttpPolicy(timeout=2.0, attempts=3, initial_wait=0.01, max_wait=0.05)
HOSTILE = "<!channel> & <https://evil.example|click>"
ALERT = AlertFacts(
    labels={"alertname": "HighErrorRate", "namespace": "shop", "deployment": HOSTILE},
    annotations={"summary": "5xx above 5% for 10m"},
    status="firing",
    generator_url="http://prometheus:9090/graph?g0.expr=x&g0.tab=1",
)
TARGET = Target("Deployment", "shop", "web")


@pytest.fixture
async def notifier(peer: Peer) -> AsyncIterator[Notifier]:
    async with aiohttp.ClientSession() as session:
        channels = {
            "oncall": Channel(
                "oncall", ChannelKind.SLACK, peer.url("/services/T0/B0/secret"), FAST
            ),
            "audit": Channel("audit", ChannelKind.WEBHOOK, peer.url("/hooks/audit"), FAST),
        }
        yield Notifier(channels, session, external_url="https://remediator.example/")


def ctx(notifier: Notifier, *, dry_run: bool = False) -> ActionContext:
    return ActionContext(
        "run-42", dry_run, Clients({"notify": notifier}), rule="rollback-or-scale", alert=ALERT
    )


def params(channel: str, message: str, **extra: Any) -> NotifyParams:
    return NotifyParams.model_validate({"channel": channel, "message": message, **extra})


async def test_slack_message_shape_and_escaping(peer: Peer, notifier: Notifier) -> None:
    step = params(
        "oncall",
        "*Rolled back* {{ labels.deployment }} in `{{ labels.namespace }}`: "
        "{{ annotations.summary }} (<{{ run.url }}|run>)",
    )

    result = await Notify().run(ctx(notifier), TARGET, step)

    assert result.outcome is Outcome.OK, result.message
    (seen,) = peer.seen("/services/T0/B0/secret")
    payload = seen.body
    assert set(payload) == {"text", "blocks"}
    header, body, fields, context = payload["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": f"HighErrorRate on {TARGET.key}"},
    }
    escaped = "&lt;!channel&gt; &amp; &lt;https://evil.example\u2223click&gt;"
    # The author's mrkdwn and link stay; the label value cannot become a mention or a link.
    assert body["text"]["text"] == (
        f"*Rolled back* {escaped} in `shop`: 5xx above 5% for 10m "
        "(<https://remediator.example/api/v1/runs/run-42|run>)"
    )
    assert "<!channel>" not in str(payload)
    assert [f["text"] for f in fields["fields"]] == [
        "*Alert*\nHighErrorRate (firing)",
        f"*Target*\n{TARGET.key}",
        "*Rule*\nrollback-or-scale",
    ]
    assert context["type"] == "context"
    links = context["elements"][0]["text"]
    assert "<https://remediator.example/api/v1/runs/run-42|run>" in links
    assert "<http://prometheus:9090/graph?g0.expr=x&amp;g0.tab=1|source (prometheus:9090)>" in links
    assert seen.headers["X-Remediator-Run-Id"] == "run-42"


async def test_a_value_cannot_change_where_an_authors_link_goes_or_what_it_shows(
    peer: Peer, notifier: Notifier
) -> None:
    # Slack reads <URL|text>: the URL ends at the first `|`, the link at the first `>`. A value
    # printed inside a link the rule author wrote must change neither.
    alert = AlertFacts(
        labels={"alertname": "HighErrorRate", "team": "ops|Approved by security> x"},
        annotations={"runbook_url": "https://evil.example|Trusted runbook"},
        status="firing",
    )
    step = params(
        "oncall",
        "<{{ run.url }}|{{ labels.team }}> <{{ annotations.runbook_url }}|Runbook>",
    )
    context = ActionContext("run-42", False, Clients({"notify": notifier}), rule="r", alert=alert)

    result = await Notify().run(context, TARGET, step)

    assert result.outcome is Outcome.OK, result.message
    (seen,) = peer.seen("/services/T0/B0/secret")
    body = seen.body["blocks"][1]["text"]["text"]
    assert body == (
        "<https://remediator.example/api/v1/runs/run-42|ops\u2223Approved by security&gt; x>"
        " <https://evil.example\u2223Trusted runbook|Runbook>"
    )
    # Each link: one `|` (the author's), its URL the one written, its text after it.
    links = [part.split(">", 1)[0] for part in body.split("<")[1:]]
    assert [link.count("|") for link in links] == [1, 1]
    assert [link.split("|")[1] for link in links] == [
        "ops\u2223Approved by security&gt; x",
        "Runbook",
    ]
    # The fallback text Slack shows in push notifications says the same.
    assert body in seen.body["text"]


EVIL = "<!channel> <http://evil.example|click here> *bold* & @here <@U123>"


def mrkdwn_fields(payload: Any) -> list[str]:
    """Every string Slack parses as mrkdwn: the top-level ``text`` and each mrkdwn object."""
    found = [payload["text"]] if isinstance(payload, dict) and "text" in payload else []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn":
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(payload.get("blocks", []))
    return found


def assert_nothing_live(payload: Any) -> None:
    fields = mrkdwn_fields(payload)
    assert fields
    for text in fields:
        for live in ("<!", "<http://evil", "<@"):
            assert live not in text, (live, text)


async def test_alert_values_are_escaped_in_every_mrkdwn_field(
    peer: Peer, notifier: Notifier
) -> None:
    evil = AlertFacts(
        labels={"alertname": EVIL, "deployment": "sp1"},
        annotations={"summary": EVIL},
        status="firing",
    )
    step = params(
        "oncall",
        "M {{ annotations.summary }}",
        title="T {{ labels.deployment }} {{ annotations.summary }}",
    )
    context = ActionContext("run-42", False, Clients({"notify": notifier}), rule="r", alert=evil)

    result = await Notify().run(context, TARGET, step)

    assert result.outcome is Outcome.OK, result.message
    payload = peer.seen("/services/T0/B0/secret")[0].body
    assert_nothing_live(payload)
    escaped = "&lt;!channel&gt; &lt;http://evil.example|click here&gt; *bold* &amp; @here"
    # In the author's mrkdwn (the message) a value's `|` is no link separator either.
    in_message = escaped.replace("|", "\u2223")
    assert payload["text"].startswith(f"T sp1 {escaped} &lt;@U123&gt;: M {in_message}")
    # The header is plain_text, which Slack never parses: it keeps the title as written.
    assert payload["blocks"][0]["text"]["text"] == f"T sp1 {EVIL}"


async def test_an_announcement_escapes_its_title_and_text(peer: Peer, notifier: Notifier) -> None:
    # What the pipeline announces: plain text quoting the alert, escaped by the rendering.
    message = Message(
        event=Event.RUN_REFUSED,
        title=f"Remediation refused: r on {EVIL}",
        text=f"refused: {EVIL}",
        rule=EVIL,
        run_id="run-42",
        outcome=EVIL,
        target={**TARGET.as_dict(), "key": EVIL},
        alert=AlertFacts(labels={"alertname": EVIL}, annotations={}, status=EVIL),
        steps=[StepSummary(EVIL, EVIL, EVIL, {"x": EVIL}, {"x": EVIL})],
        links={EVIL: "https://remediator.example/run"},
    )

    delivery = await notifier.send("oncall", message)

    assert delivery.ok, delivery.detail
    payload = peer.seen("/services/T0/B0/secret")[0].body
    assert_nothing_live(payload)
    assert payload["text"].startswith("Remediation refused: r on &lt;!channel&gt;")


async def test_generic_webhook_gets_the_raw_document(peer: Peer, notifier: Notifier) -> None:
    step = params("audit", "{{ labels.deployment }} rolled back", title="Rollback")

    result = await Notify().run(ctx(notifier), TARGET, step)

    assert result.outcome is Outcome.OK
    (seen,) = peer.seen("/hooks/audit")
    doc = seen.body
    assert doc["version"] == "1"
    assert doc["event"] == "step"
    assert doc["title"] == "Rollback"
    assert doc["text"] == f"{HOSTILE} rolled back"  # no Slack escaping in JSON
    assert doc["run_id"] == "run-42"
    assert doc["target"] == {
        "kind": "Deployment",
        "namespace": "shop",
        "name": "web",
        "key": TARGET.key,
    }
    assert doc["alert"]["labels"]["deployment"] == HOSTILE
    assert doc["links"] == {"run": "https://remediator.example/api/v1/runs/run-42"}


async def test_a_failing_channel_never_fails_the_step(peer: Peer, notifier: Notifier) -> None:
    peer.answer("/services/T0/B0/secret", Reply(500, "internal"))

    result = await Notify().run(ctx(notifier), TARGET, params("oncall", "hello"))

    assert result.outcome is Outcome.UNDELIVERED
    assert "gave up after 3 attempts: HTTP 500" in result.message
    assert "secret" not in result.message
    assert len(peer.seen("/services/T0/B0/secret")) == 3


async def test_a_refused_notification_is_not_retried(peer: Peer, notifier: Notifier) -> None:
    peer.answer("/services/T0/B0/secret", Reply(404, "no_service"))

    result = await Notify().run(ctx(notifier), TARGET, params("oncall", "hello"))

    assert result.outcome is Outcome.UNDELIVERED
    assert "HTTP 404: no_service" in result.message
    assert len(peer.seen("/services/T0/B0/secret")) == 1


async def test_a_429_is_retried_after_retry_after(peer: Peer, notifier: Notifier) -> None:
    peer.answer("/hooks/audit", Reply(429, headers={"Retry-After": "1"}), Reply(200))

    result = await Notify().run(ctx(notifier), TARGET, params("audit", "hello"))

    assert result.outcome is Outcome.OK
    first, second = peer.seen("/hooks/audit")
    assert second.at - first.at >= 0.95


async def test_an_unknown_channel_is_undelivered(peer: Peer, notifier: Notifier) -> None:
    result = await Notify().run(ctx(notifier), TARGET, params("pager", "hello"))

    assert result.outcome is Outcome.UNDELIVERED
    assert "no channel named 'pager'" in result.message
    assert peer.requests == []


async def test_dry_run_sends_nothing(peer: Peer, notifier: Notifier) -> None:
    result = await Notify().run(ctx(notifier, dry_run=True), TARGET, params("oncall", "hi"))

    assert result.outcome is Outcome.DRY_RUN
    assert peer.requests == []


async def test_the_notifier_announces_a_finished_run_with_before_and_after(
    peer: Peer, notifier: Notifier
) -> None:
    message = Message(
        event=Event.RUN_FINISHED,
        title="HighErrorRate: scaled shop/web",
        rule="rollback-or-scale",
        run_id="run-42",
        outcome="verifying",
        target={**TARGET.as_dict(), "key": TARGET.key},
        alert=ALERT,
        steps=[
            StepSummary(
                "kubernetes.scale", "ok", "scaled from 3 to 5", {"replicas": 3}, {"replicas": 5}
            )
        ],
    )

    delivery = await notifier.send("oncall", message)

    assert delivery.ok, delivery.detail
    assert delivery.status == 200
    blocks = peer.seen("/services/T0/B0/secret")[0].body["blocks"]
    steps = next(b for b in blocks if b.get("text", {}).get("text", "").startswith("•"))
    assert steps["text"]["text"] == (
        '• `kubernetes.scale` ok: scaled from 3 to 5 ({"replicas": 3} → {"replicas": 5})'
    )
    fields = next(b for b in blocks if "fields" in b)["fields"]
    assert "*Outcome*\nverifying" in [f["text"] for f in fields]


async def test_the_notifier_never_raises(notifier: Notifier) -> None:
    down = Notifier(
        {"x": Channel("x", ChannelKind.WEBHOOK, "http://127.0.0.1:9/hook/token", FAST)},
        notifier.session,
    )

    delivery = await down.send("x", Message(Event.RUN_REFUSED, "refused"))

    assert not delivery.ok
    assert "gave up after 3 attempts" in delivery.detail
    assert "token" not in delivery.detail


async def test_a_notification_carries_one_idempotency_key_across_its_retries(
    peer: Peer, notifier: Notifier
) -> None:
    # A webhook receiver that deduplicates can tell a retry (after a 5xx, or a message sent
    # again after a crash before it was recorded) from a new message.
    peer.answer("/hooks/audit", Reply(503), Reply(200), Reply(200), Reply(200))

    first = await Notify().run(ctx(notifier), TARGET, params("audit", "hello"))
    again = await Notify().run(ctx(notifier), TARGET, params("audit", "hello"))
    other = await Notify().run(ctx(notifier), TARGET, params("audit", "bye"))

    assert [r.outcome for r in (first, again, other)] == [Outcome.OK] * 3
    keys = [seen.headers["Idempotency-Key"] for seen in peer.seen("/hooks/audit")]
    assert keys[0] == keys[1] == keys[2]  # the retry, and the same message sent again
    assert keys[3] != keys[0]
    assert keys[0].startswith("run-42-audit-")


async def test_a_value_the_template_prints_stays_on_its_line(
    peer: Peer, notifier: Notifier
) -> None:
    # An annotation writing a line of its own under the author's: before, it went out as
    # written, and "Approve: https://elsewhere..." read as the rule author's line.
    forged = "disk full\nApprove: https://elsewhere.example/x"
    shown = f"disk full{LINE_BREAK}Approve: https://elsewhere.example/x"
    alert = AlertFacts(
        labels={"alertname": "DiskFull"}, annotations={"summary": forged}, status="firing"
    )
    context = ActionContext(
        "run-42", False, Clients({"notify": notifier}), rule="disk", alert=alert
    )
    source = "Disk: {{ annotations.summary }}\nRun: {{ run.id }}"
    title = "{{ annotations.summary }}"
    for channel in ("audit", "oncall"):
        result = await Notify().run(context, TARGET, params(channel, source, title=title))
        assert result.outcome is Outcome.OK, result.message
    (doc,) = (r.body for r in peer.seen("/hooks/audit"))
    assert doc["text"] == f"Disk: {shown}\nRun: run-42"  # the author's break stays
    assert doc["title"] == shown
    assert doc["alert"]["annotations"]["summary"] == forged  # for programs: as recorded
    (slack,) = (r.body for r in peer.seen("/services/T0/B0/secret"))
    assert slack["blocks"][0]["text"]["text"] == shown
    assert slack["blocks"][1]["text"]["text"] == f"Disk: {shown}\nRun: run-42"


async def test_a_break_the_template_prints_is_the_authors_line(
    peer: Peer, notifier: Notifier
) -> None:
    # Before, every printed value went through one_line: the author's own "\n" printed by
    # {{ "\n" }}, join("\n") or wordwrap went out as " ↵ ", one line where the author wrote
    # three, while the annotation's break, the alert's, must still show as one.
    forged = "disk full\nApprove: https://elsewhere.example/x"
    alert = AlertFacts(
        labels={"alertname": "DiskFull", "team": "ops"},
        annotations={"summary": forged},
        status="firing",
    )
    context = ActionContext(
        "run-42", False, Clients({"notify": notifier}), rule="disk", alert=alert
    )
    source = (
        '{{ labels | dictsort | map("join", "=") | join("\\n") }}{{ "\\n" }}'
        "{{ annotations.summary }}"
    )
    for channel in ("audit", "oncall"):
        result = await Notify().run(context, TARGET, params(channel, source))
        assert result.outcome is Outcome.OK, result.message
    expected = (
        f"alertname=DiskFull\nteam=ops\ndisk full{LINE_BREAK}Approve: https://elsewhere.example/x"
    )
    (doc,) = (r.body for r in peer.seen("/hooks/audit"))
    assert doc["text"] == expected
    (slack,) = (r.body for r in peer.seen("/services/T0/B0/secret"))
    assert slack["blocks"][1]["text"]["text"] == expected
