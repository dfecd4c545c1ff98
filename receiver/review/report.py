"""The review report as data: per incident, the alerts, actions, approvals, refusals, what was
not done and the outcomes with times to resolve; then effectiveness per rule.

``build_report`` returns plain JSON-ready data (``GET /api/v1/report``, ``remediator report
--format json``); ``receiver.review.markdown`` writes the same data for a postmortem. Times are
RFC 3339 in UTC, durations seconds. The shape is versioned (``version``); fields are only ever
added to it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from receiver.review.incidents import Incident
from receiver.review.model import Run, Step, Unacted
from receiver.review.notes import service_note, service_span
from receiver.review.outcomes import CATEGORIES, approval_bucket, category
from receiver.review.stats import effectiveness, ttr_summary
from receiver.review.text import iso

__all__ = ["ALERT_STATUSES", "REPORT_VERSION", "build_report", "incident_report"]

REPORT_VERSION = 1

# Step outcomes that are not an action taken: planned, held, ended by an approval that did
# not come (listed with the approvals), never run because the run ended first (its refusal or
# failure says why), or refused by the action's precondition (a refusal).
_NOT_ACTIONS = frozenset(
    {"pending", "awaiting_approval", "rejected", "expired", "cancelled", "not_run"}
)


def _run(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "rule": run.rule,
        "target": run.target.key,
        "alertname": run.alert.alertname,
        "fingerprint": run.alert.fingerprint,
        "outcome": run.outcome,
        "category": category(run.outcome, run.verify_result),
        "dry_run": run.dry_run,
        "created_at": iso(run.created_at),
        "finished_at": iso(run.finished_at),
        "resolved_at": iso(run.resolved_at),
        "time_to_resolve_s": run.time_to_resolve_s,
        "verify_result": run.verify_result,
        "error": run.error,
    }


def _action(run: Run, step: Step) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "rule": run.rule,
        "target": run.target.key,
        "phase": step.phase,
        "step": step.idx + 1,
        "action": step.action,
        "outcome": step.outcome,
        "dry_run": step.outcome == "dry_run",
        "at": iso(step.finished_at or step.started_at),
        "message": step.message,
        "before": step.before,
        "after": step.after,
        # A failed step whose request may have reached its system: check the target by hand.
        "may_have_acted": step.may_have_acted,
    }


def _approvals(run: Run) -> Iterable[dict[str, Any]]:
    for a in run.approvals:
        yield {
            "run_id": run.id,
            "rule": run.rule,
            "target": run.target.key,
            "approval_id": a.id,
            "step": a.step_idx + 1,
            "action": a.action,
            "risk": a.risk,
            "state": a.state,
            "decision": approval_bucket(a.state),
            "requested_at": iso(a.requested_at),
            "expires_at": iso(a.expires_at),
            "decided_at": iso(a.decided_at),
            "decided_by": a.decided_by,
            "channel": a.channel,
            "reason": a.reason,
            "waited_s": a.waited_s,
        }


def _refusals(run: Run) -> Iterable[dict[str, Any]]:
    common = {"run_id": run.id, "rule": run.rule, "target": run.target.key}
    if run.refusal_guard:
        yield {
            **common,
            "guard": run.refusal_guard,
            "action": None,
            "reason": run.refusal_reason or "",
            "at": iso(run.finished_at or run.created_at),
            "retry_at": iso(run.retry_at),
        }
    for step in run.steps:
        if step.outcome == "refused":
            yield {
                **common,
                "guard": "precondition",
                "action": step.action,
                "reason": step.message,
                "at": iso(step.finished_at or step.started_at),
                "retry_at": None,
            }


def _not_done(event: Unacted) -> Iterable[dict[str, Any]]:
    alert = event.alert
    common = {
        "alertname": alert.alertname,
        "fingerprint": alert.fingerprint,
        "labels": dict(alert.labels),
        "status": event.status,
        "at": iso(event.received_at),
    }
    if not event.skips:
        yield {
            **common,
            "kind": "unmatched",
            "rule": None,
            "reason": event.reason or "no rule matches",
        }
        return
    for rule, reason in event.skips:
        kind = "skipped" if rule else "unmatched"
        yield {**common, "kind": kind, "rule": rule or None, "reason": reason}


# What became of an alert (its row's ``status``), from its runs' outcomes, most significant
# first: a row with several runs (several rules) says the first of these any run reached, and
# lists each run's own in ``runs``. Something changed (or tried to change) on a system comes
# first, then what is still open, then what stopped the automation before it acted.
#   acted              a step ran an action: the run verified, succeeded, or failed or was
#                      refused by a precondition after a step had acted (or may have: a
#                      step a worker stopped in, ``interrupted``)
#   notified           the run succeeded and its steps were all notify: it told people
#   in_progress        pending, running or verifying without a step that acted yet
#   awaiting_approval  a step waits for an engineer
#   dry_run            the automation would have acted; nothing was changed (dry-run mode)
#   failed             failed before any step acted
#   refused            a guard or a step's precondition said no (``refused_by`` names it)
#   rejected, expired, cancelled   the approval, or the turn, that did not come (cancelled:
#                      the alert resolved first, or an operator dropped the job it waited on)
#   other              an outcome this version does not know
# An alert no run was created for reads ``skipped`` (a rule matched and was skipped) or
# ``unmatched``.
ALERT_STATUSES = (
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
)

# Step outcomes of an action that ran on a system: it changed it, found nothing to change, or
# tried and failed, or a worker stopped while it ran (started, interrupted: it may have
# acted). A notify step tells people and changes nothing (as record.py's dry-run rule has it);
# dry_run and refused steps changed nothing.
_TRIED = frozenset({"ok", "noop", "failed", "simulated", "started", "interrupted"})
_NOTIFY = "notify"


def _run_status(run: Run) -> tuple[str, str | None]:
    """(status, refused_by) of one run for its alert's row: status one of ``ALERT_STATUSES``,
    refused_by the guard (or ``precondition``) when refused, else None."""
    found = category(run.outcome, run.verify_result)
    if found == "dry_run":
        # Decided when the run was recorded: its steps ran dry (a notify sent is not more).
        return "dry_run", None
    tried = any(s.outcome in _TRIED and s.action != _NOTIFY for s in run.steps)
    if tried:
        return "acted", None
    if found in ("verified", "succeeded", "resolved_before_action"):
        # Ended well with no action run on a system: a run of notify steps only told people.
        told = bool(run.steps) and all(s.action == _NOTIFY for s in run.steps)
        return ("notified" if told else "acted"), None
    if found == "refused":
        refused = any(s.outcome == "refused" for s in run.steps)
        return "refused", run.refusal_guard or ("precondition" if refused else None)
    if run.outcome == "awaiting_approval":
        return "awaiting_approval", None
    return found, None


def _alerts(incident: Incident) -> list[dict[str, Any]]:
    """One row per alert occurrence (fingerprint, startsAt, refire), whatever became of it
    (``ALERT_STATUSES``)."""
    # An alert that fired, resolved and fired again with the same startsAt is two occurrences:
    # one row each, the re-fire marked (``refire``), each with its own runs and resolution.
    # Keyed on the episode alone, the second run's outcome hid under the first's, and the row
    # took the first occurrence's resolution: a recurring alert read as fixed.
    found: dict[tuple[str, str, int], dict[str, Any]] = {}
    for run in incident.runs:
        a = run.alert
        row = found.setdefault((a.fingerprint, a.starts_at, a.refire), _alert_row(a, "other"))
        status, guard = _run_status(run)
        row["runs"].append(
            {"run_id": run.id, "rule": run.rule, "status": status, "refused_by": guard}
        )
        row["rules"] = sorted({*row["rules"], run.rule})
        if run.resolved_at is not None:
            row["resolved_at"] = iso(max([run.resolved_at, *_times(row["resolved_at"])]))
    for row in found.values():
        row["runs"].sort(key=lambda r: ALERT_STATUSES.index(r["status"]))
        row["status"], row["refused_by"] = row["runs"][0]["status"], row["runs"][0]["refused_by"]
    for event in incident.unacted:
        if event.status != "firing":
            continue
        a = event.alert
        row = found.setdefault(
            (a.fingerprint, a.starts_at, a.refire),
            _alert_row(a, "skipped" if event.matched else "unmatched"),
        )
        if not row["runs"] and event.matched:
            row["status"] = "skipped"
    return sorted(
        found.values(), key=lambda r: (r["received_at"] or "", r["fingerprint"], r["refire"])
    )


def _times(text: str | None) -> list[datetime]:
    return [datetime.fromisoformat(text)] if text else []


def _alert_row(alert: Any, status: str) -> dict[str, Any]:
    return {
        "alertname": alert.alertname,
        "fingerprint": alert.fingerprint,
        "labels": dict(alert.labels),
        "summary": alert.summary,
        "starts_at": alert.starts_at,
        "refire": alert.refire,
        "received_at": iso(alert.received_at),
        "resolved_at": None,
        "status": status,
        "refused_by": None,
        "rules": [],
        "runs": [],
    }


def _summary(incident: Incident, outcomes: Counter[str], not_done: list[dict[str, Any]]) -> str:
    runs = len(incident.runs)
    targets = len({r.target.key for r in incident.runs})
    parts = [f"{n} {c.replace('_', '-')}" for c in CATEGORIES if (n := outcomes[c])]
    text = f"{runs} run{'s' if runs != 1 else ''} on {targets} target{'s' if targets != 1 else ''}"
    if parts:
        text += ": " + ", ".join(parts)
    skipped = sum(1 for n in not_done if n["kind"] == "skipped")
    unmatched = sum(1 for n in not_done if n["kind"] == "unmatched")
    if skipped:
        text += f"; {skipped} rule skip{'s' if skipped != 1 else ''}"
    if unmatched:
        text += f"; {unmatched} alert{'s' if unmatched != 1 else ''} matched no rule"
    return text


def incident_report(incident: Incident) -> dict[str, Any]:
    """One incident of the report (module docstring)."""
    runs = incident.runs
    outcomes = Counter(category(r.outcome, r.verify_result) for r in runs)
    not_done = [item for event in incident.unacted for item in _not_done(event)]
    return {
        "id": incident.id,
        "key": incident.key,
        "by_window": incident.window,
        "alertnames": incident.alertnames,
        "started_at": iso(incident.started_at),
        "ended_at": iso(incident.ended_at),
        "duration_s": incident.duration_s,
        "summary": _summary(incident, outcomes, not_done),
        "outcomes": {c: outcomes[c] for c in CATEGORIES if outcomes[c]},
        "time_to_resolve": ttr_summary(runs),
        "alerts": _alerts(incident),
        "runs": [_run(r) for r in runs],
        "actions": [
            _action(r, s)
            for r in runs
            for s in r.steps
            if s.outcome not in _NOT_ACTIONS and s.outcome != "refused"
        ],
        "approvals": [a for r in runs for a in _approvals(r)],
        "refusals": [x for r in runs for x in _refusals(r)],
        "not_done": not_done,
        # When each happened (``service_span``: a pause recorded late at its occurred_at, a
        # digest at its window's start); ``recorded_at``, when its row was written.
        "service": [
            {
                "at": iso(service_span(row)[0]),
                "recorded_at": iso(row.at),
                "kind": row.kind,
                "title": title,
                "detail": detail,
            }
            for row in incident.service
            for title, detail, _ in [service_note(row)]
        ],
        "service_cut": list(incident.service_cut),
        # Rows of its runs whose data cannot be read (only an edit of the table writes such
        # data; a service row's is said in ``service``): shown, not skipped, nor a failure.
        "unreadable_audit": [
            {"id": a.id, "at": iso(a.at), "kind": a.kind, "run_id": r.id, "why": a.unreadable}
            for r in runs
            for a in r.audit
            if a.unreadable is not None
        ],
        "unreadable_fields": _unreadable_fields(incident),
    }


def _unreadable_fields(incident: Incident) -> list[dict[str, Any]]:
    """The recorded fields of its runs and events that cannot be read (only an edit of the
    table writes such a value; the field is then empty where shown): ``run_id`` or
    ``event_id``, ``of`` (run, alert, 'run step N', 'resolve step N', 'approval ID'),
    ``field`` and ``why``."""
    found: list[tuple[str | None, int | None, str, Mapping[str, str]]] = []
    for run in incident.runs:
        found.append((run.id, None, "run", run.unreadable))
        found.append((run.id, None, "alert", run.alert.unreadable))
        found += [(run.id, None, f"{s.phase} step {s.idx + 1}", s.unreadable) for s in run.steps]
        found += [(run.id, None, f"approval {a.id}", a.unreadable) for a in run.approvals]
    found += [
        (None, e.event_id, "alert", {**e.alert.unreadable, **e.unreadable})
        for e in incident.unacted
    ]
    return [
        {"run_id": run_id, "event_id": event_id, "of": of, "field": name, "why": why}
        for run_id, event_id, of, fields in found
        for name, why in sorted(fields.items())
    ]


def build_report(
    incidents: Sequence[Incident],
    window_runs: Iterable[Run],
    *,
    start: datetime,
    end: datetime,
    gap_s: float | None,
    generated_at: datetime,
) -> dict[str, Any]:
    """The whole report: ``incidents`` in full, and effectiveness over ``window_runs`` (the
    runs created in [start, end)); ``gap_s`` None when the window itself is the incident."""
    return {
        "version": REPORT_VERSION,
        "generated_at": iso(generated_at),
        "window": {
            "from": iso(start),
            "to": iso(end),
            "group_by": "window" if gap_s is None else "gap",
            "gap_s": gap_s,
        },
        "incidents": [incident_report(i) for i in incidents],
        "effectiveness": [row.as_dict() for row in effectiveness(window_runs)],
    }
