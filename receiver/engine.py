"""plan(): what one alert event should lead to, given the rules and what already happened. Pure.

The engine decides; it neither checks guards nor acts. Every "no" it says is a ``Skip`` with a
reason, so a reviewer can see why an alert did nothing. Duplicate suppression here is a
courtesy: the store's UNIQUE (rule, occurrence) constraint is what makes a run happen at most
once.

Occurrences (``when: {repeated: ...}``): an occurrence is an earlier *episode occurrence* of the
alert on the same (rule, target): a run of another (fingerprint, startsAt, refire) whose event
arrived before this one, created within the window before this event arrived. The event's own
runs (a retry, a duplicate delivery, the row an earlier attempt created) never count, nor do
runs of later events, and the window is measured from the event's arrival, not from the
moment it is planned: the plan for an event is the same however often and however late it is
retried.

Live conditions (``when: {rolled_out_within: 30m}``): the caller reads the facts the matching
rules need (``fact_needs``) and passes them in; the engine decides on them as given and
records, in ``RunPlan.decision``, every step's conditions with the facts that decided them.
A fact that could not be read (or was not supplied) decides nothing: the step is left out,
saying why. The decision is bound into the run: a run taken up again never re-plans.

Undo: a new run keeps its rule's on_resolved steps (``RunPlan.on_resolved``, stored with the
run), and a resolved event plans them from the run (``PriorRun.on_resolved``), not from the
rules in force then: a rule renamed, removed or edited since changes nothing for a run that is
open. A run stored before they were kept (None) is planned from its rule as loaded.

Recurrence: a firing of a new occurrence (never a late copy) on a (rule, target) whose run
waits out its settle period (its alert resolved moments ago) fails that run's verification
(``Plan.recurrences``).

Later episodes (``receiver.episodes``): an event of the alert with a later ``startsAt`` than
its runs still open proves their episode ended; a firing closes them with their undo deferred
to the alert's next resolution, a resolution closes them and undoes at once (``Plan.resolves``
with ``inferred_from``, ``deferred``, ``carried``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from receiver.durations import format_duration
from receiver.episodes import NOTHING_TO_UNDO, OLDER_EPISODE, RULE_GONE, later_episode, undo_of
from receiver.facts import FactKind, Facts
from receiver.model import (
    AlertEvent,
    History,
    NamespacePolicy,
    Plan,
    Recurrence,
    ResolvePlan,
    RunPlan,
    Skip,
    Status,
    StepPlan,
    Target,
)
from receiver.repetitions import (
    earlier_occurrences,
    occurrence_text,
    recent_limit,
    repeat_keys,
)
from receiver.rules.model import Rule, RuleSet, Step
from receiver.templating import TargetError, TemplateError

__all__ = [
    "LATE_FIRING",
    "NOTHING_TO_UNDO",
    "NO_OPEN_RUN",
    "NO_RULE",
    "OLDER_EPISODE",
    "RULE_GONE",
    "RUN_EXISTS",
    "fact_needs",
    "plan",
    "recent_limit",
    "repeat_keys",
    "settle_keys",
    "settled_at_intake",
]

LATE_FIRING = "late firing duplicate of a resolved episode"
NO_RULE = "no rule matches"
RUN_EXISTS = "run already exists for this episode"
NO_OPEN_RUN = "no open run for this episode"


def plan(
    event: AlertEvent,
    rules: RuleSet,
    history: History,
    policy: NamespacePolicy,
    *,
    now: datetime,
    facts: Facts | None = None,
) -> Plan:
    """The plan for one stored alert event. ``now`` is passed in so the result is reproducible;
    repetitions are counted back from the event's ``received_at`` (``now`` when it has none),
    a rollout's age is measured at ``now``. ``facts``: the live facts read for this event
    (``fact_needs``); a condition on a fact not among them leaves its step out."""
    if event.status is Status.RESOLVED:
        return _plan_resolved(event, rules, history)
    return _plan_firing(event, rules, history, policy, now, facts or Facts())


def settled_at_intake(status: Status, labels: Mapping[str, str], rules: RuleSet) -> str | None:
    """Why an event needs no worker at all, or None when the worker must see it.

    Only a firing alert that no rule matches: it plans no run, so intake can store it already
    done instead of queueing it (most of a catch-all Alertmanager feed has no playbook), unless
    the alert has runs of other occurrences on record, which its plan still closes or whose
    held undo it withdraws (``episodes.later_episode``): the store keeps such an event queued.
    A resolved alert always goes to the worker: it may close a run whose rule has been changed
    or removed since.
    """
    if status is Status.FIRING and not rules.matches_any(labels):
        return NO_RULE
    return None


def fact_needs(
    event: AlertEvent,
    rules: RuleSet,
    policy: NamespacePolicy,
    history: History | None = None,
) -> list[tuple[FactKind, Target]]:
    """The live facts ``plan`` would decide ``event`` on: (kind, target) for every matching
    rule whose steps have live conditions, once each. Empty for a resolved event. With the
    ``history``, not for what ``plan`` will not plan: a late firing, a rule whose run of
    this occurrence exists (it keeps the steps it was decided with)."""
    if event.status is not Status.FIRING or (history is not None and history.episode_resolved):
        return []
    planned = {
        run.rule
        for run in (history.episode_runs if history is not None else ())
        if run.occurrence == event.occurrence
    }
    needs: dict[tuple[FactKind, str], tuple[FactKind, Target]] = {}
    for rule in rules.matching(event.labels):
        if not rule.facts or rule.name in planned:
            continue
        try:
            target = rule.render_target(event.labels, event.annotations, policy)
        except (TargetError, TemplateError):
            continue  # planned as a skip; nothing to read
        for kind in sorted(rule.facts):
            needs.setdefault((kind, target.key), (kind, target))
    return list(needs.values())


def settle_keys(
    event: AlertEvent, rules: RuleSet, policy: NamespacePolicy
) -> list[tuple[str, Target]]:
    """The (rule, target) pairs whose settling runs ``plan`` looks at for ``event``: matching
    rules with a settle period. Empty for a resolved event."""
    if event.status is not Status.FIRING:
        return []
    keys: list[tuple[str, Target]] = []
    for rule in rules.matching(event.labels):
        if not rule.settle_s:
            continue
        try:
            keys.append((rule.name, rule.render_target(event.labels, event.annotations, policy)))
        except (TargetError, TemplateError):
            continue
    return keys


def _plan_firing(
    event: AlertEvent,
    rules: RuleSet,
    history: History,
    policy: NamespacePolicy,
    now: datetime,
    facts: Facts,
) -> Plan:
    if history.episode_resolved:
        # Alertmanager may deliver a firing notification after the resolved one (retries,
        # HA peers); acting on it would remediate something already over. Nor is such a
        # late copy a recurrence: nothing fired again.
        return Plan(event_id=event.id, skips=(Skip(LATE_FIRING),))
    successors = later_episode(event, rules, history)
    if successors.older:
        return Plan(event_id=event.id, skips=(Skip(OLDER_EPISODE),))
    # The alert's own labels, never the group's commonLabels: a group mixes alerts of
    # different targets, and its common labels can match a rule none of its alerts match.
    matching = rules.matching(event.labels)
    if not matching:
        return Plan(
            event_id=event.id,
            resolves=successors.resolves,
            skips=(*successors.skips, Skip(NO_RULE)),
            recurrences=successors.recurrences,
        )
    runs: list[RunPlan] = []
    skips: list[Skip] = list(successors.skips)
    recurrences: list[Recurrence] = list(successors.recurrences)
    for rule in matching:
        try:
            target = rule.render_target(event.labels, event.annotations, policy)
        except (TargetError, TemplateError) as exc:
            # A label that would aim the action elsewhere (another namespace, a path) stops here.
            skips.append(Skip(f"invalid target: {exc}", rule.name))
            continue
        recurrences += _recurrences(event, rule, target, history, now)
        outcome = _plan_rule(event, rule, target, history, now, facts)
        if isinstance(outcome, Skip):
            skips.append(outcome)
        elif outcome is not None:
            runs.append(outcome)
    return Plan(
        event_id=event.id,
        runs=tuple(runs),
        resolves=successors.resolves,
        skips=tuple(skips),
        recurrences=tuple(recurrences),
    )


def _recurrences(
    event: AlertEvent, rule: Rule, target: Target, history: History, now: datetime
) -> list[Recurrence]:
    """Settling runs of ``rule`` on ``target`` for the same alert (by name) that this new
    occurrence fails: it fired again before their settle period ended."""
    anchor = event.received_at or now
    return [
        Recurrence(run_id=run.run_id, rule=rule.name, event_id=event.id)
        for run in history.settling_runs
        if run.rule == rule.name
        and run.target.key == target.key
        and run.alertname == event.alertname
        and run.occurrence != event.occurrence
        and run.settle_until is not None
        and anchor <= run.settle_until
    ]


def _plan_rule(
    event: AlertEvent,
    rule: Rule,
    target: Target,
    history: History,
    now: datetime,
    facts: Facts,
) -> RunPlan | Skip | None:
    """The run ``rule`` plans for ``event``; a Skip saying why not; None when this very event
    created the rule's run on an earlier attempt (it is being taken up, not skipped)."""
    existing = [
        run
        for run in history.episode_runs
        if run.rule == rule.name and run.occurrence == event.occurrence
    ]
    if existing:
        if event.id is not None and any(run.event_id == event.id for run in existing):
            return None
        return Skip(RUN_EXISTS, rule.name)
    anchor = event.received_at or now
    counted: dict[float, int] = {}  # by window: a step's is often the rule's widest, below
    # Counted up to the rule's highest repeated.times, past which no step decides otherwise
    # (receiver.repetitions): only that many runs of the pair are read.
    cap = rule.most_times

    def occurrences(within_s: float) -> int:
        if within_s not in counted:
            counted[within_s] = 1 + earlier_occurrences(
                history.recent_runs, rule.name, target, event, anchor, within_s, cap or 0
            )
        return counted[within_s]

    steps: list[StepPlan] = []
    decided: list[dict[str, Any]] = []
    for step in rule.steps:
        applies, why = _decide(step, occurrences, cap, facts, target, now)
        decided.append(
            {"index": step.index, "action": step.action, "included": applies, "why": why}
        )
        if applies:
            conditional = step.repeated is not None or bool(step.conditions)
            steps.append(step.to_plan("; ".join(why) if conditional else ""))
    widest = rule.widest_window_s
    occurrence = occurrences(widest) if widest is not None else 1
    if not steps:
        # Every step waits for a repetition or a live condition that does not hold (or cannot
        # be told): say which, rather than plan an empty run.
        reasons = "; ".join(f"step {d['index']}: {', '.join(d['why'])}" for d in decided)
        said = occurrence_text(occurrence, cap)
        return Skip(f"no step applies at occurrence {said}: {reasons}", rule.name)
    decision: dict[str, Any] | None = None
    if rule.has_conditions:
        read = [facts.get(kind, target) for kind in sorted(rule.facts)]
        decision = {"occurrence": occurrence, "steps": decided}
        if cap is not None and occurrence > cap:
            # The count reached the cap: the stored occurrence is "N or later", not N. Only
            # then, so that the decision (and the run.created row) of an uncapped count reads
            # as before. A rule with a cap waits for a repetition, so it has a decision.
            decision["occurrence_capped"] = True
        if rule.facts:
            # A rollout's age is measured at ``now``: part of what decided.
            decision["decided_at"] = now.isoformat()
            decision["facts"] = [r.as_dict() for r in read if r is not None]
    return RunPlan(
        rule=rule.name,
        target=target,
        steps=tuple(steps),
        guards=rule.guards,
        verify_within_s=rule.verify_within_s,
        occurrence=occurrence,
        settle_s=rule.settle_s,
        decision=decision,
        announce=rule.announce,
        on_resolved=tuple(s.to_plan() for s in rule.on_resolved),
    )


def _decide(
    step: Step,
    occurrences: Callable[[float], int],
    cap: int | None,
    facts: Facts,
    target: Target,
    now: datetime,
) -> tuple[bool, list[str]]:
    """Whether ``step`` applies, and why: one sentence per condition (all must hold).
    ``cap``: the rule's ``most_times``, where ``occurrences`` stops counting."""
    if step.repeated is None and not step.conditions:
        return True, ["no condition"]
    applies = True
    why: list[str] = []
    if step.repeated is not None:
        count = occurrences(step.repeated.within_s)
        holds = count >= step.repeated.times
        applies = applies and holds
        why.append(
            f"repeated {step.repeated.times} within {format_duration(step.repeated.within_s)}: "
            f"this is occurrence {occurrence_text(count, cap)}, "
            f"{'holds' if holds else 'does not hold'}"
        )
    for condition in step.conditions:
        # None: cannot be told, and the step is left out (never chosen on a guess).
        holds_or_unknown, sentence = condition.decide(facts.get(condition.fact, target), now)
        applies = applies and holds_or_unknown is True
        why.append(sentence)
    return applies, why


def _plan_resolved(event: AlertEvent, rules: RuleSet, history: History) -> Plan:
    resolves: list[ResolvePlan] = []
    skips: list[Skip] = []
    for run in history.episode_runs:
        # History is read for this episode; checking again keeps a store-side slip from
        # closing another episode's run.
        if run.closed or run.occurrence != event.occurrence:
            continue
        # The steps kept with the run (its own change to take back, whatever the rules say
        # now), or its rule's as loaded for a run stored before they were kept; none when the
        # run changed nothing (``episodes.undo_of``). Closed even so: it must not stay open.
        steps, skip = undo_of(run, rules)
        if skip is not None:
            skips.append(skip)
        # The target recorded at run time, not a re-render: labels of the resolved
        # notification are the same, but the run is what must be undone.
        resolves.append(ResolvePlan(run.run_id, run.rule, run.target, steps))
    if not resolves:
        skips.append(Skip(NO_OPEN_RUN))
    # Then the runs of earlier episodes: the newest run's undo after this episode's own.
    successors = later_episode(event, rules, history)
    return Plan(
        event_id=event.id,
        resolves=(*resolves, *successors.resolves),
        skips=(*skips, *successors.skips),
    )
