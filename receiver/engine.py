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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from receiver.model import (
    AlertEvent,
    History,
    NamespacePolicy,
    Plan,
    PriorRun,
    ResolvePlan,
    RunPlan,
    Skip,
    Status,
    StepPlan,
    Target,
)
from receiver.rules.model import Rule, RuleSet
from receiver.templating import TargetError, TemplateError

__all__ = [
    "LATE_FIRING",
    "NOTHING_TO_UNDO",
    "NO_OPEN_RUN",
    "NO_RULE",
    "RULE_GONE",
    "RUN_EXISTS",
    "plan",
    "repeat_keys",
    "settled_at_intake",
]

LATE_FIRING = "late firing duplicate of a resolved episode"
NO_RULE = "no rule matches"
RUN_EXISTS = "run already exists for this episode"
NO_OPEN_RUN = "no open run for this episode"
RULE_GONE = "rule no longer loaded; run closed without on_resolved steps"
NOTHING_TO_UNDO = "run changed nothing (refused, dry-run or held); closed without on_resolved steps"


def plan(
    event: AlertEvent,
    rules: RuleSet,
    history: History,
    policy: NamespacePolicy,
    *,
    now: datetime,
) -> Plan:
    """The plan for one stored alert event. ``now`` is passed in so the result is reproducible;
    repetitions are counted back from the event's ``received_at`` (``now`` when it has none)."""
    if event.status is Status.RESOLVED:
        return _plan_resolved(event, rules, history)
    return _plan_firing(event, rules, history, policy, now)


def settled_at_intake(status: Status, labels: Mapping[str, str], rules: RuleSet) -> str | None:
    """Why an event needs no worker at all, or None when the worker must see it.

    Only a firing alert that no rule matches: whatever its history, its plan is NO_RULE, so
    intake can store it already done instead of queueing it (most of a catch-all Alertmanager
    feed has no playbook). A resolved alert always goes to the worker: it may close a run whose
    rule has been changed or removed since.
    """
    if status is Status.FIRING and not rules.matches_any(labels):
        return NO_RULE
    return None


def repeat_keys(
    event: AlertEvent, rules: RuleSet, policy: NamespacePolicy
) -> list[tuple[str, Target]]:
    """The (rule, target) pairs whose recent runs ``plan`` counts for ``event``: only those
    need reading from the store. Not "every run of this alertname": in a storm on one alert
    over many targets, that read would grow with the storm."""
    if event.status is not Status.FIRING:
        return []
    keys: list[tuple[str, Target]] = []
    for rule in rules.matching(event.labels):
        if rule.widest_window_s is None:
            continue  # no step waits for a repetition: its plan never looks at the past
        try:
            keys.append((rule.name, rule.render_target(event.labels, event.annotations, policy)))
        except (TargetError, TemplateError):
            continue  # planned as a skip; nothing to count
    return keys


def _plan_firing(
    event: AlertEvent,
    rules: RuleSet,
    history: History,
    policy: NamespacePolicy,
    now: datetime,
) -> Plan:
    if history.episode_resolved:
        # Alertmanager may deliver a firing notification after the resolved one (retries,
        # HA peers); acting on it would remediate something already over.
        return Plan(event_id=event.id, skips=(Skip(LATE_FIRING),))
    # The alert's own labels, never the group's commonLabels: a group mixes alerts of
    # different targets, and its common labels can match a rule none of its alerts match.
    matching = rules.matching(event.labels)
    if not matching:
        return Plan(event_id=event.id, skips=(Skip(NO_RULE),))
    runs: list[RunPlan] = []
    skips: list[Skip] = []
    for rule in matching:
        outcome = _plan_rule(event, rule, history, policy, now)
        if isinstance(outcome, Skip):
            skips.append(outcome)
        else:
            runs.append(outcome)
    return Plan(event_id=event.id, runs=tuple(runs), skips=tuple(skips))


def _plan_rule(
    event: AlertEvent,
    rule: Rule,
    history: History,
    policy: NamespacePolicy,
    now: datetime,
) -> RunPlan | Skip:
    try:
        target = rule.render_target(event.labels, event.annotations, policy)
    except (TargetError, TemplateError) as exc:
        # A label that would aim the action elsewhere (another namespace, a path) stops here.
        return Skip(f"invalid target: {exc}", rule.name)
    if any(
        run.rule == rule.name and run.occurrence == event.occurrence for run in history.episode_runs
    ):
        return Skip(RUN_EXISTS, rule.name)
    anchor = event.received_at or now

    def occurrences(within_s: float) -> int:
        return 1 + _earlier_occurrences(
            history.recent_runs, rule.name, target, event, anchor, within_s
        )

    steps: list[StepPlan] = []
    for step in rule.steps:
        if step.repeated is None or occurrences(step.repeated.within_s) >= step.repeated.times:
            steps.append(step.to_plan())
    widest = rule.widest_window_s
    occurrence = occurrences(widest) if widest is not None else 1
    if not steps:
        # The loader refuses rules whose every step waits for a repetition, so this is only
        # reachable with a hand-built rule; say so rather than plan an empty run.
        return Skip(f"no step applies at occurrence {occurrence}", rule.name)
    return RunPlan(
        rule=rule.name,
        target=target,
        steps=tuple(steps),
        guards=rule.guards,
        verify_within_s=rule.verify_within_s,
        occurrence=occurrence,
    )


def _earlier_occurrences(
    runs: Iterable[PriorRun],
    rule: str,
    target: Target,
    event: AlertEvent,
    anchor: datetime,
    within_s: float,
) -> int:
    """Distinct earlier occurrences of ``rule`` on ``target`` within ``within_s`` of ``anchor``."""
    # Inclusive at the edge: a run exactly `within` before the event still counts.
    since = anchor - timedelta(seconds=within_s)
    earlier = {
        run.occurrence
        for run in runs
        if run.rule == rule
        and run.target.key == target.key
        and run.created_at >= since
        # Its own occurrence is never a repetition of itself (a retried event finds the run
        # its first attempt created), and a later event is not an earlier occurrence.
        and run.occurrence != event.occurrence
        and (run.event_id is None or run.event_id < event.id)
    }
    return len(earlier)


def _plan_resolved(event: AlertEvent, rules: RuleSet, history: History) -> Plan:
    resolves: list[ResolvePlan] = []
    skips: list[Skip] = []
    for run in history.episode_runs:
        # History is read for this episode; checking again keeps a store-side slip from
        # closing another episode's run.
        if run.closed or run.occurrence != event.occurrence:
            continue
        rule = rules.by_name(run.rule)
        steps: tuple[StepPlan, ...] = ()
        if rule is None:
            # Renamed or removed since the run began: still close it, so the run does not stay
            # open forever, but there is no longer a definition of what to undo.
            skips.append(Skip(RULE_GONE, run.rule))
        elif rule.on_resolved and not run.changed:
            # A refused, dry-run or held run changed nothing: a restore would undo what some
            # other run, or someone else, did.
            skips.append(Skip(NOTHING_TO_UNDO, run.rule))
        elif rule.on_resolved:
            steps = tuple(s.to_plan() for s in rule.on_resolved)
        resolves.append(
            ResolvePlan(
                run_id=run.run_id,
                rule=run.rule,
                # The target recorded at run time, not a re-render: labels of the resolved
                # notification are the same, but the run is what must be undone.
                target=run.target,
                steps=steps,
            )
        )
    if not resolves:
        skips.append(Skip(NO_OPEN_RUN))
    return Plan(event_id=event.id, resolves=tuple(resolves), skips=tuple(skips))
