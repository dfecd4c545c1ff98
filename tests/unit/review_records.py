"""Plain review records for the pure tests: runs and events built in a line."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from receiver.review.model import Alert, Approval, AuditEntry, Run, Step, Unacted
from remediations.targets import Target

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
KEY = '{}/{team="sre"}:{alertname="WebDown"}'
_ids = itertools.count(1)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def run(
    minute: float,
    *,
    name: str = "web",
    key: str = KEY,
    rule: str = "restart",
    outcome: str = "resolved",
    alertname: str = "WebDown",
    finished: float | None = None,
    resolved: float | None = None,
    ttr: float | None = None,
    refusal: str | None = None,
    approvals: Sequence[Approval] = (),
    steps: Sequence[Step] = (),
    audit: Sequence[AuditEntry] = (),
    labels: Mapping[str, str] | None = None,
    **extra: Any,
) -> Run:
    n = next(_ids)
    return Run(
        id=f"00000000-0000-0000-0000-{n:012d}",
        rule=rule,
        alert=Alert(
            alertname=alertname,
            fingerprint=f"fp{n}",
            labels=dict(labels or {"alertname": alertname, "deployment": name}),
            starts_at="2026-11-25T09:58:00Z",
            received_at=at(minute),
        ),
        target=Target("Deployment", "shop", name),
        outcome=outcome,
        created_at=at(minute),
        group_key=key,
        finished_at=at(finished) if finished is not None else None,
        resolved_at=at(resolved) if resolved is not None else None,
        time_to_resolve_s=ttr,
        refusal_guard=refusal,
        refusal_reason=f"refused by {refusal}" if refusal else None,
        approvals=tuple(approvals),
        steps=tuple(steps),
        audit=tuple(audit),
        **extra,
    )


def event(
    minute: float,
    *,
    key: str = KEY,
    status: str = "firing",
    skips: Sequence[tuple[str, str]] = (),
    reason: str | None = None,
    alertname: str = "WebDown",
    labels: Mapping[str, str] | None = None,
) -> Unacted:
    n = next(_ids)
    return Unacted(
        event_id=n,
        alert=Alert(
            alertname=alertname,
            fingerprint=f"fp{n}",
            labels=dict(labels or {"alertname": alertname}),
            received_at=at(minute),
        ),
        status=status,
        received_at=at(minute),
        group_key=key,
        reason=reason,
        skips=tuple(skips),
    )


def approval(state: str, minute: float = 0.0, decided: float | None = None) -> Approval:
    return Approval(
        id=f"a{next(_ids)}",
        step_idx=0,
        action="test.poke",
        risk="high",
        state=state,
        requested_at=at(minute),
        expires_at=at(minute + 30),
        decided_at=at(decided) if decided is not None else None,
    )
