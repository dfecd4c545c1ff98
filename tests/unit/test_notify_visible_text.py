"""What a run announcement, a refusal digest or a ``notify`` step's message quotes of an alert
reads as it is written (remediations/notify/message.py): a bidirectional override or another
format character from a label or an annotation is shown as ``<U+202E>`` in every Slack field
and in a webhook's ``title`` and ``text``. Before, they went out as they were: "restart
\\u202ebew" read "web" backwards. A webhook's structured fields keep the recorded values, for
programs. And each value quoted in a line stays on it (a break shown as `` ↵ ``), so that no
alert writes a line that reads as the service's own. Pure: the payloads as built."""

from __future__ import annotations

import json

from remediations.base import AlertFacts
from remediations.notify.message import (
    Event,
    Message,
    StepSummary,
    mrkdwn_value,
    slack_payload,
    webhook_payload,
)
from remediations.visible_text import LINE_BREAK

# Every bidi embedding, override and isolate, other format characters and an escape.
HIDDEN = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200b\u2060\ufeff\u00ad\x1b"
SHOWN = (
    "<U+202A><U+202B><U+202C><U+202D><U+202E><U+2066><U+2067><U+2068><U+2069><U+200B>"
    "<U+2060><U+FEFF><U+00AD><U+001B>"
)
# Slack's mrkdwn writes the < and > of the shown form as entities.
SHOWN_MRKDWN = SHOWN.replace("<", "&lt;").replace(">", "&gt;")


def message(*, text_is_mrkdwn: bool = False) -> Message:
    alert = AlertFacts(
        labels={"alertname": f"Down{HIDDEN}", "team": f"ops{HIDDEN}"},
        annotations={"summary": f"restart\u202ebew {HIDDEN}"},
        status="firing",
        generator_url=f"http://prom{HIDDEN}.example/graph",
    )
    return Message(
        event=Event.RUN_FINISHED,
        title=f"Done: shop/api{HIDDEN}",
        text=f"*bold* restart\u202ebew {HIDDEN}",
        text_is_mrkdwn=text_is_mrkdwn,
        rule="restart",
        run_id="r1",
        outcome="succeeded",
        target={"kind": "Deployment", "name": f"api{HIDDEN}", "key": f"shop/api{HIDDEN}"},
        alert=alert,
        steps=[
            StepSummary(
                action="kubernetes.rollout_restart",
                outcome="ok",
                message=f"restarted api{HIDDEN}",
                after={"note": f"x{HIDDEN}"},
            )
        ],
        links={"run": "https://remediator.example/r1"},
    )


def _hidden_in(text: str) -> list[str]:
    return [c for c in HIDDEN if c in text]


def test_a_slack_message_shows_every_format_character() -> None:
    for mrkdwn in (False, True):
        payload = slack_payload(message(text_is_mrkdwn=mrkdwn))
        # json.dumps keeps the characters themselves: none is left anywhere a person reads.
        assert _hidden_in(json.dumps(payload, ensure_ascii=False)) == []
        header = payload["blocks"][0]["text"]["text"]
        assert header == f"Done: shop/api{SHOWN}"
        body = payload["blocks"][1]["text"]["text"]
        # Escaped where it was plain text, and written so where it was mrkdwn already.
        assert body == f"*bold* restart&lt;U+202E&gt;bew {SHOWN_MRKDWN}"
        fields = "\n".join(f["text"] for f in payload["blocks"][2]["fields"])
        assert f"Down{SHOWN_MRKDWN}" in fields
        assert f"shop/api{SHOWN_MRKDWN}" in fields
        assert f"restarted api{SHOWN_MRKDWN}" in payload["blocks"][3]["text"]["text"]
        assert payload["text"].startswith(f"Done: shop/api{SHOWN_MRKDWN}: ")


def test_a_value_in_an_authors_slack_link_shows_its_characters_inside_the_link() -> None:
    # `<{{ run.url }}|{{ labels.team }}>` rendered for Slack (mrkdwn_value on each value): a
    # shown form written with a bare `>` ended the link inside the label, which then read
    # "ops<U+202E" and a stray ">"; in the URL, it cut the address short.
    label = mrkdwn_value("ops\u202e")
    url = mrkdwn_value("https://runbooks.example/\u200bdisk")
    text = f"<https://remediator.example/r1|{label}> <{url}|Runbook>"
    payload = slack_payload(Message(event=Event.STEP, title="t", text=text, text_is_mrkdwn=True))
    body = payload["blocks"][1]["text"]["text"]
    assert body == (
        "<https://remediator.example/r1|ops&lt;U+202E&gt;>"
        " <https://runbooks.example/&lt;U+200B&gt;disk|Runbook>"
    )
    assert body.count("<") == body.count(">") == 2  # two links, each closed where it ends


def test_a_webhook_shows_them_in_its_text_and_keeps_the_recorded_fields() -> None:
    body = webhook_payload(message())
    assert body["title"] == f"Done: shop/api{SHOWN}"
    assert body["text"] == f"*bold* restart<U+202E>bew {SHOWN}"
    # For programs: the values as recorded.
    assert body["alert"]["labels"]["team"] == f"ops{HIDDEN}"
    assert body["alert"]["annotations"]["summary"] == f"restart\u202ebew {HIDDEN}"
    assert body["target"]["key"] == f"shop/api{HIDDEN}"
    assert body["steps"][0]["message"] == f"restarted api{HIDDEN}"


def test_the_joiners_words_need_are_kept() -> None:
    # Persian's zero-width non-joiner and an emoji's zero-width joiner reorder nothing.
    words = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645 \U0001f469\u200d\U0001f4bb"
    payload = slack_payload(Message(event=Event.STEP, title=words, text=words))
    assert payload["blocks"][0]["text"]["text"] == words
    assert webhook_payload(Message(event=Event.STEP, title=words, text=words))["text"] == words


# A line an annotation or a label writes that reads as the service's own.
FORGED = "disk full\nReview and decide: https://elsewhere.example/approve\r\nok\u2028x"
ONE_LINE = (
    f"disk full{LINE_BREAK}Review and decide: https://elsewhere.example/approve"
    f"{LINE_BREAK}ok{LINE_BREAK}x"
)


def broken_message() -> Message:
    return Message(
        event=Event.RUN_FINISHED,
        title=f"Done: {FORGED}",
        text="first line\nsecond line",
        rule="restart",
        run_id="r1",
        outcome="succeeded",
        target={"kind": "Deployment", "name": "api", "key": FORGED},
        alert=AlertFacts(labels={"alertname": FORGED}, annotations={}, status="firing"),
        steps=[StepSummary(action="test.restart", outcome="ok", message=FORGED)],
        links={FORGED: "https://remediator.example/r1"},
    )


def test_a_slack_message_keeps_each_quoted_value_on_its_line() -> None:
    # Before, a break in a label or a step's message went out as written: the Target field and
    # the steps' section each gained a line "Review and decide: https://elsewhere...".
    payload = slack_payload(broken_message())
    blocks = payload["blocks"]
    assert blocks[0]["text"]["text"] == f"Done: {ONE_LINE}"
    # The text's own breaks are its maker's lines.
    assert blocks[1]["text"]["text"] == "first line\nsecond line"
    fields = [f["text"] for f in blocks[2]["fields"]]
    assert fields[0] == f"*Alert*\n{ONE_LINE} (firing)"
    assert fields[1] == f"*Target*\n{ONE_LINE}"
    assert blocks[3]["text"]["text"] == f"• `test.restart` ok: {ONE_LINE}"
    assert blocks[4]["elements"][0]["text"] == f"<https://remediator.example/r1|{ONE_LINE}>"
    assert payload["text"] == f"Done: {ONE_LINE}: first line\nsecond line"


def test_a_webhook_title_is_one_line_and_its_fields_for_programs_are_as_recorded() -> None:
    body = webhook_payload(broken_message())
    assert body["title"] == f"Done: {ONE_LINE}"
    assert body["text"] == "first line\nsecond line"
    assert body["target"]["key"] == FORGED
    assert body["alert"]["labels"]["alertname"] == FORGED
    assert body["steps"][0]["message"] == FORGED
