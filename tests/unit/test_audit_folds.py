"""A run stored refused has one audit row that says what three said (receiver/audit_folds.py):
read by kind, both forms give the same rows, and the review the same timeline (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from receiver.audit_folds import unfold
from receiver.review.notes import unreadable_note, unshaped
from receiver.review.rows import run_of
from receiver.review.timeline import run_timeline

AT = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
CREATED: dict[str, Any] = {
    "rule": "restart-on-high-memory",
    "dry_run": True,
    "outcome": "pending",
    "alert": {"labels": {"alertname": "HighMemoryUsage"}, "annotations": {}},
    "steps": [{"idx": 0, "action": "kubernetes.rollout_restart", "outcome": "not_run"}],
}
REFUSED = {
    "guard": "rate",
    "reason": "5 runs in 1h",
    "retry_at": (AT + timedelta(minutes=9)).isoformat(),
}
ANNOUNCED = {
    "event": "refused",
    "channel": "oncall",
    "delivered": False,
    "detail": "no notification channels are configured (notify.channels)",
}


def test_a_refused_runs_row_unfolds_into_the_rows_it_stands_for() -> None:
    folded = {**CREATED, "refused": REFUSED, "announced": ANNOUNCED}
    assert unfold("run.created", folded) == [
        ("run.created", CREATED),
        ("run.refused", REFUSED),
        ("run.announced", ANNOUNCED),
    ]
    # No announcement to record: the refusal alone.
    assert unfold("run.created", {**CREATED, "refused": REFUSED}) == [
        ("run.created", CREATED),
        ("run.refused", REFUSED),
    ]
    assert folded["refused"] == REFUSED  # the row read is left as it is


def test_other_rows_and_rows_of_the_old_form_are_read_as_they_are() -> None:
    for kind, data in (
        ("run.created", CREATED),
        ("run.refused", REFUSED),
        ("run.announced", ANNOUNCED),
        ("step", {"refused": REFUSED}),  # only a run.created row folds
        ("run.created", {**CREATED, "refused": "edited"}),  # not an object: an edit
    ):
        assert unfold(kind, data) == [(kind, data)]


def _run_row(audit: list[Mapping[str, Any]]) -> dict[str, Any]:
    """A row of ``review_runs`` for a run stored refused (``receiver.store.review``)."""
    return {
        "id": "7f1c3c1e-0000-4000-8000-000000000001",
        "rule": "restart-on-high-memory",
        "alertname": "HighMemoryUsage",
        "fingerprint": "f1",
        "starts_at": AT.isoformat(),
        "target_kind": "Deployment",
        "target_namespace": "shop",
        "target_name": "cart",
        "outcome": "refused",
        "created_at": AT,
        "dry_run": True,
        "started_at": None,
        "finished_at": AT,
        "verify_deadline": None,
        "resolved_at": None,
        "time_to_resolve_s": None,
        "refusal_guard": "rate",
        "refusal_reason": "5 runs in 1h",
        "retry_at": AT + timedelta(minutes=9),
        "error": None,
        "event": None,
        "steps": [],
        "approvals": [],
        "audit": audit,
    }


def _row(audit_id: int, kind: str, data: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": audit_id, "at": AT, "kind": kind, "data": data}


def test_the_review_shows_the_same_timeline_for_either_form() -> None:
    old = _run_row(
        [
            _row(1, "run.created", CREATED),
            _row(2, "run.refused", REFUSED),
            _row(3, "run.announced", ANNOUNCED),
        ]
    )
    new = _run_row(
        [_row(1, "run.created", {**CREATED, "refused": REFUSED, "announced": ANNOUNCED})]
    )

    def shown(row: dict[str, Any]) -> list[tuple[str, str, str, str]]:
        return [(e.kind, e.title, e.detail, e.tone) for e in run_timeline(run_of(row))]

    assert shown(new) == shown(old)
    assert [kind for kind, *_ in shown(new)] == ["alert", "matched", "guard-refuse", "notify"]
    # The pruned event's alert is still read from the run.created row.
    assert run_of(new).alert.labels == {"alertname": "HighMemoryUsage"}


def test_the_entries_read_out_of_a_refused_runs_row_say_which_row_holds_them() -> None:
    # One stored row (id 1) read as three entries: all cite id 1, and the two read out of it
    # say so, where they read as three rows of their own kinds, one row cited three times.
    new = _run_row(
        [_row(1, "run.created", {**CREATED, "refused": REFUSED, "announced": ANNOUNCED})]
    )
    audit = run_of(new).audit
    assert [(a.id, a.kind, a.folded_into) for a in audit] == [
        (1, "run.created", None),
        (1, "run.refused", 1),
        (1, "run.announced", 1),
    ]
    # A part of it marked unreadable names the row as `audit export` gives it.
    title, _, _ = unreadable_note(unshaped(audit[1], TypeError("edited")))
    assert title.startswith("Audit entry 1 (run.refused, folded into its run.created) ")
    # The old form's rows are rows of their own.
    old = _run_row([_row(1, "run.created", CREATED), _row(2, "run.refused", REFUSED)])
    assert [a.folded_into for a in run_of(old).audit] == [None, None]
