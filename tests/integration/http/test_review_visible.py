"""What an alert says reads as written on the review's pages and in its Markdown report: a
bidirectional override from a label or an annotation turned the service's own words around
it (the run page's heading "WebDown<U+202E> on Deployment shop/api" read "ipa/pohs tnemyolpeD
no", the timeline's "fired" read "derif", the labels after it read right to left), and a
control character (an escape sequence) reached the terminal that printed the report. Each is
shown as ``<U+202E>``, as on the approval page; the JSON keeps the values as recorded."""

from __future__ import annotations

import html
import json
import unicodedata

from receiver.store import Store
from tests.support.approvals import MakeApprovalEnv
from tests.support.cdp import Page
from tests.support.http import OPERATOR, AiohttpClient, default_settings
from tests.support.payloads import alert, notification
from tests.support.review import STORM_RULES
from tests.support.review_app import review_app

# An override that turns what follows around, an isolate, a zero-width space, and a terminal's
# escape sequence (clear the screen) with a bell.
TURNED = "ops\u202eevil"
LABELS = {
    "alertname": "WebDown",
    "severity": "critical",
    "namespace": "shop",
    "deployment": "api",
    "team": TURNED,
    "zone": "a\u2066b\u200bc\x1b[2J\x07d",
}
SHOWN = {
    "team": "ops<U+202E>evil",
    "zone": "a<U+2066>b<U+200B>c<U+001B>[2J<U+0007>d",
}


def _hidden(text: str) -> list[str]:
    """The characters of ``text`` that show nothing and change how it reads (as
    ``receiver.text.visible`` finds them; the page's own line breaks aside)."""
    return sorted(
        {
            f"U+{ord(c):04X}"
            for c in text
            if unicodedata.category(c) in ("Cf", "Cc") and c not in "\t\n\r\u200c\u200d"
        }
    )


async def test_an_alerts_bidi_and_control_characters_are_shown_not_obeyed(
    approval_env: MakeApprovalEnv, aiohttp_client: AiohttpClient, store: Store
) -> None:
    env = await approval_env(rules=STORM_RULES)
    annotations = {"summary": f"disk full {TURNED}", "runbook_url": "https://rb.example/\u202ex"}
    await env.harness.intake.accept(notification(alert(LABELS, annotations=annotations)))
    await env.harness.drain()
    [run] = await env.harness.runs()
    client = await aiohttp_client(review_app(store, default_settings()))
    response = await client.get("/api/v1/report", headers=OPERATOR, params={"from": "1h"})
    [incident] = (await response.json())["incidents"]
    for path in (
        "/runs",
        f"/runs/{run.id}",
        f"/incidents/{incident['id']}",
        f"/incidents/{incident['id']}/report.md",
    ):
        response = await client.get(path, headers=OPERATOR)
        assert response.status == 200, path
        text = await response.text()
        assert _hidden(text) == [], path
        if path == "/runs":
            continue  # the list names the alert only
        # In Markdown, "<" and ">" are backslash-escaped; in HTML, entities.
        read = html.unescape(text).replace("\\<", "<").replace("\\>", ">")
        assert "ops<U+202E>evil" in read, path
        assert "[2J<U+0007>d" in read.replace("\\[", "["), path
    page = await (await client.get(f"/runs/{run.id}", headers=OPERATOR)).text()
    assert f'<dd class="label-value">{html.escape(SHOWN["team"])}</dd>' in page
    assert f'<dd class="label-value">{html.escape(SHOWN["zone"])}</dd>' in page
    # The link opens the address the alert gave, the override percent-encoded as a browser
    # sends it.
    assert 'href="https://rb.example/%E2%80%AEx"' in page
    # The JSON keeps the values as recorded, for programs.
    answer = await client.get("/api/v1/report", headers=OPERATOR, params={"from": "1h"})
    report = await answer.json()
    assert TURNED in json.dumps(report, ensure_ascii=False)


async def test_a_filter_keeps_the_text_typed(
    approval_env: MakeApprovalEnv, aiohttp_client: AiohttpClient, store: Store
) -> None:
    # A form field's value is sent back as it stands: shown as <U+202E>, the next search
    # would look for those seven characters.
    await approval_env(rules=STORM_RULES)
    client = await aiohttp_client(review_app(store, default_settings()))
    response = await client.get("/runs", headers=OPERATOR, params={"alertname": TURNED})
    assert response.status == 200
    assert f'name="alertname" value="{TURNED}"' in await response.text()


async def test_a_long_value_wraps_on_every_page(
    approval_env: MakeApprovalEnv, aiohttp_client: AiohttpClient, store: Store, browser: Page
) -> None:
    # A label or annotation of thousands of characters without a blank: the timeline's labels
    # line ran off to the right, and the whole page scrolled sideways to read it.
    env = await approval_env(rules=STORM_RULES)
    long = {**LABELS, "team": "L" * 5000, "zone": "z"}
    annotations = {"summary": "S" * 5000, "description": "D" * 5000}
    await env.harness.intake.accept(notification(alert(long, annotations=annotations)))
    # And one no rule matches (not critical), in the same group: "What was not done" lists it
    # with its labels, in a table whose other columns were squeezed to a letter a line.
    unmatched = {**long, "severity": "info", "deployment": "batch"}
    await env.harness.intake.accept(notification(alert(unmatched, annotations=annotations)))
    await env.harness.drain()
    [run] = await env.harness.runs()
    client = await aiohttp_client(review_app(store, default_settings()))
    response = await client.get("/api/v1/report", headers=OPERATOR, params={"from": "1h"})
    [incident] = (await response.json())["incidents"]
    await browser.call("Network.enable")
    await browser.call("Network.setExtraHTTPHeaders", headers=OPERATOR)
    base = str(client.make_url("")).rstrip("/")
    for path in ("/runs", f"/runs/{run.id}", "/incidents", f"/incidents/{incident['id']}"):
        await browser.open(base + path)
        width = await browser.evaluate("document.documentElement.scrollWidth")
        assert width <= await browser.evaluate("window.innerWidth"), path
    # Each column keeps room for its words: the time of the unmatched alert on a line or two.
    widths = await browser.evaluate(
        "Array.from(document.querySelectorAll('#not-done tr.unmatched td'), td => td.offsetWidth)"
    )
    assert widths, "the unmatched alert is not listed"
    assert widths[0] >= 70, widths
