"""Later episodes close the runs of earlier ones (receiver.episodes, through engine.plan).

Alertmanager 0.35 replaced a resolved alert by its new firing (a later startsAt) before the
flush, so the first episode's resolution never came (review stop 28, finding 3): the first
run stayed open, failed, escalated, and its scale-out was never taken back.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.engine import NO_OPEN_RUN, plan
from receiver.episodes import NOTHING_TO_UNDO, OLDER_EPISODE
from receiver.model import (
    AlertEvent,
    History,
    NamespacePolicy,
    PriorRun,
    Recurrence,
    ResolvePlan,
    RunOutcome,
    Skip,
    Status,
    StepPlan,
    Target,
)
from receiver.rules.compile import compile_files
from receiver.rules.model import RuleSet
from tests.support.rules import registry

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
POLICY = NamespacePolicy()
FP = "fp-backlog"
S1 = "2024-05-01T11:00:00.5Z"
S2 = "2024-05-01T11:20:00.123456789Z"
S3 = "2024-05-01T11:40:00Z"
WORKERS = Target("Deployment", "shop", "workers")
LABELS = {"alertname": "QueueBacklog", "namespace": "shop"}

RULES = """\
rules:
  - name: scale
    match: ['alertname="QueueBacklog"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: workers}
    steps:
      - action: test.scale
        params: {delta: 2, max: 10}
    verify: {resolved_within: 2m}
    on_resolved:
      - action: test.scale
        params: {restore: true, max: 10}
  - name: settle
    match: ['alertname="Sticky"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: workers}
    steps:
      - action: test.restart
    verify: {resolved_within: 10m, settle: 30m}
"""

# Compiled once: hypothesis calls the property a hundred times.
PROPERTY_RULES = compile_files({"rules.yaml": RULES}, registry(), POLICY)
_SCALE = PROPERTY_RULES.by_name("scale")
assert _SCALE is not None
RESTORE: tuple[StepPlan, ...] = tuple(s.to_plan() for s in _SCALE.on_resolved)


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return PROPERTY_RULES


def event(starts_at: str, status: Status = Status.FIRING, **labels: str) -> AlertEvent:
    return AlertEvent(
        id=42,
        fingerprint=FP,
        starts_at=starts_at,
        status=status,
        labels={**LABELS, **labels},
        annotations={},
        received_at=NOW,
    )


def run(
    run_id: str,
    starts_at: str,
    *,
    rule: str = "scale",
    closed: bool = False,
    changed: bool = True,
    age_s: float = 600.0,
    held: bool = False,
    refire: int = 0,
) -> PriorRun:
    return PriorRun(
        run_id=run_id,
        rule=rule,
        target=WORKERS,
        fingerprint=FP,
        starts_at=starts_at,
        created_at=NOW - timedelta(seconds=age_s),
        outcome=RunOutcome.VERIFIED if closed else RunOutcome.VERIFYING,
        closed=closed,
        changed=changed,
        alertname="QueueBacklog",
        undo_held=held,
        refire=refire,
    )


def test_a_firing_of_a_later_episode_closes_the_open_run_and_defers_its_undo(
    rules: RuleSet,
) -> None:
    result = plan(event(S2), rules, History(other_runs=(run("r1", S1),)), POLICY, now=NOW)
    assert result.resolves == (
        ResolvePlan("r1", "scale", WORKERS, RESTORE, inferred_from=S2, deferred=True),
    )
    # The new episode is planned as any firing: it may act again.
    assert [r.rule for r in result.runs] == ["scale"]
    assert result.recurrences == ()


def test_a_run_whose_undo_waits_is_left_alone_while_the_alert_fires(rules: RuleSet) -> None:
    waiting = run("r1", S1, closed=True)
    result = plan(event(S3), rules, History(other_runs=(waiting,)), POLICY, now=NOW)
    assert result.resolves == ()
    assert [r.rule for r in result.runs] == ["scale"]


def test_a_firing_withdraws_an_undo_that_waits_for_its_approval(rules: RuleSet) -> None:
    """Approved later, it would take the change back while the alert fires again; withdrawn
    (deferred), it is carried to the next resolution. The new episode is planned as any."""
    held = run("r1", S1, closed=True, held=True)
    result = plan(event(S2), rules, History(other_runs=(held,)), POLICY, now=NOW)
    assert result.resolves == (
        ResolvePlan("r1", "scale", WORKERS, (), deferred=True, withdraw=True),
    )
    assert [r.rule for r in result.runs] == ["scale"]


def test_a_refire_of_the_same_episode_withdraws_its_held_undo(rules: RuleSet) -> None:
    held = run("r1", S1, closed=True, held=True)
    refired = replace(event(S1), refire=1)
    result = plan(refired, rules, History(other_runs=(held,)), POLICY, now=NOW)
    assert result.resolves == (
        ResolvePlan("r1", "scale", WORKERS, (), deferred=True, withdraw=True),
    )


def test_a_resolution_leaves_a_held_undo_to_its_approval(rules: RuleSet) -> None:
    history = History(
        episode_runs=(run("r2", S2, age_s=60),),
        other_runs=(run("r1", S1, closed=True, held=True),),
    )
    result = plan(event(S2, Status.RESOLVED), rules, history, POLICY, now=NOW)
    assert [r.run_id for r in result.resolves] == ["r2"]


def test_the_resolution_of_a_refire_carries_the_undo_its_firing_withdrew(
    rules: RuleSet,
) -> None:
    withdrawn = run("r1", S1, closed=True)  # undo_deferred: closed, not held
    history = History(episode_runs=(run("r2", S1, age_s=60, refire=1),), other_runs=(withdrawn,))
    resolved = replace(event(S1, Status.RESOLVED), refire=1)
    result = plan(resolved, rules, history, POLICY, now=NOW)
    assert result.resolves == (
        ResolvePlan("r2", "scale", WORKERS, RESTORE),
        ResolvePlan("r1", "scale", WORKERS, RESTORE, carried=True),
    )


def test_the_latest_resolution_undoes_newest_first(rules: RuleSet) -> None:
    """S1 superseded by S2 (undo deferred), S2 superseded by S3, then S3 resolves: S3's own
    run, then S2's, then S1's: the order the restores of overlapping runs expect."""
    history = History(
        episode_runs=(run("r3", S3, age_s=60),),
        other_runs=(run("r1", S1, closed=True, age_s=600), run("r2", S2, closed=True, age_s=300)),
    )
    result = plan(event(S3, Status.RESOLVED), rules, history, POLICY, now=NOW)
    assert result.resolves == (
        ResolvePlan("r3", "scale", WORKERS, RESTORE),
        ResolvePlan("r2", "scale", WORKERS, RESTORE, carried=True),
        ResolvePlan("r1", "scale", WORKERS, RESTORE, carried=True),
    )


def test_a_later_resolution_closes_an_open_earlier_run_and_undoes_at_once(
    rules: RuleSet,
) -> None:
    """The later episode's firing never came either: its resolution proves both ended."""
    result = plan(
        event(S2, Status.RESOLVED), rules, History(other_runs=(run("r1", S1),)), POLICY, now=NOW
    )
    assert result.resolves == (ResolvePlan("r1", "scale", WORKERS, RESTORE, inferred_from=S2),)
    assert Skip(NO_OPEN_RUN) in result.skips


def test_a_firing_of_an_older_episode_than_one_on_record_does_nothing(rules: RuleSet) -> None:
    result = plan(event(S1), rules, History(other_runs=(run("r2", S2),)), POLICY, now=NOW)
    assert result.runs == ()
    assert result.resolves == ()
    assert result.skips == (Skip(OLDER_EPISODE),)


def test_a_late_resolution_of_an_older_episode_carries_no_undo(rules: RuleSet) -> None:
    """S1's resolution arriving after S3 fired: S3 is on record, the alert still fires."""
    history = History(
        episode_runs=(run("r1", S1),),
        other_runs=(run("r2", S2, closed=True), run("r3", S3)),
    )
    result = plan(event(S1, Status.RESOLVED), rules, history, POLICY, now=NOW)
    assert [r.run_id for r in result.resolves] == ["r1"]


def test_a_run_that_changed_nothing_is_closed_without_undo(rules: RuleSet) -> None:
    quiet = run("r1", S1, changed=False)
    result = plan(event(S2), rules, History(other_runs=(quiet,)), POLICY, now=NOW)
    assert result.resolves == (
        ResolvePlan("r1", "scale", WORKERS, (), inferred_from=S2, deferred=True),
    )
    assert Skip(NOTHING_TO_UNDO, "scale") in result.skips


@pytest.mark.parametrize(
    ("later", "recurred"),
    [("2024-05-01T11:29:59Z", True), ("2024-05-01T11:30:00Z", False)],
)
def test_a_new_episode_within_the_settle_period_of_the_earlier_start_recurred(
    rules: RuleSet, later: str, recurred: bool
) -> None:
    """The earlier episode ended after it began: a new one less than ``settle`` after its
    start is certainly within the settle period of its end. Later than that, unknown: the
    benefit of the doubt (verified)."""
    sticky = run("r1", "2024-05-01T11:00:00Z", rule="settle")
    result = plan(
        event(later, alertname="Sticky"), rules, History(other_runs=(sticky,)), POLICY, now=NOW
    )
    assert [r.run_id for r in result.resolves] == ["r1"]
    expected = (Recurrence("r1", "settle", 42),) if recurred else ()
    assert result.recurrences == expected


def _start(minute: int) -> str:
    return f"2024-05-01T10:{minute:02d}:00Z"


OTHERS = st.lists(
    st.tuples(st.integers(0, 59), st.booleans(), st.integers(0, 10_000)),
    max_size=8,
    unique_by=lambda t: t[2],
)


@given(OTHERS, st.integers(0, 59), st.sampled_from(Status))
def test_only_earlier_episodes_are_touched_newest_first(
    others: list[tuple[int, bool, int]], minute: int, status: Status
) -> None:
    history = History(
        other_runs=tuple(
            run(f"r{age}", _start(m), closed=closed, age_s=age) for m, closed, age in others
        )
    )
    result = plan(event(_start(minute), status), PROPERTY_RULES, history, POLICY, now=NOW)
    later = [m for m, _, _ in others if m > minute]
    touched = list(result.resolves)
    if later:
        # An episode after this one is on record: this event's is over; nothing is closed.
        assert touched == []
        return
    earlier = [(m, closed, age) for m, closed, age in others if m < minute]
    if status is Status.FIRING:
        expected = sorted((age for _, closed, age in earlier if not closed))
        assert all(r.deferred and r.inferred_from == _start(minute) for r in touched)
    else:
        expected = sorted(age for _, _, age in earlier)
        assert not any(r.deferred for r in touched)
        assert all(r.carried == (r.inferred_from is None) for r in touched)
    # Newest run (smallest age) first.
    assert [r.run_id for r in touched] == [f"r{age}" for age in expected]
