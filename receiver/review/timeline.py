"""The timeline of a run, and of an incident: what happened, in order, with what was NOT done.

A run's timeline is read from its audit trail (every change to a run is an audit row, written
in the same transaction as the change), plus the alert that started it:

    alert fired -> rule matched (steps planned) -> guards passed, or refused by one (and when it
    would pass) -> approval requested -> decided (by whom, how, when) or expired/cancelled ->
    each step (before/after; dry-run marked) and notification -> verifying -> resolved (time to
    resolve) or verification failed -> the run's outcome

An incident's timeline merges its runs' timelines with the alerts no rule matched and the rules
skipped for its alerts, with the reason. Each entry says how long after the one before it came.
Audit kinds this version does not know are shown as they were recorded, never dropped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from receiver.alertmanager import parse_rfc3339
from receiver.approvals.messages import alert_links
from receiver.review.incidents import Incident
from receiver.review.model import Alert, Approval, AuditEntry, Run, Unacted
from receiver.review.notes import (
    PHASES,
    announced,
    guard_entry,
    matched_detail,
    notification,
    parse_time,
    resolved_early,
    run_note,
    service_note,
    service_span,
    unreadable_note,
    unshaped,
)
from receiver.review.outcomes import present
from receiver.review.text import at_text, duration_text, pretty, unreadable_text
from receiver.review.waits import fold_waits
from receiver.text import address

__all__ = [
    "Entry",
    "fired_at",
    "incident_timeline",
    "links_of",
    "run_timeline",
    "service_note",
]

_STEP_TONE = {
    "ok": "good",
    "failed": "bad",
    # A worker stopped while the step ran: it may have acted; someone must check.
    "interrupted": "bad",
    "refused": "warn",
    "undelivered": "warn",
    "rejected": "warn",
    "expired": "warn",
}
# Outcomes whose audit row adds nothing to the entries around it (admitted, approval asked).
_QUIET_OUTCOMES = frozenset({"pending", "running", "awaiting_approval"})


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of a timeline. ``kind`` names what happened (alert, matched, guard-pass,
    guard-refuse, approval-request, approval-decision, held, step, notify, verify,
    verify-failed, resolved, outcome, skipped, unmatched, unreadable, other); ``tone`` is good,
    bad, warn or neutral; ``before``/``after`` are pretty JSON ('' when not recorded);
    ``since_prev`` and ``since_start`` are durations as text, filled in by the timeline
    functions."""

    at: datetime
    kind: str
    title: str
    detail: str = ""
    run_id: str | None = None
    rule: str = ""
    target: str = ""
    before: str = ""
    after: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    links: tuple[tuple[str, str], ...] = ()
    dry_run: bool = False
    tone: str = "neutral"
    order: tuple[int, int] = (0, 0)
    since_prev: str = ""
    since_start: str = ""


def links_of(alert: Alert) -> tuple[tuple[str, str], ...]:
    """(label, URL) of the alert's own links; only http(s) URLs ever become links, each as
    ``address`` writes it: what does not print (a bidirectional override) percent-encoded, as
    a browser sends it, so the link opens the page the alert named."""
    context = {"generator_url": alert.generator_url, "annotations": dict(alert.annotations)}
    return tuple((label, address(url)) for label, url in alert_links(context))


def _labels(alert: Alert) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(k), str(v)) for k, v in alert.labels.items()))


def fired_at(alert: Alert, fallback: datetime) -> datetime:
    """When the alert began firing (its startsAt), else ``fallback``."""
    try:
        started = parse_rfc3339(alert.starts_at)
    except ValueError:
        return alert.received_at or fallback
    return started if started.year > 1 else (alert.received_at or fallback)


def _fired(run: Run) -> Entry:
    alert = run.alert
    received = f"received {at_text(alert.received_at)}" if alert.received_at else ""
    detail = "; ".join(p for p in (alert.summary, received, unreadable_text(alert.unreadable)) if p)
    return Entry(
        at=fired_at(alert, run.created_at),
        kind="alert",
        title=f"Alert {alert.alertname or '(no alertname)'} fired",
        detail=detail,
        run_id=run.id,
        rule=run.rule,
        target=run.target.key,
        labels=_labels(alert),
        links=links_of(alert),
    )


def _refusal(data: Mapping[str, Any]) -> tuple[str, str, str, str]:
    retry = data.get("retry_at")
    when = f"would pass at {at_text(parse_time(retry))}" if retry else "waiting will not help"
    reason = str(data.get("reason") or "")
    return "guard-refuse", f"Refused by the {data.get('guard')} guard", f"{reason}; {when}", "warn"


def _outcome(data: Mapping[str, Any]) -> tuple[str, str, str, str] | None:
    outcome = str(data.get("outcome") or "")
    if outcome in _QUIET_OUTCOMES:
        return None
    if outcome == "verifying":
        deadline = parse_time(data.get("verify_deadline"))
        detail = f"deadline {at_text(deadline)}" if deadline else ""
        return "verify", "Verifying: waiting for the alert to resolve", detail, "neutral"
    shown = present(outcome)
    return "outcome", f"Run {shown.words}", str(data.get("error") or ""), shown.tone


def _step(data: Mapping[str, Any]) -> tuple[str, str, str, str] | None:
    outcome, action = str(data.get("outcome") or ""), str(data.get("action") or "")
    number = int(data.get("idx") or 0) + 1
    phase = PHASES.get(str(data.get("phase") or "run"), f"{data.get('phase')} step")
    message = str(data.get("message") or "")
    if outcome == "pending":
        # Planned (no message), or held by a guard on the resolve path (says why).
        if not message:
            return None
        return "held", f"{phase.capitalize()} {number} ({action}) held", message, "warn"
    if outcome == "awaiting_approval":
        title = f"Step {number} ({action}) waits for an engineer's approval"
        return "held", title, message, "neutral"
    kind = "notify" if action == "notify" else "step"
    # A failed step whose request may have reached its system (the audit row says so).
    acted = " (may have acted)" if data.get("may_have_acted") else ""
    title = f"{phase.capitalize()} {number}: {action} {outcome}{acted}"
    return kind, title, message, _STEP_TONE.get(outcome, "neutral")


def _approval(kind: str, data: Mapping[str, Any], approval: Approval | None) -> Entry | None:
    """The entry of an approval.* row, without time, run or order (filled by the caller)."""
    step = int(data.get("step") or 0) + 1
    action = str(data.get("action") or "")
    state = kind.removeprefix("approval.")
    if state == "requested":
        expires = parse_time(data.get("expires_at"))
        summary = approval.summary if approval else ""
        detail = "; ".join(p for p in (summary, f"expires {at_text(expires)}") if p)
        return Entry(
            at=datetime.min,
            kind="approval-request",
            title=f"Approval requested for step {step} ({action})",
            detail=detail,
            before=pretty(approval.before) if approval else "",
            after=pretty(approval.after) if approval else "",
        )
    if state in ("approved", "rejected"):
        waited = ""
        if approval is not None and approval.waited_s is not None:
            waited = f"after {duration_text(approval.waited_s)}"
        reason = f"reason: {data['reason']}" if data.get("reason") else ""
        via = f" via {data['channel']}" if data.get("channel") else ""
        return Entry(
            at=datetime.min,
            kind="approval-decision",
            title=f"{state.capitalize()} by {data.get('by') or 'someone'}{via} (step {step})",
            detail="; ".join(p for p in (reason, waited) if p),
            tone="good" if state == "approved" else "warn",
        )
    if state == "refused":
        via = f" via {data['channel']}" if data.get("channel") else ""
        return Entry(
            at=datetime.min,
            kind="approval-decision",
            title=(
                f"{str(data.get('decision') or 'decision').capitalize()} by "
                f"{data.get('by') or 'someone'}{via} refused (step {step})"
            ),
            detail=str(data.get("why") or ""),
            tone="warn",
        )
    titles = {
        "expired": ("Approval expired: nobody decided in time", "warn"),
        "cancelled": ("Approval cancelled: the alert resolved first", "neutral"),
        "superseded": (
            "Approval superseded: the target changed since it was approved; asked again",
            "warn",
        ),
    }
    title, tone = titles.get(state, (f"Approval {state}", "neutral"))
    if state == "cancelled" and data.get("reason"):
        # Not by a resolution: the alert fired again (an undo withdrawn), or the follow-up it
        # belonged to stopped; the row says which.
        title = f"Approval cancelled: {data['reason']}"
    return Entry(
        at=datetime.min, kind="approval-decision", title=f"{title} (step {step})", tone=tone
    )


def _from_audit(run: Run, row: AuditEntry, approvals: Mapping[str, Approval]) -> Entry | None:
    data = row.data
    made: tuple[str, str, str, str] | None
    extra: dict[str, Any] = {}
    if row.unreadable is not None:
        made = ("unreadable", *unreadable_note(row))
    elif row.kind.startswith("approval."):
        approval = approvals.get(str(data.get("approval_id")))
        entry = _approval(row.kind, data, approval)
        if entry is None:
            return None
        return dataclasses.replace(
            entry, at=row.at, run_id=run.id, rule=run.rule, target=run.target.key, order=(1, row.id)
        )
    elif row.kind == "run.created":
        planned = [s.action for s in run.steps if s.phase == "run"]
        title = f"Rule {run.rule} matched: " + (", ".join(planned) or "no step") + " planned"
        made = ("matched", title, matched_detail(data), "neutral")
        extra["dry_run"] = bool(data.get("dry_run"))
    elif row.kind == "run.admitted":
        made = guard_entry(data)
    elif row.kind == "run.refused":
        made = _refusal(data)
    elif row.kind in ("run.closed", "run.outcome") and (early := resolved_early(data)):
        # Closed before its first step acted (its deadline job's outcome row, when the
        # resolution came while it ran): not the plain "resolved" nor "succeeded" entry.
        made = early
    elif row.kind == "run.outcome":
        made = _outcome(data)
    elif row.kind == "run.closed":
        resolved = parse_time(data.get("resolved_at"))
        ttr = data.get("time_to_resolve_s")
        detail = f"time to resolve {duration_text(float(ttr))}" if ttr is not None else ""
        made = ("resolved", f"Alert resolved at {at_text(resolved)}", detail, "good")
    elif row.kind == "run.verify_expired":
        deadline = parse_time(data.get("verify_deadline"))
        title = f"Verification failed: the alert did not resolve by {at_text(deadline)}"
        made = ("verify-failed", title, "", "bad")
    elif row.kind == "run.verification_failed":
        result = str(data.get("verify_result") or "").replace("_", " ")
        title = "Verification failed" + (f": {result}" if result else "")
        made = ("verify-failed", title, str(data.get("error") or ""), "bad")
    elif row.kind == "run.verified":
        settled = parse_time(data.get("settled_until"))
        detail = f"it stayed resolved until {at_text(settled)}" if settled else ""
        made = ("verify", "Verified: the alert resolved and stayed resolved", detail, "good")
    elif row.kind == "run.announced":
        made = announced(data)
    elif row.kind == "step":
        made = _step(data)
        if made is not None and made[0] in ("step", "notify"):
            extra.update(
                before=pretty(data.get("before")),
                after=pretty(data.get("after")),
                dry_run=data.get("outcome") == "dry_run",
            )
    elif row.kind.startswith("notification."):
        made = notification(row.kind, data)
    else:
        made = run_note(row.kind, data)
    if made is None:
        return None
    kind, title, detail, tone = made
    return Entry(
        at=row.at,
        kind=kind,
        title=title,
        detail=detail,
        run_id=run.id,
        rule=run.rule,
        target=run.target.key,
        tone=tone,
        order=(1, row.id),
        **extra,
    )


def _spaced(entries: list[Entry], start: datetime | None = None) -> list[Entry]:
    entries.sort(key=lambda e: (e.at, e.order))
    spaced: list[Entry] = []
    for i, entry in enumerate(entries):
        prev = entries[i - 1].at if i else None
        spaced.append(
            dataclasses.replace(
                entry,
                since_prev=f"+{duration_text((entry.at - prev).total_seconds())}" if prev else "",
                since_start=(
                    f"T+{duration_text((entry.at - start).total_seconds())}" if start else ""
                ),
            )
        )
    return spaced


def _entries(run: Run) -> list[Entry]:
    approvals = {a.id: a for a in run.approvals}
    entries = [_fired(run)]
    for row in fold_waits(run.audit):  # a step's wait for its system (and its retries' admissions)
        try:
            entry = _from_audit(run, row, approvals)
        except (TypeError, ValueError, AttributeError) as exc:
            # Read, but not of the types its kind writes (an edit): marked, not a 500.
            entry = _from_audit(run, unshaped(row, exc), approvals)
        if entry is not None:
            entries.append(entry)
    return entries


def run_timeline(run: Run) -> list[Entry]:
    """The run's timeline, oldest first (module docstring)."""
    return _spaced(_entries(run))


def _unacted(event: Unacted) -> Iterable[Entry]:
    alert = event.alert
    common: dict[str, Any] = {
        "at": event.received_at,
        "labels": _labels(alert),
        "links": links_of(alert),
        "order": (2, event.event_id),
    }
    name = alert.alertname or "(no alertname)"
    state = "" if event.status == "firing" else f" ({event.status})"
    if not event.skips:
        reason = event.reason or "no rule matches"
        title = f"Alert {name}{state} matched no rule"
        yield Entry(kind="unmatched", title=title, detail=reason, **common)
        return
    for rule, reason in event.skips:
        if rule:
            title = f"Rule {rule} skipped for alert {name}{state}"
            yield Entry(
                kind="skipped", title=title, detail=reason, rule=rule, tone="warn", **common
            )
        else:
            title = f"Alert {name}{state} not acted on"
            yield Entry(kind="unmatched", title=title, detail=reason, **common)


def incident_timeline(incident: Incident, runs: Sequence[Run] | None = None) -> list[Entry]:
    """Every run of ``incident`` on one timeline, with what was not done and what the service
    itself did meanwhile, oldest first."""
    entries: list[Entry] = []
    for run in runs if runs is not None else incident.runs:
        entries.extend(_entries(run))
    for event in incident.unacted:
        entries.extend(_unacted(event))
    for row in incident.service:
        title, detail, tone = service_note(row)
        # When it happened, not when its row was written (a pause recorded late, a digest).
        at = service_span(row)[0]
        entries.append(
            Entry(at=at, kind="service", title=title, detail=detail, tone=tone, order=(3, row.id))
        )
    for cut in incident.service_cut:
        entries.append(
            Entry(
                at=incident.started_at,
                kind="service",
                title="Not every move of the service is shown",
                detail=cut,
                tone="warn",
                order=(3, 0),
            )
        )
    start = min([incident.started_at, *(e.at for e in entries)])
    return _spaced(entries, start)
