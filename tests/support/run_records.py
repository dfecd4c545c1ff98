"""A stored run's record as pure code reads it (undo notices, caveats), without a store."""

from __future__ import annotations

from datetime import UTC, datetime

from receiver.model import RunOutcome
from receiver.store import RunRecord, StepRecord
from remediations.targets import Target

__all__ = ["failed_run"]


def failed_run(rule: str, target: Target, *steps: StepRecord) -> RunRecord:
    """A ``failed`` run ``r`` of ``rule`` on ``target`` with ``steps``, every time 2026-01-01."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return RunRecord(
        id="r",
        rule=rule,
        fingerprint="f",
        starts_at="2026-01-01T00:00:00Z",
        alertname="A",
        event_id=1,
        target=target,
        outcome=RunOutcome.FAILED,
        dry_run=False,
        occurrence=1,
        verify_within_s=None,
        created_at=now,
        started_at=now,
        finished_at=now,
        verify_deadline=None,
        resolved_at=None,
        time_to_resolve_s=None,
        refusal_guard=None,
        refusal_reason=None,
        retry_at=None,
        error=None,
        steps=steps,
    )
