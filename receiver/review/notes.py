"""What the audit rows that are not a run's own progress say, in words: notifications and
announcements of a run, an operator's retry or drop of its jobs and what that drop left
undone, and what the service itself did (a pause, a rules reload, a start).

Pure: an audit row's kind and data in, (title, detail, tone) out. A kind or a field this
version does not know is shown as it was recorded.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from receiver.review.model import AuditEntry
from receiver.review.text import at_text
from receiver.review.waits import DEFERRED_KIND, RETRIED, WAIT

__all__ = [
    "DIGEST_KIND",
    "PHASES",
    "announced",
    "guard_entry",
    "matched_detail",
    "notification",
    "parse_time",
    "resolved_early",
    "run_note",
    "service_note",
    "service_span",
    "unreadable_note",
    "unshaped",
]

# The audit kind of a refusal digest (``receiver.store.DIGEST_AUDIT``).
DIGEST_KIND = "announcements.digest"
# How a step of each phase is named: a run's own, its on_resolved follow-up, its escalation.
PHASES = {"run": "step", "resolve": "on_resolved step", "on_failed": "on_failed step"}


def parse_time(text: Any) -> datetime | None:
    """An ISO 8601 time as the audit data holds it; None when it is none."""
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        return None


def notification(kind: str, data: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """(kind, title, detail, tone) of a ``notification.*`` row (an approval's notice)."""
    sent = kind.endswith(".sent")
    what = str(data.get("notice") or data.get("event") or "notice")
    channel = str(data.get("channel") or "")
    title = f"Notification {'sent' if sent else 'not delivered'}: {what}"
    if channel:
        title += f" to {channel}"
    return "notify", title, str(data.get("error") or ""), "neutral" if sent else "warn"


def matched_detail(data: Mapping[str, Any]) -> str:
    """The detail of a ``run.created`` row's entry: its occurrence, for a rule whose steps wait
    for a repetition or a condition (its ``decision``; other rules plan the same steps each
    time): "occurrence N of this rule and target in its window", or "N or later" where counting
    stopped at the rule's highest ``repeated.times`` (``receiver.repetitions``, the decision's
    ``occurrence_capped``); and that a dry run changes nothing. Empty when neither applies."""
    said = []
    decision, count = data.get("decision"), data.get("occurrence")
    if isinstance(decision, Mapping) and type(count) is int:
        later = " or later" if decision.get("occurrence_capped") else ""
        said.append(f"occurrence {count}{later} of this rule and target in its window")
    if data.get("dry_run"):
        said.append("dry-run: nothing will be changed")
    return "; ".join(said)


def announced(data: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """(kind, title, detail, tone) of a ``run.announced`` row (a run announced to a channel,
    or its refusal folded into a refusal digest: not sent on its own, on purpose)."""
    if data.get("digest"):
        title = f"Announcement folded into the refusal digest: {data.get('event') or ''}"
        if data.get("channel"):
            title += f" to {data['channel']}"
        return "notify", title, str(data.get("detail") or ""), "neutral"
    delivered = bool(data.get("delivered"))
    title = f"Announcement {'sent' if delivered else 'not delivered'}: {data.get('event') or ''}"
    if data.get("channel"):
        title += f" to {data['channel']}"
    return "notify", title, str(data.get("detail") or ""), "neutral" if delivered else "warn"


def run_note(kind: str, data: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """(kind, title, detail, tone) of a run's audit row that the timeline does not word
    itself: an operator's retry or drop of one of the run's jobs (``job.retry``,
    ``job.drop``: receiver/store/queues.py), what a dropped escalation's job left undone
    (``run.escalation_dropped``: store/job_ends.py), a step's first wait for a system it
    could not reach (``step.deferred``: pipeline/unreachable.py); any other kind as it was
    recorded (compact JSON)."""
    if kind in ("job.drop", "job.retry"):
        by, reason = str(data.get("by") or "someone"), data.get("reason")
        done = "dropped" if kind == "job.drop" else "retried"
        title = f"Job {data.get('job_id', '')} ({data.get('job') or 'job'}) {done} by {by}"
        title += f": {reason}" if reason else ""
        detail = (
            f"it was {data.get('was') or '?'} after {data.get('attempts', 0)} attempts, "
            f"{data.get('failures', 0)} failed"
        )
        if data.get("last_error"):
            detail += f"; last error: {data['last_error']}"
        return "operator", title, detail, "warn" if kind == "job.drop" else "neutral"
    if kind == "run.escalation_dropped":
        title = f"Escalation not taken up: {data.get('why') or 'its job was dropped'}"
        return "escalation", title, f"not done: {data.get('not_done') or ''}", "warn"
    if kind == DEFERRED_KIND:
        return _waits(data)
    compact = json.dumps(dict(data), sort_keys=True, ensure_ascii=False, default=str)
    return "other", kind, compact, "neutral"


def guard_entry(data: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """(kind, title, detail, tone) of a ``run.admitted`` row: the guards that passed; for the
    retries of a step's wait folded into one (``waits.RETRIED``), how many and the last."""
    guards = ", ".join(str(g) for g in data.get("guards") or []) or "none applied"
    phase = str(data.get("phase") or "run")
    which = f" ({PHASES[phase]}s)" if phase != "run" and phase in PHASES else ""
    title = f"Guards passed{which}: {guards}"
    retried = data.get(RETRIED)
    if isinstance(retried, Mapping):
        step = f"{PHASES.get(str(retried['phase']), 'step')} {int(retried['idx']) + 1}"
        tries = retried["tries"]
        title += (
            f", again for each retry of {step} waiting for its system: tried {tries} "
            f"{'time' if tries == 1 else 'times'}, the last at {at_text(retried['last'])}"
        )
    return "guard-pass", title, "", "good"


def _waits(data: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """(kind, title, detail, tone) of a step's wait for its system: its ``step.deferred``
    rows, folded into one by ``waits.fold_waits`` (``WAIT``: how many tries since when, the
    last row's message); a row not folded reads as the wait's first."""
    phase = PHASES.get(str(data.get("phase") or "run"), f"{data.get('phase')} step")
    number = int(data.get("idx") or 0) + 1
    title = f"{phase.capitalize()} {number} ({data.get('action') or '?'}) waits for its system"
    detail = str(data.get("message") or "")
    wait = data.get(WAIT)
    if isinstance(wait, Mapping) and wait["deferrals"] > 1:
        title += f": {wait['tries']} tries since {at_text(wait['since'])}"
        title += f", the last at {at_text(wait['last'])}"
    if isinstance(wait, Mapping) and wait["marks"]:
        detail += f"; the start marks of these tries ({wait['marks']}) were cleared: none acted"
    return "held", title, detail, "warn"


def _late(data: Mapping[str, Any]) -> str:
    """When a record written after the store came back happened (its row's time is when it was
    written: receiver/audit_outbox.py); '' for one written on time."""
    if not data.get("recorded_late"):
        return ""
    return f"happened at {at_text(parse_time(data.get('occurred_at')))}, recorded late"


def _aware(value: datetime | None) -> datetime | None:
    # A time written without an offset is not one this service writes: not placed by it.
    return value if value is not None and value.tzinfo is not None else None


def service_span(row: AuditEntry) -> tuple[datetime, datetime]:
    """When a service row's subject happened, as (from, to), by which it is placed in an
    incident and on its timeline: for a row recorded late (a pause or resume written once the
    store was back), its ``occurred_at``; for a refusal digest, the window it counts
    (``start`` to ``end``); else when it was written (``at``). A time that cannot be read
    falls back to ``at``."""
    data = row.data
    if data.get("recorded_late"):
        occurred = _aware(parse_time(data.get("occurred_at")))
        if occurred is not None:
            return occurred, occurred
    if row.kind == DIGEST_KIND:
        start = _aware(parse_time(data.get("start")))
        end = _aware(parse_time(data.get("end")))
        if start is not None and end is not None and start <= end:
            return start, end
    return row.at, row.at


def unreadable_note(row: AuditEntry) -> tuple[str, str, str]:
    """(title, detail, tone) of an audit row whose data cannot be read (``row.unreadable``).
    Only an edit of the table writes such data: the row is marked as edited, and what it said
    is not guessed."""
    kind = row.kind if row.folded_into is None else f"{row.kind}, folded into its run.created"
    title = f"Audit entry {row.id} ({kind}) cannot be read: it was edited after it was written"
    detail = f"{row.unreadable}; remediator audit verify names the first entry changed"
    return title, detail, "bad"


def unshaped(row: AuditEntry, exc: Exception) -> AuditEntry:
    """``row`` marked unreadable for data that reads, but not of the types its kind writes
    (``exc``: what reading a field raised, e.g. a list where a mapping was written)."""
    why = f"its data is not as {row.kind} writes it: {type(exc).__name__}"
    return dataclasses.replace(row, data={}, unreadable=why)


def service_note(row: AuditEntry) -> tuple[str, str, str]:
    """(title, detail, tone) of something the service itself did: a pause, a rules reload, a
    start or a stop; ``unreadable_note`` for a row whose data cannot be read, or is not of the
    types its kind writes (``unshaped``)."""
    if row.unreadable is not None:
        return unreadable_note(row)
    try:
        return _service_note(row)
    except (TypeError, ValueError, AttributeError) as exc:
        return unreadable_note(unshaped(row, exc))


def _service_note(row: AuditEntry) -> tuple[str, str, str]:
    data = row.data
    by = str(data.get("by") or "someone")
    if row.kind == "guards.pause":
        until = parse_time(data.get("until"))
        detail = f"until {at_text(until)}" if until else "until resumed"
        detail = "; ".join(filter(None, (detail, _late(data))))
        return f"Remediation paused by {by}: {data.get('reason') or ''}", detail, "warn"
    if row.kind == "guards.resume":
        return f"Remediation resumed by {by}", _late(data), "neutral"
    if row.kind == "rules.reloaded":
        names = ", ".join(str(n) for n in data.get("names") or [])
        digest = str(data.get("digest") or "")[:12]
        return f"Rules reloaded: {data.get('count', 0)} rules", f"{digest}: {names}", "neutral"
    if row.kind == "rules.reload_failed":
        errors = [str(e) for e in data.get("errors") or []]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        detail = (errors[0] if errors else "") + more
        return "Rules reload failed: the last good rules stay", detail, "warn"
    if row.kind == "service.started":
        # The mode in words (``startup.mode_text``): ``dry_run`` alone is false on a service
        # that runs every step dry for want of a system. Older rows have only the flag.
        forced = "dry-run everywhere" if data.get("dry_run") else "live where configured"
        mode = str(data.get("mode") or forced)
        detail = f"{data.get('host', '')} ({data.get('worker', '')}), {mode}"
        return "Service started", detail, "neutral"
    if row.kind == "service.stopped":
        return "Service stopped", str(data.get("worker") or ""), "neutral"
    if row.kind == DIGEST_KIND:
        delivered = bool(data.get("delivered"))
        title = (
            f"Refusal digest {'sent' if delivered else 'not delivered'} to "
            f"{data.get('channel') or ''}: {data.get('refused', 0)} more refusals of "
            f"{data.get('rule') or ''}"
        )
        by_guard = data.get("by_guard") or {}
        counts = ", ".join(f"{guard} {n}" for guard, n in sorted(by_guard.items()))
        detail = (
            f"{counts}; {data.get('targets', 0)} targets; {data.get('start', '')} to "
            f"{data.get('end', '')}; {data.get('detail') or ''}"
        )
        return title, detail, "neutral" if delivered else "warn"
    compact = json.dumps(dict(data), sort_keys=True, ensure_ascii=False, default=str)
    return row.kind, compact, "neutral"


def resolved_early(data: Mapping[str, Any]) -> tuple[str, str, str, str] | None:
    """The entry of a ``run.closed`` row (or, decided at the run's deadline, ``run.outcome``)
    that ended a run ``resolved_before_action``: when its alert resolved and when its first
    step acted, its error saying so in full; None for any other row's data."""
    if data.get("verify_result") != "resolved_before_action":
        return None
    resolved = parse_time(data.get("resolved_at"))
    acted = parse_time(data.get("first_step_acted_at"))
    title = (
        f"Alert resolved at {at_text(resolved)}, before the first step acted at "
        f"{at_text(acted)}: not credited to the rule"
    )
    return "resolved", title, str(data.get("error") or ""), "neutral"
