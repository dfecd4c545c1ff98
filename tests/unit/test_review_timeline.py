"""A run's and an incident's timeline, read from a recorded audit trail (pure)."""

from __future__ import annotations

import dataclasses

from receiver.review.incidents import group_incidents
from receiver.review.model import AuditEntry, Step
from receiver.review.notes import service_note
from receiver.review.timeline import incident_timeline, run_timeline
from tests.unit.review_records import approval, at, event, run

RETRY = at(5).isoformat()


def _audit(*rows: tuple[float, str, dict[str, object]]) -> list[AuditEntry]:
    return [
        AuditEntry(i + 1, at(minute), kind, data) for i, (minute, kind, data) in enumerate(rows)
    ]


def test_a_run_reads_from_the_alert_to_its_end() -> None:
    granted = approval("approved", minute=0.1, decided=1.0)
    trail = _audit(
        (0.0, "run.created", {"dry_run": False}),
        (0.0, "step", {"idx": 0, "action": "test.poke", "outcome": "pending", "phase": "run"}),
        (0.0, "run.admitted", {"phase": "run", "guards": ["pause", "lock"]}),
        (0.0, "run.outcome", {"outcome": "running"}),
        (
            0.1,
            "approval.requested",
            {
                "approval_id": granted.id,
                "step": 0,
                "action": "test.poke",
                "expires_at": at(30).isoformat(),
            },
        ),
        (0.1, "notification.sent", {"notice": "approval requested", "channel": "ops"}),
        (0.1, "step", {"idx": 0, "action": "test.poke", "outcome": "awaiting_approval"}),
        (
            1.0,
            "approval.approved",
            {
                "approval_id": granted.id,
                "step": 0,
                "by": "alice",
                "channel": "web",
                "reason": "looks right",
            },
        ),
        (
            1.5,
            "step",
            {
                "idx": 0,
                "action": "test.poke",
                "outcome": "ok",
                "message": "poked",
                "before": {"value": 0},
                "after": {"value": 1},
                "phase": "run",
            },
        ),
        (1.5, "run.outcome", {"outcome": "verifying", "verify_deadline": at(11.5).isoformat()}),
        (4.0, "run.closed", {"resolved_at": at(4).isoformat(), "time_to_resolve_s": 240.0}),
        (4.0, "rules.whatever", {"note": "a kind this version does not know"}),
    )
    shown = run(0, approvals=[granted], audit=trail, steps=[Step("run", 0, "test.poke", "ok")])
    entries = run_timeline(shown)
    assert [(e.kind, e.title) for e in entries] == [
        ("alert", "Alert WebDown fired"),
        ("matched", "Rule restart matched: test.poke planned"),
        ("guard-pass", "Guards passed: pause, lock"),
        ("approval-request", "Approval requested for step 1 (test.poke)"),
        ("notify", "Notification sent: approval requested to ops"),
        ("held", "Step 1 (test.poke) waits for an engineer's approval"),
        ("approval-decision", "Approved by alice via web (step 1)"),
        ("step", "Step 1: test.poke ok"),
        ("verify", "Verifying: waiting for the alert to resolve"),
        ("resolved", "Alert resolved at 2026-11-25 10:04:00 UTC"),
        ("other", "rules.whatever"),
    ]
    by_kind = {e.kind: e for e in entries}
    assert by_kind["approval-decision"].detail == "reason: looks right; after 54s"
    assert by_kind["step"].before == '{\n  "value": 0\n}'
    assert by_kind["step"].after == '{\n  "value": 1\n}'
    assert by_kind["resolved"].detail == "time to resolve 4m00s"
    assert by_kind["other"].detail == '{"note": "a kind this version does not know"}'
    # The alert began firing two minutes before it reached us.
    assert entries[1].since_prev == "+2m00s"
    assert [e.since_prev for e in entries][-3:] == ["+0s", "+2m30s", "+0s"]


def test_refusals_say_when_they_would_pass_and_dry_runs_are_marked() -> None:
    trail = _audit(
        (0, "run.created", {"dry_run": True}),
        (0, "run.refused", {"guard": "cooldown", "reason": "ran 3m ago", "retry_at": RETRY}),
        (0, "run.refused", {"guard": "namespace", "reason": "denied", "retry_at": None}),
        (0, "step", {"idx": 0, "action": "kubernetes.rollout_restart", "outcome": "dry_run"}),
        (0, "run.outcome", {"outcome": "rolled_sideways", "error": "new outcome"}),
        (0, "run.verify_expired", {"verify_deadline": at(10).isoformat()}),
        (0, "run.admitted", {"phase": "resolve", "guards": ["pause", "namespace", "lock"]}),
    )
    entries = run_timeline(run(0, audit=trail))
    passed = next(e for e in entries if e.kind == "guard-pass")
    assert passed.title == "Guards passed (on_resolved steps): pause, namespace, lock"
    escalated = run_timeline(
        run(
            0,
            audit=_audit((0, "run.admitted", {"phase": "on_failed", "guards": ["pause", "lock"]})),
        )
    )
    assert [e.title for e in escalated if e.kind == "guard-pass"] == [
        "Guards passed (on_failed steps): pause, lock"
    ]
    refusals = [e for e in entries if e.kind == "guard-refuse"]
    assert [(e.title, e.detail, e.tone) for e in refusals] == [
        (
            "Refused by the cooldown guard",
            "ran 3m ago; would pass at 2026-11-25 10:05:00 UTC",
            "warn",
        ),
        ("Refused by the namespace guard", "denied; waiting will not help", "warn"),
    ]
    matched = next(e for e in entries if e.kind == "matched")
    assert matched.dry_run
    assert matched.detail == "dry-run: nothing will be changed"
    step = next(e for e in entries if e.kind == "step")
    assert step.dry_run
    outcome = next(e for e in entries if e.kind == "outcome")
    assert (outcome.title, outcome.detail, outcome.tone) == (
        "Run rolled sideways",
        "new outcome",
        "neutral",
    )
    failed = next(e for e in entries if e.kind == "verify-failed")
    assert (
        failed.title == "Verification failed: the alert did not resolve by 2026-11-25 10:10:00 UTC"
    )
    assert failed.tone == "bad"


def test_a_cancelled_approval_says_why_it_was_cancelled() -> None:
    # A resolution cancels a run step's approval (no reason recorded: that is what it means);
    # the alert firing again withdraws an undo's, and a follow-up that stopped ends the
    # approvals of the steps after the stop: both rows say why, and the timeline must too,
    # not that the alert resolved (store/withdrawal.py, store/phase_stop.py).
    fired_again = "the alert fired again; this undo is carried to its next resolution"
    stopped = "not run: the undo ended at step 0 (kubernetes.scale), refused by the lock guard"
    trail = _audit(
        (1, "approval.cancelled", {"approval_id": "a", "step": 0, "state": "cancelled"}),
        (2, "approval.cancelled", {"step": 1, "state": "cancelled", "reason": fired_again}),
        (3, "approval.cancelled", {"step": 2, "state": "cancelled", "reason": stopped}),
    )
    entries = [e for e in run_timeline(run(0, audit=trail)) if e.kind == "approval-decision"]
    assert [(e.title, e.detail) for e in entries] == [
        ("Approval cancelled: the alert resolved first (step 1)", ""),
        (f"Approval cancelled: {fired_again} (step 2)", ""),
        (f"Approval cancelled: {stopped} (step 3)", ""),
    ]


def test_only_http_links_become_links() -> None:
    shown = run(0)
    hostile = shown.alert.__class__(
        alertname="X",
        fingerprint="f",
        annotations={"runbook_url": "javascript:alert(1)", "dashboard_url": "https://grafana/d"},
        generator_url="data:text/html,<script>",
    )
    entries = run_timeline(dataclasses.replace(shown, alert=hostile))
    assert entries[0].links == (("Dashboard", "https://grafana/d"),)


def test_an_incident_puts_every_run_and_what_was_not_done_on_one_line() -> None:
    first = run(0, name="api", audit=_audit((0, "run.created", {})))
    second = run(2, name="cart", audit=_audit((2, "run.refused", {"guard": "rate", "reason": "5"})))
    skipped = event(
        1, skips=[("restart", "invalid target: namespace 'kube-system' denied"), ("", "late copy")]
    )
    unmatched = event(3, reason="no rule matches")
    [incident] = group_incidents([first, second], [skipped, unmatched], gap_s=1800)
    entries = incident_timeline(incident)
    assert [(e.kind, e.target or e.rule) for e in entries] == [
        ("alert", "Deployment/shop/api"),
        ("alert", "Deployment/shop/cart"),
        ("matched", "Deployment/shop/api"),
        ("skipped", "restart"),
        ("unmatched", ""),
        ("guard-refuse", "Deployment/shop/cart"),
        ("unmatched", ""),
    ]
    assert entries[3].title == "Rule restart skipped for alert WebDown"
    assert entries[4].detail == "late copy"
    assert entries[-1].title == "Alert WebDown matched no rule"
    # The incident's timeline starts when its first alert began firing (two minutes before).
    assert [e.since_start for e in entries][2:] == [
        "T+2m00s",
        "T+3m00s",
        "T+3m00s",
        "T+4m00s",
        "T+5m00s",
    ]


def test_what_the_service_did_reads_as_a_sentence() -> None:
    def note(kind: str, **data: object) -> tuple[str, str, str]:
        return service_note(AuditEntry(1, at(0), kind, data))

    until = at(120).isoformat()
    assert note("guards.pause", by="alice", reason="db upgrade", until=until) == (
        "Remediation paused by alice: db upgrade",
        "until 2026-11-25 12:00:00 UTC",
        "warn",
    )
    assert note("guards.resume", by="bob") == ("Remediation resumed by bob", "", "neutral")
    # Written after the store came back: its row's time is when it was written, so the note
    # says when it happened.
    late = {"recorded_late": True, "occurred_at": at(-30).isoformat()}
    assert note("guards.pause", by="alice", reason="db down", until=None, **late) == (
        "Remediation paused by alice: db down",
        "until resumed; happened at 2026-11-25 09:30:00 UTC, recorded late",
        "warn",
    )
    assert note("guards.resume", by="bob", **late)[1] == (
        "happened at 2026-11-25 09:30:00 UTC, recorded late"
    )
    failed = note("rules.reload_failed", errors=["a.yaml:3: bad", "b.yaml:1: worse"])
    assert failed == (
        "Rules reload failed: the last good rules stay",
        "a.yaml:3: bad (and 1 more)",
        "warn",
    )
    assert note("service.started", host="h", worker="w", dry_run=True)[1] == (
        "h (w), dry-run everywhere"
    )
    # Not forced, but nothing configured to act on (the embedded default): the row's mode says
    # so in words; "live where configured" read as if the service had acted.
    idle = "dry-run (nothing is changed): no cluster credentials, no connections configured"
    assert note("service.started", host="h", worker="w", dry_run=False, mode=idle)[1] == (
        f"h (w), {idle}"
    )
    assert note("service.started", host="h", worker="w", dry_run=False)[1] == (
        "h (w), live where configured"  # a row written before the mode was recorded
    )
    assert note("service.unheard_of", x=1) == ("service.unheard_of", '{"x": 1}', "neutral")


def test_newer_kinds_of_verification_and_announcements_read_too() -> None:
    trail = _audit(
        (0, "step", {"idx": 2, "action": "notify", "outcome": "ok", "phase": "on_failed"}),
        (1, "run.verification_failed", {"verify_result": "recurred", "error": "fired again"}),
        (2, "run.verified", {"settled_until": at(2).isoformat()}),
        (
            3,
            "run.announced",
            {"event": "failed", "channel": "ops", "delivered": False, "detail": "HTTP 503"},
        ),
    )
    entries = run_timeline(run(0, audit=trail))[1:]
    assert [(e.kind, e.title, e.detail, e.tone) for e in entries] == [
        ("notify", "On_failed step 3: notify ok", "", "good"),
        ("verify-failed", "Verification failed: recurred", "fired again", "bad"),
        (
            "verify",
            "Verified: the alert resolved and stayed resolved",
            "it stayed resolved until 2026-11-25 10:02:00 UTC",
            "good",
        ),
        ("notify", "Announcement not delivered: failed to ops", "HTTP 503", "warn"),
    ]


def test_a_failed_step_that_may_have_acted_says_so_in_its_title() -> None:
    failed = {"idx": 0, "action": "http.call", "outcome": "failed", "phase": "run"}
    trail = _audit(
        (0.0, "run.created", {"dry_run": False}),
        (0.5, "step", {**failed, "message": "timed out", "may_have_acted": True}),
        (0.6, "step", {**failed, "idx": 1, "message": "connection refused"}),
    )
    steps = [Step("run", 0, "http.call", "failed", may_have_acted=True)]
    titles = [e.title for e in run_timeline(run(0, audit=trail, steps=steps)) if e.kind == "step"]
    assert titles == ["Step 1: http.call failed (may have acted)", "Step 2: http.call failed"]


def test_a_run_of_a_repetition_says_which_occurrence_and_where_counting_stopped() -> None:
    # The history read counts a pair's earlier runs only up to the rule's highest
    # `repeated.times` (receiver.repetitions): past it, the count is "N or later".
    def matched(data: dict[str, object]) -> str:
        entries = run_timeline(run(0, audit=_audit((0, "run.created", data))))
        return next(e.detail for e in entries if e.kind == "matched")

    steps = {"steps": [{"index": 0, "why": ["repeated 3 times within 1h"]}]}
    assert matched({"occurrence": 3, "decision": {"occurrence": 3, **steps}}) == (
        "occurrence 3 of this rule and target in its window"
    )
    capped = {"occurrence": 4, "occurrence_capped": True, **steps}
    assert matched({"occurrence": 4, "dry_run": True, "decision": capped}) == (
        "occurrence 4 or later of this rule and target in its window; "
        "dry-run: nothing will be changed"
    )
    # A rule that plans the same steps each time has no decision: its count says nothing.
    assert matched({"occurrence": 7}) == ""
    assert matched({"occurrence": True, "decision": {}}) == ""


def test_a_step_that_waits_for_its_system_says_so_once() -> None:
    # One step.deferred row at a step's first wait (receiver/pipeline/unreachable.py); the
    # retries update the step's own row only.
    waiting = "waiting for its system: kubernetes could not be reached (1 try since ...)"
    trail = _audit(
        (0.0, "run.created", {"dry_run": False}),
        (
            0.1,
            "step.deferred",
            {"phase": "resolve", "idx": 0, "action": "kubernetes.scale", "message": waiting},
        ),
    )
    held = [e for e in run_timeline(run(0, audit=trail)) if e.kind == "held"]
    assert [(e.title, e.detail, e.tone) for e in held] == [
        ("On_resolved step 1 (kubernetes.scale) waits for its system", waiting, "warn")
    ]


def test_a_run_resolved_before_its_first_step_acted_says_it_is_not_credited() -> None:
    """Its closing row, or the outcome row its deadline job wrote when the resolution came
    while it ran: neither the plain "Alert resolved" (good) nor "Run succeeded"."""
    early: dict[str, object] = {
        "outcome": "succeeded",
        "verify_result": "resolved_before_action",
        "resolved_at": at(1).isoformat(),
        "first_step_acted_at": at(2).isoformat(),
        "error": "resolved at ..., before the first step acted at ...; not credited to the rule",
    }
    trail = _audit((3.0, "run.closed", early), (4.0, "run.outcome", early))
    entries = run_timeline(run(0, outcome="succeeded", audit=trail))[1:]
    title = (
        "Alert resolved at 2026-11-25 10:01:00 UTC, before the first step acted at "
        "2026-11-25 10:02:00 UTC: not credited to the rule"
    )
    assert [(e.kind, e.title, e.detail, e.tone) for e in entries] == [
        ("resolved", title, early["error"], "neutral"),
        ("resolved", title, early["error"], "neutral"),
    ]
