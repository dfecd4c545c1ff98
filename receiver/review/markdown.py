"""The review report written as Markdown, ready to paste into a postmortem.

Reads the data of ``receiver.review.report.build_report`` (so the JSON and the Markdown never
disagree). Every value that came from an alert or a person (labels, reasons, messages) is
escaped: it cannot start a link, an image, raw HTML, a bare-URL link (GitHub Flavored Markdown's
autolinks) or break a table or a heading, wherever it is pasted; rendered, it reads as stored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from receiver.review.text import duration_text, when_text
from receiver.text import visible

__all__ = ["escape", "render_markdown"]

# CommonMark lets any ASCII punctuation be backslash-escaped; these are the ones that can start
# markup inside a paragraph or a table cell: links and images (a link needs "["), emphasis,
# code, raw HTML and autolinks ("<"), entities ("&"), table cells ("|"), strikethrough, and "#",
# which ends a heading ("## Incident ...: Disk #" lost its "#" as the heading's closing
# sequence). A cell never starts a line, so list markers cannot start a block there.
_SPECIAL = set("\\`*_[]<>|&~#")
# GitHub Flavored Markdown also makes links of bare URLs in running text (its "extended
# autolinks": www.example.com, http://, https://, ftp://). cmark-gfm finds them in the source,
# at the "w" of "www." and at the ":" of "://": a backslash before that "." or ":" (which
# CommonMark then drops) leaves plain text. An e-mail address is still linked (mailto:): GFM
# finds those after escapes are resolved, so no escape reaches it without changing the text.
_AUTOLINK = re.compile(r"(?<=www)\.|:(?=//)", re.IGNORECASE)

# How a step of a follow-up is marked in "What was done": the run's own steps are not.
_PHASE_NOTE = {"resolve": " (on_resolved)", "on_failed": " (on_failed)"}


def escape(value: Any) -> str:
    """``value`` as inert Markdown text on one line, each character that shows nothing and
    changes how it reads written as ``<U+202E>`` (``visible``): a bidirectional override turned
    the report's own words around it, and a control character reached the terminal that
    printed ``remediator report`` (an escape sequence clears its screen)."""
    text = "" if value is None else str(value)
    text = visible(" ".join(text.split()))
    text = "".join(f"\\{c}" if c in _SPECIAL else c for c in text)
    return _AUTOLINK.sub(lambda found: "\\" + found[0], text)


def _dur(seconds: float | None) -> str:
    return duration_text(seconds) or "—"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    if not rows:
        return ["_none_", ""]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell or " " for cell in row) + " |" for row in rows]
    return [*lines, ""]


def _labels(labels: Mapping[str, Any], skip: tuple[str, ...] = ("alertname",)) -> str:
    return escape(", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in skip))


def _change(before: Any, after: Any) -> str:
    if before is None and after is None:
        return ""

    def short(value: Any) -> str:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)

    return escape(f"{short(before)} → {short(after)}")


# An alert's status (report.ALERT_STATUSES) in the words of its row.
_STATUS_WORDS = {
    "notified": "notified: told people, changed nothing",
    "in_progress": "in progress",
    "awaiting_approval": "waiting for approval",
    "dry_run": "dry-run: would have acted, nothing changed",
    "failed": "failed before acting",
    "expired": "approval expired",
    # The alert resolved first, or an operator dropped the job the run waited on.
    "cancelled": "cancelled before acting",
    "skipped": "rule skipped",
    "unmatched": "no rule matched",
}


def _status_words(status: str, refused_by: str | None) -> str:
    if status == "refused" and refused_by:
        return f"refused by {refused_by}"
    return _STATUS_WORDS.get(status, status.replace("_", " "))


def _became(alert: Mapping[str, Any]) -> str:
    """What became of an alert: each different status of its runs with the rules that reached
    it, most significant first (``acted (restart-web); refused by pause (scale-up)``)."""
    rules: dict[str, list[str]] = {}
    for run in alert.get("runs") or ():
        words = _status_words(run["status"], run["refused_by"])
        rules.setdefault(words, [])
        if run["rule"] not in rules[words]:
            rules[words].append(run["rule"])
    text = "; ".join(f"{words} ({', '.join(names)})" for words, names in rules.items())
    text = text or _status_words(alert["status"], alert.get("refused_by"))
    if alert.get("refire"):
        # A re-fire with the same startsAt: the occurrence before it resolved, and the alert
        # came back. Said first, so the row above it cannot read as the end of the story.
        text = f"fired again after resolving (re-fire {alert['refire']}): {text}"
    return text


def _incident(item: Mapping[str, Any]) -> list[str]:
    names = ", ".join(item["alertnames"]) or "alerts"
    span = f"{when_text(item['started_at'])} to {when_text(item['ended_at'])}"
    ttr = item["time_to_resolve"]
    out = [
        f"## Incident {escape(item['id'])}: {escape(names)}",
        "",
        f"- **When:** {span} ({_dur(item['duration_s'])})",
        f"- **Alert group:** {escape(item['key'])}",
        f"- **Outcome:** {escape(item['summary'])}",
        f"- **Time to resolve:** median {_dur(ttr['median_s'])}, p90 {_dur(ttr['p90_s'])}"
        f" ({ttr['count']} run{'s' if ttr['count'] != 1 else ''} that acted and resolved)",
        "",
        "### Alerts",
        "",
    ]
    out += _table(
        ("alert", "labels", "received", "resolved", "what became of it"),
        [
            (
                escape(a["alertname"]),
                _labels(a["labels"]),
                when_text(a["received_at"]),
                when_text(a["resolved_at"]),
                escape(_became(a)),
            )
            for a in item["alerts"]
        ],
    )
    out += ["### What was done", ""]
    out += _table(
        ("time", "target", "rule", "action", "outcome", "before → after", "message"),
        [
            (
                when_text(a["at"]),
                escape(a["target"]),
                escape(a["rule"]),
                escape(a["action"] + _PHASE_NOTE.get(a["phase"], "")),
                escape(a["outcome"]) + (" **DRY-RUN**" if a["dry_run"] else ""),
                _change(a["before"], a["after"]),
                escape(a["message"]),
            )
            for a in item["actions"]
        ],
    )
    out += ["### Approvals", ""]
    out += _table(
        ("requested", "target", "action", "decision", "by", "decided", "waited", "reason"),
        [
            (
                when_text(a["requested_at"]),
                escape(a["target"]),
                escape(a["action"]),
                escape(a["state"]),
                escape(a["decided_by"] or "")
                + (f" via {escape(a['channel'])}" if a["channel"] else ""),
                when_text(a["decided_at"]),
                duration_text(a["waited_s"]),
                escape(a["reason"] or ""),
            )
            for a in item["approvals"]
        ],
    )
    out += ["### Refused, skipped and not matched: what was not done, and why", ""]
    rows = [
        (
            when_text(r["at"]),
            escape(r["target"]),
            escape(r["rule"]),
            escape(f"refused by {r['guard']}" + (f" ({r['action']})" if r["action"] else "")),
            escape(r["reason"]),
            when_text(r["retry_at"]) or ("—" if r["guard"] != "precondition" else ""),
        )
        for r in item["refusals"]
    ]
    rows += [
        (
            when_text(n["at"]),
            escape(n["alertname"]) + " " + _labels(n["labels"]),
            escape(n["rule"] or ""),
            escape("rule skipped" if n["kind"] == "skipped" else "no rule matched"),
            escape(n["reason"]),
            "",
        )
        for n in item["not_done"]
    ]
    out += _table(("time", "target or alert", "rule", "what", "why", "would pass at"), rows)
    if item.get("service") or item.get("service_cut"):
        out += ["### The service meanwhile", ""]
        out += [f"**Not all shown:** {escape(cut)}" for cut in item.get("service_cut") or []]
        if item.get("service_cut"):
            out += [""]
        out += _table(
            ("time", "what", "detail"),
            [
                (when_text(s["at"]), escape(s["title"]), escape(s["detail"]))
                for s in item["service"]
            ],
        )
    if item.get("unreadable_audit"):
        out += ["### Audit entries that cannot be read (edited)", ""]
        out += ["`remediator audit verify` names the first entry changed.", ""]
        out += _table(
            ("entry", "time", "run", "kind", "why"),
            [
                (
                    str(a["id"]),
                    when_text(a["at"]),
                    escape(a["run_id"]),
                    escape(a["kind"]),
                    escape(a["why"]),
                )
                for a in item["unreadable_audit"]
            ],
        )
    if item.get("unreadable_fields"):
        out += ["### Recorded fields that cannot be read (edited)", ""]
        out += _table(
            ("run or event", "of", "field", "why"),
            [
                (
                    escape(f["run_id"] or f"event {f['event_id']}"),
                    escape(f["of"]),
                    escape(f["field"]),
                    escape(f["why"]),
                )
                for f in item["unreadable_fields"]
            ],
        )
    out += ["### Runs", ""]
    out += _table(
        ("run", "target", "rule", "outcome", "time to resolve", "error"),
        [
            (
                escape(r["id"]),
                escape(r["target"]),
                escape(r["rule"]),
                escape(r["outcome"]) + (" (dry-run)" if r["dry_run"] else ""),
                duration_text(r["time_to_resolve_s"]),
                escape(r["error"] or ""),
            )
            for r in item["runs"]
        ],
    )
    return out


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:g}%"


def _counts(counts: Mapping[str, int]) -> str:
    return escape(", ".join(f"{k} {v}" for k, v in counts.items())) or "—"


def _effectiveness(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    out = [
        "## Effectiveness per rule",
        "",
        "Verified % and failed % are of the runs whose steps ran (verified, failed, succeeded);"
        " times to resolve are of those runs whose alert resolved. Resolved before acting: runs"
        " whose alert resolved before their first step acted, in neither percentage.",
        "",
    ]
    approvals = ("granted", "rejected", "expired")
    out += _table(
        (
            "rule",
            "runs",
            "verified %",
            "failed %",
            "resolved before acting",
            "median TTR",
            "p90 TTR",
            "refusals by guard",
            "approvals granted/rejected/expired",
        ),
        [
            (
                escape(r["rule"]),
                str(r["runs"]),
                _pct(r["verified_pct"]),
                _pct(r["failed_pct"]),
                str(r.get("resolved_before_action", 0)),
                _dur(r["ttr_median_s"]),
                _dur(r["ttr_p90_s"]),
                _counts(r["refusals"]),
                "/".join(str(r["approvals"].get(k, 0)) for k in approvals),
            )
            for r in rows
        ],
    )
    return out


def render_markdown(report: Mapping[str, Any]) -> str:
    """The report (``build_report``'s data) as one Markdown document."""
    window = report["window"]
    how = (
        "one incident for the whole window"
        if window["group_by"] == "window"
        else f"incidents by alert group, {duration_text(window['gap_s'])} apart"
    )
    out = [
        f"# Remediation report: {when_text(window['from'])} to {when_text(window['to'])}",
        "",
        f"Generated {when_text(report['generated_at'])} by alert-remediator; {how}."
        f" {len(report['incidents'])} incident{'s' if len(report['incidents']) != 1 else ''}.",
        "",
    ]
    for item in report["incidents"]:
        out += _incident(item)
    out += _effectiveness(report["effectiveness"])
    return "\n".join(out).rstrip() + "\n"
