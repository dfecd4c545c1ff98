"""A step's wait for its system, read as one entry of its run's timeline (``fold_waits``).

A step whose action could not reach its system waits for it, its event or job retried
(receiver/pipeline/unreachable.py). Its first deferral is audited (``step.deferred``) and the
retries update the step's own row only, except for a step marked ``started`` before it acts
(``Action.replay_safe`` False: the PostgreSQL signals, the Redis requeue, ``http.call``): each
of its tries writes its mark's ``step`` row (``started``) and a ``step.deferred`` row saying
that the try did not act. An outage of minutes then showed a dozen "Step 1: http.call started"
and "Step 1 (http.call) waits for its system" entries for one step, one pair per retry.

``fold_waits`` reads a run's audit rows as the timeline should show them: each wait, the
consecutive deferrals of one step, is one ``step.deferred`` row saying how many tries since
when (``WAIT``), and its tries' start marks are left out, since it says they did not act. What
ends the wait (the step's end, or another row of that step) is shown after it as ever. Pure:
the rows in, the rows to show out; nothing stored changes.

Each retry is a new pass of the run, admitted by its guards, and each admission writes its
``run.admitted`` row (the target lock's fence and token of that pass: the audit log keeps them
all). The timeline showed "Guards passed" once per retry. A wait's retries' admissions are now
one entry too: the first admission after the wait began, its data gaining ``RETRIED`` (how
many, the last one's time, the step); the admission before the wait stays as it was.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from receiver.review.model import AuditEntry

__all__ = ["ADMITTED_KIND", "DEFERRED_KIND", "RETRIED", "WAIT", "fold_waits"]

# The audit kind of a step's wait for a system it could not reach
# (``receiver.store.DEFERRED_AUDIT``, receiver/pipeline/unreachable.py).
DEFERRED_KIND = "step.deferred"
# The key a folded wait's row gains in its data: ``{"deferrals": n, "tries": n, "since":
# datetime, "last": datetime, "marks": n}`` (its deferral rows, the step's tries as the last one
# counted them, the first's and the last one's times, the start marks left out).
WAIT = "wait"
# The outcome of a step's start mark (``receiver.store.steps.STARTED``).
_STARTED = "started"
# The audit kind of a pass's admission by its guards, and of its refusal.
ADMITTED_KIND = "run.admitted"
_REFUSED = "run.refused"
# The key a folded admission's row gains in its data: ``{"tries": n, "last": datetime,
# "phase": str, "idx": int}`` (the wait's retries admitted, the last one's time, the step).
RETRIED = "retried"


def _step_of(row: AuditEntry) -> tuple[str, int] | None:
    """(phase, index) of the step a ``step`` or ``step.deferred`` row is about; None for any
    other row, and for one whose data cannot be read or does not name a step."""
    if row.unreadable is not None or row.kind not in ("step", DEFERRED_KIND):
        return None
    idx = row.data.get("idx")
    if type(idx) is not int:
        return None
    return str(row.data.get("phase") or "run"), idx


def fold_waits(rows: Sequence[AuditEntry]) -> list[AuditEntry]:
    """``rows`` (a run's audit trail, oldest first) with each wait of a step folded into its
    first ``step.deferred`` row.

    A wait: the ``step.deferred`` rows of one step (phase and index) with no row of that step
    between them but its tries' start marks (``step`` rows whose outcome is ``started``). Its
    first row stays where it was, its data gaining ``WAIT`` and its ``message`` the last
    row's (the latest error, and the count); the later ones are left out, and so are the start
    marks of its tries (a ``started`` row of the step followed by one of the wait's deferrals,
    nothing of that step between). A mark not followed by a deferral (the try that acted, or
    was cut off) stays, and so does any other row; a row that cannot be read breaks no wait.
    A wait of one deferral (a step not marked: its retries write no row) gains ``WAIT`` too,
    with one deferral. The ``run.admitted`` rows of a wait's retries are folded the same way
    (``_fold_admissions``)."""
    shown: list[AuditEntry | None] = list(rows)
    # Per step: the index in ``shown`` of its wait's first row, and of its last start mark not
    # yet followed by anything of the step.
    heads: dict[tuple[str, int], int] = {}
    marks: dict[tuple[str, int], int] = {}
    for i, row in enumerate(rows):
        step = _step_of(row)
        if step is None:
            continue
        if row.kind == "step" and row.data.get("outcome") == _STARTED:
            marks[step] = i
            continue
        if row.kind != DEFERRED_KIND:
            # The step's end, or another state of it: what comes next is a new wait.
            heads.pop(step, None)
            marks.pop(step, None)
            continue
        mark = marks.pop(step, None)
        if mark is not None:
            shown[mark] = None
        head = heads.get(step)
        if head is None:
            heads[step] = i
            shown[i] = _begun(row, marked=mark is not None)
            continue
        first = shown[head]
        assert first is not None
        shown[head] = _joined(first, row, marked=mark is not None)
        shown[i] = None
    return _fold_admissions([row for row in shown if row is not None])


def _fold_admissions(rows: list[AuditEntry]) -> list[AuditEntry]:
    """``rows`` with the ``run.admitted`` rows of each wait's retries folded into the first of
    them, which gains ``RETRIED``. A wait opens at a step's deferral and its phase's
    admissions are its retries until the step's end (or another row of it: held for an
    approval). A refusal of that phase between them (a guard held the run) is shown between
    them: the admissions after it begin a new entry, as does an admission asking other guards
    than the entry's. The admission before the wait (its first try's) stays as it was."""
    shown: list[AuditEntry | None] = list(rows)
    # Per phase: the waiting step, and the index of its retries' entry (None before one).
    waiting: dict[str, tuple[tuple[str, int], int | None]] = {}
    for i, row in enumerate(rows):
        if row.unreadable is not None:
            continue
        phase = str(row.data.get("phase") or "run")
        if row.kind == _REFUSED and phase in waiting:
            waiting[phase] = (waiting[phase][0], None)
        elif row.kind == ADMITTED_KIND and phase in waiting:
            step, head = waiting[phase]
            first = shown[head] if head is not None else None
            if first is None or first.data.get("guards") != row.data.get("guards"):
                waiting[phase] = (step, i)
                shown[i] = _retried(row, row, step)
            else:
                assert head is not None
                shown[head] = _retried(first, row, step)
                shown[i] = None
        elif (about := _step_of(row)) is not None:
            if row.kind == DEFERRED_KIND:
                waiting.setdefault(about[0], (about, None))
            elif row.data.get("outcome") != _STARTED and about in (w[0] for w in waiting.values()):
                del waiting[about[0]]  # the step's end, or another state of it
    return [row for row in shown if row is not None]


def _retried(head: AuditEntry, row: AuditEntry, step: tuple[str, int]) -> AuditEntry:
    """The retries' admission entry ``head`` with the admission ``row`` counted in (``row``
    is ``head`` itself for the first)."""
    before = head.data.get(RETRIED)
    tries = before["tries"] + 1 if isinstance(before, Mapping) else 1
    retried = {"tries": tries, "last": row.at, "phase": step[0], "idx": step[1]}
    return dataclasses.replace(head, data={**head.data, RETRIED: retried})


def _tries(data: Mapping[str, Any], fallback: int) -> int:
    """The step's tries as a deferral row counted them (``tries``), else ``fallback``."""
    tries = data.get("tries")
    return tries if type(tries) is int and tries > 0 else fallback


def _begun(row: AuditEntry, *, marked: bool) -> AuditEntry:
    """The first row of a wait, ``WAIT`` added (``marked``: its try's start mark left out)."""
    wait = {
        "deferrals": 1,
        "tries": _tries(row.data, 1),
        "since": row.at,
        "last": row.at,
        "marks": int(marked),
    }
    return dataclasses.replace(row, data={**row.data, WAIT: wait})


def _joined(head: AuditEntry, row: AuditEntry, *, marked: bool) -> AuditEntry:
    """The wait's first row ``head`` with the later deferral ``row`` folded in."""
    wait: dict[str, Any] = dict(head.data[WAIT])
    wait["deferrals"] += 1
    wait["tries"] = max(wait["tries"] + 1, _tries(row.data, 0))
    wait["last"] = row.at
    wait["marks"] += int(marked)
    data = {**head.data, WAIT: wait, "message": row.data.get("message", head.data.get("message"))}
    return dataclasses.replace(head, data=data)
