"""Earlier episodes of an alert whose resolution never came. Pure.

Alertmanager can lose the resolution of an episode: its ``provider/mem`` ``Put`` replaces a
resolved alert by a new firing of the same labels (a new ``startsAt``) before the next flush,
so the resolution is never sent; a silence or an inhibition mutes it; a receiver down past its
retries misses it. The next thing remediator hears of the alert is then a firing (or a
resolution) of a **later** episode: same fingerprint, later ``startsAt``. While an alert stays
active Alertmanager keeps its earliest start (``types.Alert.Merge``), so a later ``startsAt``
proves that the earlier episode ended, at or before that time.

So when an event of a later episode arrives (``History.other_runs`` holds the alert's runs of
other episodes still open, or closed with their undo deferred):

- a **firing**: each open run of an earlier episode is closed as resolved at the new
  ``startsAt`` (the latest its episode can have ended; its verification decided on that, the
  record saying it was inferred from the new episode), and its on_resolved steps are
  **deferred** (``undo_deferred``): the alert fires again, and taking the change back now
  would remove capacity while the condition is back (with the new run maybe refused by a
  cooldown). A run whose rule has a settle period, whose episode began less than that period
  before the new one, has recurred (its episode ended after it began, so the new firing is
  certainly within the settle period of its end);
- a **resolution**: the open runs of earlier episodes are closed the same way and their
  on_resolved steps run now, and the deferred undos of closed runs are **carried** out now,
  newest run first (the order the restores of overlapping runs expect, kubernetes.scale);
- a **firing** of a later occurrence (a later episode, or a re-fire of the same one) while an
  on_resolved step of a closed run waits for its approval (``PriorRun.undo_held``) withdraws
  that undo (``ResolvePlan.withdraw``): approved later, it would take the change back while
  the alert fires again, and the new run, planned with the change still in place, changed
  nothing and has no undo of its own. Its approval is cancelled and the undo deferred, so the
  next resolution carries it as any deferred undo (and asks for its approval again); a
  resolution leaves a held undo alone (its approval is what it waits for);
- **any** undo step that no worker has started yet must not run once the alert fires again:
  one approved before the firing came (no longer pending, so the firing does not see it), one
  a guard held (a pause, the target lock: ``pending``, no approval). Whichever comes first, the
  firing or the worker taking the step up, the step must not run: every take-up (a job, an
  event finishing a run's pending steps; not a resolution's first pass, which is itself the
  latest occurrence) looks at the alert's stored events (``fires_again``: the alert's latest
  occurrence on record fired and has no resolution) and withdraws the undo as a firing would
  (``Store.withdraw_refired_undo``, from ``AdmitResolve`` and the approve stage:
  receiver.pipeline.refired), with its approval. A take-up is not ordered with the alert's
  events, so the resolution the undo is deferred to may have been processed before the
  withdrawal committed: the store then carries it at once (``resolved_since``);
- an event of an episode **older** than one on record is stale: nothing is done for it (a late
  firing is skipped; a late resolution closes only its own episode's runs).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from receiver.alertmanager import parse_rfc3339
from receiver.model import (
    AlertEvent,
    History,
    PriorRun,
    Recurrence,
    ResolvePlan,
    Skip,
    Status,
    StepPlan,
)
from receiver.rules.model import RuleSet
from receiver.unreadable import unreadable_text

__all__ = [
    "NOTHING_TO_UNDO",
    "OLDER_EPISODE",
    "RULE_GONE",
    "UNDO_UNREADABLE",
    "Occurrence",
    "Successors",
    "fires_again",
    "later_episode",
    "resolved_since",
    "undo_of",
]

RULE_GONE = "rule no longer loaded; run closed without on_resolved steps"
NOTHING_TO_UNDO = "run changed nothing (refused, failed unacted, dry, held); no on_resolved steps"
UNDO_UNREADABLE = "run closed without them, nothing undone"
OLDER_EPISODE = "firing of an episode older than one on record (a later startsAt); ignored"


@dataclass(frozen=True, slots=True)
class Successors:
    """What a later episode's event does to the alert's runs of earlier episodes.

    ``older``: the event's own episode is older than one on record (do nothing for it).
    ``resolves``: closings (and carried undos), newest run first. ``recurrences``: settling
    runs the new firing fails. ``skips``: why a closed run gets no undo."""

    older: bool = False
    resolves: tuple[ResolvePlan, ...] = ()
    recurrences: tuple[Recurrence, ...] = ()
    skips: tuple[Skip, ...] = ()


def undo_of(run: PriorRun, rules: RuleSet) -> tuple[tuple[StepPlan, ...], Skip | None]:
    """The on_resolved steps that undo ``run``, or none and the Skip saying why.

    The steps kept with the run when it was planned (``PriorRun.on_resolved``, migration 0025)
    are its own change to take back, whatever ``rules`` say now (the rule renamed, removed or
    edited since). A run stored before they were kept (None) is planned from its rule in
    ``rules``: none when the rule is no longer loaded (``RULE_GONE``). Either way none when the
    run changed nothing (refused, dry, held, failed without acting: a restore would undo what
    someone else did; ``NOTHING_TO_UNDO``). Steps kept that cannot be read (an edit of the
    table: ``PriorRun.on_resolved_unreadable``) undo nothing, saying why (``UNDO_UNREADABLE``):
    never the rule's steps in their stead, a guess at what the run changed."""
    if run.on_resolved_unreadable and run.changed:
        what = {"the on_resolved steps kept with the run": run.on_resolved_unreadable}
        return (), Skip(f"{unreadable_text(what)}; {UNDO_UNREADABLE}", run.rule)
    if run.on_resolved is not None:
        kept = run.on_resolved
    else:
        rule = rules.by_name(run.rule)
        if rule is None:
            return (), Skip(RULE_GONE, run.rule)
        kept = tuple(s.to_plan() for s in rule.on_resolved)
    if not kept:
        return (), None
    if not run.changed:
        return (), Skip(NOTHING_TO_UNDO, run.rule)
    return kept, None


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One stored alert event of a fingerprint, as ``fires_again`` reads it: its row ``id``
    (``alert_events.id``), ``starts_at`` (RFC 3339 text, as Alertmanager sent it), ``refire``
    (which occurrence of that episode, from 0) and ``status`` (``firing`` or ``resolved``)."""

    id: int
    starts_at: str
    refire: int
    status: Status


def fires_again(events: Iterable[Occurrence], starts_at: str, refire: int) -> int | None:
    """Whether the alert fires again after the occurrence ``(starts_at, refire)`` of a run
    whose undo is about to act: the id of the firing event that says so, else None.

    It fires again when its **latest** occurrence on record (the latest ``startsAt``, then the
    highest ``refire``) is later than the run's, has a firing event and no resolution: a later
    ``startsAt`` or a re-fire proves the run's episode ended, and no resolution of it has come
    since. A resolution of that latest occurrence (the one a carried undo acts on) means the
    alert is quiet; a late firing copy of a resolved occurrence shares its ``refire`` (intake's
    occurrence rule), so it counts as resolved; a firing of an older episode delivered late is
    not the latest. Events whose ``startsAt`` cannot be read are left out. Pure: the caller reads
    ``events`` from the store (``Store.withdraw_refired_undo``)."""
    latest = _latest(events, starts_at, refire)
    if latest is None or latest.resolved is not None:
        return None
    return latest.fired


def resolved_since(events: Iterable[Occurrence], starts_at: str, refire: int) -> int | None:
    """The resolution that a deferred undo of the occurrence ``(starts_at, refire)`` waits
    for, if it is on record already: the id of the resolved event of the alert's **latest**
    occurrence, when that is later than the run's; else None. The counterpart of
    ``fires_again`` over the same events: a withdrawal that committed after that resolution
    was processed carries the undo itself (``Store.withdraw_refired_undo``)."""
    latest = _latest(events, starts_at, refire)
    return None if latest is None else latest.resolved


@dataclass(frozen=True, slots=True)
class _Latest:
    """The latest occurrence of an alert's events: its last firing event, its resolution."""

    fired: int | None
    resolved: int | None


def _latest(events: Iterable[Occurrence], starts_at: str, refire: int) -> _Latest | None:
    """The alert's latest occurrence in ``events`` when it is later than ``(starts_at,
    refire)``; None otherwise (or when ``starts_at`` cannot be read)."""
    own = _start(starts_at)
    if own is None:
        return None
    latest: tuple[datetime, int] | None = None
    firing: dict[tuple[datetime, int], int] = {}
    resolved: dict[tuple[datetime, int], int] = {}
    for event in events:
        began = _start(event.starts_at)
        if began is None:
            continue
        key = (began, event.refire)
        if latest is None or key > latest:
            latest = key
        seen = firing if event.status is Status.FIRING else resolved
        seen[key] = max(seen.get(key, event.id), event.id)
    if latest is None or latest <= (own, refire):
        return None
    return _Latest(fired=firing.get(latest), resolved=resolved.get(latest))


def _start(text: str) -> datetime | None:
    try:
        return parse_rfc3339(text)
    except ValueError:
        return None


def later_episode(event: AlertEvent, rules: RuleSet, history: History) -> Successors:
    """What ``event`` (either status) does to ``history.other_runs``: see the module."""
    if not history.other_runs:
        return Successors()  # the usual case, and a storm's: no startsAt to parse
    start = _start(event.starts_at)
    if start is None:
        return Successors()
    earlier: list[tuple[PriorRun, datetime]] = []
    for run in history.other_runs:
        began = _start(run.starts_at)
        if began is None:
            continue
        if began > start:
            # A later episode is on record: this event's is over (or a stale copy).
            return Successors(older=True)
        if began < start:
            earlier.append((run, began))
    firing = event.status is Status.FIRING
    resolves: list[ResolvePlan] = []
    recurrences: list[Recurrence] = []
    skips: list[Skip] = []
    # Closed runs of an earlier occurrence of this episode (a re-fire, the same startsAt and a
    # later refire): only an undo of theirs that waits (held, or deferred by a withdrawal).
    refired = [
        (run, start)
        for run in history.other_runs
        if run.closed and run.starts_at == event.starts_at and run.refire < event.refire
    ]
    for run, began in sorted(
        [*earlier, *refired], key=lambda r: (r[0].created_at, r[0].run_id), reverse=True
    ):
        if run.undo_held:
            if firing:
                # Its undo waits for an approval: approved now, it would take the change back
                # while the alert fires again (and the new run, planned with the change in
                # place, changed nothing). Withdrawn, and carried to the next resolution.
                resolves.append(_plan(run, (), deferred=True, withdraw=True))
            continue  # resolved: its approval is what it waits for, not this resolution
        if run.closed and firing:
            continue  # its undo still waits: the alert fires again
        steps, skip = undo_of(run, rules)
        if skip is not None:
            skips.append(skip)
        if run.closed:
            resolves.append(_plan(run, steps, carried=True))
            continue
        resolves.append(_plan(run, steps, inferred_from=event.starts_at, deferred=firing))
        rule = rules.by_name(run.rule)
        settle = rule.settle_s if rule is not None else None
        if firing and settle and (start - began).total_seconds() < settle:
            recurrences.append(Recurrence(run_id=run.run_id, rule=run.rule, event_id=event.id))
    return Successors(resolves=tuple(resolves), recurrences=tuple(recurrences), skips=tuple(skips))


def _plan(
    run: PriorRun,
    steps: tuple[StepPlan, ...],
    *,
    inferred_from: str | None = None,
    deferred: bool = False,
    carried: bool = False,
    withdraw: bool = False,
) -> ResolvePlan:
    return ResolvePlan(
        run_id=run.run_id,
        rule=run.rule,
        # The target recorded at run time: the run is what must be undone.
        target=run.target,
        steps=steps,
        inferred_from=inferred_from,
        deferred=deferred,
        carried=carried,
        withdraw=withdraw,
    )
