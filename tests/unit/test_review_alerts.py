"""The report's alerts (pure): what became of each alert reads from its runs' outcomes, and
each occurrence of an episode (a re-fire with the same startsAt) is its own row."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from receiver.review.incidents import group_incidents
from receiver.review.markdown import render_markdown
from receiver.review.model import Alert, Run, Step
from receiver.review.report import build_report
from tests.unit.review_records import at, event, run

RULE = "restart-on-high-memory"
# The documented set (README, report.ALERT_STATUSES): the JSON's consumers rely on it.
STATUSES = {
    "acted",
    "notified",
    "in_progress",
    "awaiting_approval",
    "dry_run",
    "failed",
    "refused",
    "rejected",
    "expired",
    "cancelled",
    "other",
    "skipped",
    "unmatched",
}


def _step(outcome: str, action: str = "kubernetes.rollout_restart", idx: int = 0) -> Step:
    return Step(phase="run", idx=idx, action=action, outcome=outcome)


def _report(runs: list[Run], events: Any = ()) -> dict[str, Any]:
    return build_report(
        group_incidents(runs, list(events), gap_s=1800),
        runs,
        start=at(-1),
        end=at(60),
        gap_s=1800,
        generated_at=at(61),
    )


def _alerts(runs: list[Run], events: Any = ()) -> list[dict[str, Any]]:
    [incident] = _report(runs, events)["incidents"]
    alerts: list[dict[str, Any]] = incident["alerts"]
    return alerts


def _alert_lines(report: dict[str, Any]) -> list[str]:
    lines = render_markdown(report).splitlines()
    start = lines.index("### Alerts") + 4
    return lines[start : lines.index("### What was done") - 1]


# (outcome, what the run's steps did, refusal guard) -> (status, refused_by)
CASES = [
    ("resolved", [_step("ok")], None, ("acted", None)),
    ("verified", [_step("ok")], None, ("acted", None)),
    ("succeeded", [_step("noop")], None, ("acted", None)),
    ("verifying", [_step("ok")], None, ("acted", None)),
    # Verification failed (not resolved, recurred) or a step failed: it acted all the same.
    ("failed", [_step("ok")], None, ("acted", None)),
    ("failed", [_step("failed")], None, ("acted", None)),
    # Failed before any action ran (a notify step sent changes nothing).
    ("failed", [_step("ok", action="notify"), _step("not_run", idx=1)], None, ("failed", None)),
    ("refused", [_step("not_run")], "pause", ("refused", "pause")),
    ("refused", [], "budget", ("refused", "budget")),
    ("refused", [_step("refused")], None, ("refused", "precondition")),
    # Refused by the second step's precondition after the first one changed something.
    ("refused", [_step("ok"), _step("refused", idx=1)], None, ("acted", None)),
    ("expired", [_step("expired")], None, ("expired", None)),
    ("rejected", [_step("rejected")], None, ("rejected", None)),
    ("cancelled", [_step("cancelled")], None, ("cancelled", None)),
    ("awaiting_approval", [_step("awaiting_approval")], None, ("awaiting_approval", None)),
    ("pending", [_step("pending")], None, ("in_progress", None)),
    ("running", [], None, ("in_progress", None)),
    ("dry_run", [_step("dry_run")], None, ("dry_run", None)),
    ("dry_run", [_step("ok", action="notify"), _step("dry_run", idx=1)], None, ("dry_run", None)),
    ("from_the_future", [], None, ("other", None)),
    # A rule of notify steps only: it told people, it did not act on a system.
    ("succeeded", [_step("ok", action="notify")], None, ("notified", None)),
    ("succeeded", [_step("undelivered", action="notify")], None, ("notified", None)),
    ("succeeded", [_step("ok", action="notify"), _step("ok", idx=1)], None, ("acted", None)),
]


@pytest.mark.parametrize(("outcome", "steps", "guard", "expected"), CASES)
def test_an_alert_reads_acted_only_when_its_run_acted(
    outcome: str, steps: list[Step], guard: str | None, expected: tuple[str, str | None]
) -> None:
    r = run(0, outcome=outcome, steps=steps, refusal=guard, rule=RULE)
    [alert] = _alerts([r])
    assert alert["status"] == expected[0]
    assert alert["refused_by"] == expected[1]
    assert alert["status"] in STATUSES
    assert alert["runs"] == [
        {"run_id": r.id, "rule": RULE, "status": expected[0], "refused_by": expected[1]}
    ]


def test_a_run_refused_by_the_pause_reads_refused_in_the_markdown_too() -> None:
    paused = run(0, outcome="refused", refusal="pause", rule=RULE, name="api")
    expired = run(1, outcome="expired", steps=[_step("expired")], rule="flush-cache")
    rows = _alert_lines(_report([paused, expired]))
    assert rows[0].endswith("| refused by pause (restart-on-high-memory) |"), rows
    assert rows[1].endswith("| approval expired (flush-cache) |"), rows
    assert not any("acted" in row for row in rows)


def test_several_runs_of_one_alert_say_the_most_significant_and_list_each() -> None:
    refused = run(0, outcome="refused", refusal="pause", rule="scale-up")
    acted = dataclasses.replace(
        run(0, outcome="resolved", steps=[_step("ok")], rule=RULE), alert=refused.alert
    )
    dry = dataclasses.replace(run(0, outcome="dry_run", rule="flush-cache"), alert=refused.alert)
    report = _report([refused, acted, dry])
    [alert] = report["incidents"][0]["alerts"]
    assert alert["status"] == "acted"
    assert [(r["rule"], r["status"]) for r in alert["runs"]] == [
        (RULE, "acted"),
        ("flush-cache", "dry_run"),
        ("scale-up", "refused"),
    ]
    [row] = _alert_lines(report)
    assert row.endswith(
        "| acted (restart-on-high-memory); dry-run: would have acted, nothing changed"
        " (flush-cache); refused by pause (scale-up) |"
    ), row


def test_skipped_and_unmatched_alerts_keep_their_status() -> None:
    events = [event(1, skips=[("restart", "invalid target: bad name")]), event(2)]
    assert [a["status"] for a in _alerts([], events)] == ["skipped", "unmatched"]
    assert [line.rsplit("|", 2)[1].strip() for line in _alert_lines(_report([], events))] == [
        "rule skipped",
        "no rule matched",
    ]


def _occurrence(r: Run, alert: Alert, refire: int, minute: float) -> Run:
    return dataclasses.replace(
        r, alert=dataclasses.replace(alert, refire=refire, received_at=at(minute))
    )


def test_a_refire_with_the_same_starts_at_is_its_own_row_and_not_resolved() -> None:
    first = run(0, outcome="resolved", steps=[_step("ok")], resolved=5, ttr=300.0, rule=RULE)
    second = _occurrence(
        run(
            20,
            outcome="failed",
            steps=[_step("ok")],
            verify_result="not_resolved",
            error="not resolved in time",
            rule=RULE,
        ),
        first.alert,
        1,
        20,
    )
    report = _report([first, second])
    alerts = report["incidents"][0]["alerts"]
    # One row per occurrence: the re-fire is not folded into the first, resolved one.
    assert [a["resolved_at"] for a in alerts] == [at(5).isoformat(timespec="microseconds"), None]
    assert [(a["fingerprint"], a["starts_at"], a["refire"]) for a in alerts] == [
        (first.alert.fingerprint, first.alert.starts_at, 0),
        (first.alert.fingerprint, first.alert.starts_at, 1),
    ]
    assert [a["received_at"] for a in alerts] == [
        at(0).isoformat(timespec="microseconds"),
        at(20).isoformat(timespec="microseconds"),
    ]
    assert [[r["run_id"] for r in a["runs"]] for a in alerts] == [[first.id], [second.id]]
    rows = _alert_lines(report)
    assert len(rows) == 2
    assert rows[0].endswith("| 2026-11-25 10:05:00 UTC | acted (restart-on-high-memory) |")
    # No resolution, and the row says the alert came back.
    assert rows[1].endswith(
        "| 2026-11-25 10:20:00 UTC |   | fired again after resolving (re-fire 1):"
        " acted (restart-on-high-memory) |"
    ), rows[1]
