"""The store's rows (``receiver.store.review``) as the review's records (``model.py``).

Pure: plain mappings in, frozen records out. A run's alert comes from its event while
retention keeps it, else from what the run's creation recorded in the audit log.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from receiver.audit_folds import unfold
from receiver.review.model import Alert, Approval, AuditEntry, Run, Step, Unacted
from receiver.review.text import unreadable_text
from receiver.unreadable import UnreadableTime, time_unreadable
from remediations.targets import Target

__all__ = ["audit_entry_of", "run_of", "unacted_of"]

# The fields of an event row its alert holds (an unacted event's skips are its own).
_ALERT_FIELDS = ("labels", "annotations")
# A run's own times, as its row holds them.
_RUN_TIMES = (
    "created_at",
    "started_at",
    "finished_at",
    "verify_deadline",
    "resolved_at",
    "retry_at",
)


def _event_alert(event: Mapping[str, Any]) -> Alert:
    """The alert of a row of ``alert_events`` (labels and annotations decoded; either None
    when it cannot be read, ``unreadable`` saying why)."""
    return Alert(
        alertname=event["alertname"],
        fingerprint=event["fingerprint"],
        labels=event["labels"] or {},
        annotations=event["annotations"] or {},
        generator_url=event["generator_url"],
        starts_at=event["starts_at"],
        received_at=event["received_at"],
        refire=event.get("refire") or 0,
        unreadable={k: v for k, v in (event.get("unreadable") or {}).items() if k in _ALERT_FIELDS},
    )


def _alert(row: Mapping[str, Any]) -> Alert:
    """The alert of a run: its event while stored, else what the run's creation recorded."""
    event = row.get("event")
    if event:
        # The occurrence the run was created for, as the run row records it.
        return dataclasses.replace(_event_alert(event), refire=row.get("refire") or 0)
    created = next((a for a in row.get("audit", ()) if a["kind"] == "run.created"), None)
    recorded = (created or {}).get("data", {}).get("alert") or {}
    return Alert(
        alertname=row["alertname"],
        fingerprint=row["fingerprint"],
        labels=recorded.get("labels") or {},
        annotations=recorded.get("annotations") or {},
        generator_url=recorded.get("generator_url") or "",
        starts_at=row["starts_at"],
        refire=row.get("refire") or 0,
    )


def _step(row: Mapping[str, Any]) -> Step:
    return Step(
        phase=row["phase"],
        idx=row["idx"],
        action=row["action"],
        outcome=row["outcome"],
        message=row["message"],
        params=row["params"] or {},
        before=row["before"],
        after=row["after"],
        needs_approval=row["needs_approval"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        may_have_acted=bool(row.get("may_have_acted")),
        unreadable=row.get("unreadable") or {},
    )


def _approval(row: Mapping[str, Any]) -> Approval:
    plan = row["plan"] or {}
    unreadable = row.get("unreadable") or {}
    return Approval(
        id=row["id"],
        step_idx=row["step_idx"],
        action=row["action"],
        risk=row["risk"],
        state=row["state"],
        requested_at=row["requested_at"],
        expires_at=row["expires_at"],
        # The summary is where the timeline shows the plan: an unreadable one is said there.
        summary=str(plan.get("summary") or "") or unreadable_text(unreadable),
        before=plan.get("before"),
        after=plan.get("after"),
        decided_by=row["decided_by"],
        decided_at=row["decided_at"],
        channel=row["channel"],
        reason=row["reason"],
        unreadable=unreadable,
    )


def audit_entry_of(row: Mapping[str, Any]) -> AuditEntry:
    """An audit row (``receiver.store.review``: data decoded, ``data_unreadable``) as a record."""
    unreadable = row.get("data_unreadable")
    return AuditEntry(row["id"], row["at"], row["kind"], row["data"] or {}, unreadable)


def _run_audit(rows: Iterable[Mapping[str, Any]]) -> tuple[AuditEntry, ...]:
    """A run's audit rows as records, a refused run's one ``run.created`` row as the rows it
    stands for (``receiver.audit_folds``), each with that row's id and time, in their order,
    those read out of it marked ``folded_into`` that id."""
    entries: list[AuditEntry] = []
    for row in rows:
        entry = audit_entry_of(row)
        if entry.unreadable is not None:
            entries.append(entry)
            continue
        (kind, data), *folded = unfold(entry.kind, entry.data)
        entries.append(AuditEntry(entry.id, entry.at, kind, data))
        # Read out of that row, not rows of their own: said, so that a reviewer matching
        # them to `remediator audit export` finds one run.created row, not three.
        entries += [AuditEntry(entry.id, entry.at, k, d, folded_into=entry.id) for k, d in folded]
    return tuple(entries)


def run_of(row: Mapping[str, Any]) -> Run:
    """A run from a row of ``review_runs`` (or, without details, of ``review_run_page``)."""
    return Run(
        id=row["id"],
        rule=row["rule"],
        alert=_alert(row),
        target=Target(row["target_kind"], row["target_namespace"], row["target_name"]),
        outcome=row["outcome"],
        created_at=row["created_at"],
        group_key=row.get("group_key") or "",
        dry_run=row["dry_run"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        verify_deadline=row["verify_deadline"],
        resolved_at=row["resolved_at"],
        time_to_resolve_s=row["time_to_resolve_s"],
        refusal_guard=row["refusal_guard"],
        refusal_reason=row["refusal_reason"],
        retry_at=row["retry_at"],
        error=row["error"],
        verify_result=row.get("verify_result"),
        steps=tuple(_step(s) for s in row.get("steps", ())),
        approvals=tuple(_approval(a) for a in row.get("approvals", ())),
        audit=_run_audit(row.get("audit", ())),
        unreadable={
            name: time_unreadable(value.stored)
            for name in _RUN_TIMES
            if isinstance(value := row.get(name), UnreadableTime)
        },
    )


def unacted_of(row: Mapping[str, Any]) -> Unacted:
    """An event nothing was done for, from a row of ``review_events``. Skips that cannot be
    read are one reason about the event, saying so (not 'no rule matches', which is unknown);
    labels or annotations that cannot be read are said in its reasons."""
    skips = tuple(
        (str(s.get("rule") or ""), str(s.get("reason") or "")) for s in row.get("skips") or ()
    )
    unreadable = {k: v for k, v in (row.get("unreadable") or {}).items() if k == "skips"}
    if unreadable:
        skips = (("", unreadable_text(unreadable)),)
    alert = _event_alert(row)
    reason = row.get("settled_reason")
    if note := unreadable_text(alert.unreadable):  # its labels or annotations: said with why
        reason = "; ".join(p for p in (reason, note) if p)
        skips = tuple((rule, "; ".join(p for p in (why, note) if p)) for rule, why in skips)
    return Unacted(
        event_id=row["id"],
        alert=alert,
        status=row["status"],
        received_at=row["received_at"],
        group_key=row["group_key"],
        reason=reason,
        skips=skips,
        unreadable=unreadable,
    )
