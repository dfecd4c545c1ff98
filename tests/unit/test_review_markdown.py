"""The report in Markdown (pure): values from alerts and people stay inert text, tables hold."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from receiver.review.incidents import group_incidents
from receiver.review.markdown import escape, render_markdown
from receiver.review.model import Step
from receiver.review.report import build_report
from tests.unit.review_records import at, event, run

HOSTILE = "[click](javascript:alert(1)) <script>x</script> | *bold* `code` &amp; ~~gone~~"


def _unescaped(text: str, char: str) -> int:
    """How many times ``char`` appears without a backslash before it."""
    return len(re.findall(rf"(?<!\\){re.escape(char)}", text))


def test_escape_leaves_no_markup() -> None:
    text = escape(HOSTILE + "\nsecond line")
    for char in "[]<>|*`&~":
        assert _unescaped(text, char) == 0, char
    assert "\n" not in text
    assert text.endswith("second line")


def test_escape_shows_what_would_turn_or_drive_the_text() -> None:
    # A bidirectional override turned the report's words after it around; an escape sequence
    # reached the terminal that printed `remediator report` (ESC c resets it).
    assert escape("ops\u202eevil \x1bc\x07 a\u200bb") == (
        "ops\\<U+202E\\>evil \\<U+001B\\>c\\<U+0007\\> a\\<U+200B\\>b"
    )


@given(st.text(max_size=80))
def test_no_value_can_break_a_table_row(value: str) -> None:
    report = build_report(
        group_incidents([run(0, labels={"alertname": "WebDown", "team": value})], [], gap_s=1800),
        [],
        start=at(-1),
        end=at(60),
        gap_s=1800,
        generated_at=at(61),
    )
    lines = render_markdown(report).splitlines()
    [row] = [line for line in lines if line.startswith("| WebDown |")]
    # Five columns: six unescaped pipes, however the value is made.
    assert _unescaped(row.replace("\\\\", ""), "|") == 6, row


# CommonMark with GFM's tables, as rich (a dependency) ships it: what a value renders as.
_COMMONMARK = MarkdownIt("commonmark").enable(["table", "strikethrough"])


def _rendered_text(markdown: str) -> list[str]:
    """The text of each paragraph, heading and table cell of ``markdown``, as a reader sees
    it; any other inline (a link, emphasis, code, HTML) shows as ``<its type>``."""
    out = []
    for token in _COMMONMARK.parse(markdown):
        if token.type != "inline":
            continue
        parts = []
        for child in token.children or []:
            if child.type == "text":
                parts.append(child.content)
            elif child.type == "softbreak":
                parts.append("\n")
            else:
                parts.append(f"<{child.type}>")
        out.append("".join(parts))
    return out


@given(st.text(alphabet=st.sampled_from("#*_[]()<>|&~`!\\:/.@w ahtps"), max_size=30))
def test_an_escaped_value_reads_as_stored(value: str) -> None:
    """Rendered, in a cell, a heading or running text, an escaped value is its text: no
    markup, no backslash left over, no heading closed early by a trailing "#"."""
    shown = escape(value)
    stored = " ".join(value.split())
    table = f"| a | b |\n|---|---|\n| {shown} | z |\n"
    assert _rendered_text(table)[2] == stored
    assert _rendered_text(f"## Incident i: {shown}") == [f"Incident i: {stored}".strip()]
    strong = "<strong_open>When:<strong_close>"
    assert _rendered_text(f"- **When:** {shown}") == [f"{strong} {stored}".rstrip()]


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/login",
        "http://10.0.0.1:8080/x",
        "ftp://files.example/a",
        "www.evil.example/x",
        "WWW.evil.example",
    ],
)
def test_a_bare_url_in_a_label_is_no_link(url: str) -> None:
    """GitHub Flavored Markdown links a bare URL by its "://" or "www." (cmark-gfm finds them
    in the source): a label value holding one became a live link in a pasted report. A
    backslash before the ":" or the "." keeps it text, and CommonMark drops the backslash."""
    report = build_report(
        group_incidents(
            [run(0, labels={"alertname": "WebDown", "runbook": f"see {url} now"})], [], gap_s=1800
        ),
        [],
        start=at(-1),
        end=at(60),
        gap_s=1800,
        generated_at=at(61),
    )
    text = render_markdown(report)
    # No "://" nor "www." without the backslash before its ":" or ".": nothing GFM links.
    assert re.search(r"(?<!\\)(:(?=//)|(?i:www)\.)", text) is None, text
    # And rendered, the cell reads as stored.
    assert any(f"runbook=see {url} now" in cell for cell in _rendered_text(text)), text


def test_the_report_reads_top_to_bottom() -> None:
    runs = [
        run(0, outcome="resolved", ttr=90.0, labels={"alertname": "WebDown", "note": HOSTILE}),
        run(1, outcome="refused", refusal="cooldown", retry_at=at(16)),
    ]
    events = [event(2, skips=[("restart", "invalid target: bad name")])]
    report = build_report(
        group_incidents(runs, events, gap_s=1800),
        runs,
        start=at(-1),
        end=at(60),
        gap_s=1800,
        generated_at=at(61),
    )
    text = render_markdown(report)
    lines = text.splitlines()
    assert lines[0] == "# Remediation report: 2026-11-25 09:59:00 UTC to 2026-11-25 11:00:00 UTC"
    assert "incidents by alert group, 30m00s apart. 1 incident." in lines[2]
    headings = [line for line in lines if line.startswith("#")]
    assert headings[2:] == [
        "### Alerts",
        "### What was done",
        "### Approvals",
        "### Refused, skipped and not matched: what was not done, and why",
        "### Runs",
        "## Effectiveness per rule",
    ]
    assert (
        "| 2026-11-25 10:01:00 UTC | Deployment/shop/web | restart | refused by cooldown |"
        " refused by cooldown | 2026-11-25 10:16:00 UTC |"
    ) in lines
    assert "| restart | 2 | 100% | 0% | 0 | 1m30s | 1m30s | cooldown 1 | 0/0/0 |" in lines
    # Sections with nothing in them say so.
    assert lines[lines.index("### What was done") + 2] == "_none_"
    for char in "[]<>":
        assert _unescaped(text.replace("→", ""), char) == 0, char


def test_a_follow_up_step_is_marked_with_its_phase() -> None:
    # An escalation's step read as one of the run's own (only on_resolved was marked).
    steps = [
        Step("run", 0, "kubernetes.rollout_restart", "ok", finished_at=at(1)),
        Step("on_failed", 1, "notify", "ok", finished_at=at(2)),
        Step("resolve", 0, "kubernetes.scale", "ok", finished_at=at(3)),
    ]
    runs = [run(0, outcome="failed", steps=steps)]
    report = build_report(
        group_incidents(runs, [], gap_s=1800),
        runs,
        start=at(-1),
        end=at(60),
        gap_s=1800,
        generated_at=at(61),
    )
    done = [line for line in render_markdown(report).splitlines() if "| restart |" in line]
    assert [line.split(" | ")[3] for line in done[:3]] == [
        "kubernetes.rollout\\_restart",
        "notify (on\\_failed)",
        "kubernetes.scale (on\\_resolved)",
    ]
