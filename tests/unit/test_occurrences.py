"""Occurrences: what `when: {repeated: ...}` counts, re-fires, and which runs get on_resolved.

An occurrence is an earlier episode occurrence (fingerprint, startsAt, refire) of the alert on
the same (rule, target), whose event arrived before this one. The plan for an event is the
same however often, and however late, it is retried: the rows its own earlier attempts left,
runs of later events and the passing of time change nothing.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.engine import NOTHING_TO_UNDO, RUN_EXISTS, plan
from receiver.model import AlertEvent, History, PriorRun, RunOutcome, Skip, Status, Target
from receiver.rules.model import RuleSet
from tests.support.engine_cases import (
    EVENTS,
    HISTORIES,
    NOW,
    POLICY,
    PROPERTY_RULES,
    STARTS,
    WEB,
    event,
    prior,
    resolved,
    run_plan,
    same_episode,
)

MIN = timedelta(minutes=1)


@pytest.fixture
def rules() -> RuleSet:
    return PROPERTY_RULES


def own_attempt(
    alert: AlertEvent, rule: str, target: Target, age: timedelta, *, known_event: bool = True
) -> PriorRun:
    """The run an earlier attempt at ``alert`` left behind (PENDING: Redis was down).
    ``known_event=False``: a row that does not say which event created it (event_id None)."""
    return PriorRun(
        run_id=f"own-{rule}",
        rule=rule,
        target=target,
        fingerprint=alert.fingerprint,
        starts_at=alert.starts_at,
        refire=alert.refire,
        created_at=NOW - age,
        outcome=RunOutcome.PENDING,
        event_id=alert.id if known_event else None,
    )


# --------------------------------------------------------------------------------------------
# examples


def test_a_retry_does_not_count_the_run_its_first_attempt_created(rules: RuleSet) -> None:
    # Case 10: Redis down on the first attempt left a PENDING run of this very occurrence.
    first = event()
    history = History(recent_runs=(own_attempt(first, "memory", WEB, MIN),))
    (run,) = plan(first, rules, history, POLICY, now=NOW).runs
    assert [s.action for s in run.steps] == ["test.restart"]
    assert run.occurrence == 1


def test_runs_of_later_events_are_not_earlier_occurrences(rules: RuleSet) -> None:
    later = prior(run_id="later", age=timedelta(0), event_id=8)  # this event's id is 7
    earlier = prior(run_id="earlier", age=MIN, event_id=6)
    assert run_plan(rules, History(recent_runs=(later,))).runs[0].occurrence == 1
    assert run_plan(rules, History(recent_runs=(earlier, later))).runs[0].occurrence == 2


def test_the_window_is_counted_back_from_the_events_arrival(rules: RuleSet) -> None:
    # A run 50 minutes before the event is within `1h` however late the event is planned.
    history = History(recent_runs=(prior(age=50 * MIN),))
    arrived = event(received_at=NOW)
    for late in (timedelta(0), 30 * MIN, 3 * timedelta(hours=1)):
        (run,) = plan(arrived, rules, history, POLICY, now=NOW + late).runs
        assert [s.index for s in run.steps] == [0, 1]


def test_a_refire_is_a_new_occurrence_of_the_same_episode(rules: RuleSet) -> None:
    refired = event(refire=1)
    first_run = same_episode(run_id="first", closed=True)  # refire 0, same fingerprint/startsAt
    result = plan(
        refired, rules, History(episode_runs=(), recent_runs=(first_run,)), POLICY, now=NOW
    )
    (run,) = result.runs
    assert run.occurrence == 2  # the first firing of the episode is an earlier occurrence
    # The runs of another occurrence never block this one, nor does its resolution.
    blocked = plan(event(), rules, History(episode_runs=(same_episode(),)), POLICY, now=NOW)
    assert blocked.skips == (Skip(RUN_EXISTS, "memory"),)


def test_a_resolution_closes_only_the_runs_of_its_own_occurrence(rules: RuleSet) -> None:
    history = History(
        episode_runs=(same_episode(run_id="old", refire=0), same_episode(run_id="new", refire=1))
    )
    result = plan(event(status=Status.RESOLVED, refire=1), rules, history, POLICY, now=NOW)
    assert [r.run_id for r in result.resolves] == ["new"]


@pytest.mark.parametrize("changed", [True, False])
def test_on_resolved_steps_only_for_a_run_that_changed_something(
    rules: RuleSet, changed: bool
) -> None:
    history = History(episode_runs=(same_episode(run_id="a", changed=changed),))
    result = resolved(rules, history)
    (close,) = result.resolves  # closed either way, so it never stays open
    if changed:
        assert [s.action for s in close.steps] == ["test.scale"]
        assert result.skips == ()
    else:
        assert close.steps == ()
        assert result.skips == (Skip(NOTHING_TO_UNDO, "memory"),)


def test_a_rule_without_on_resolved_has_nothing_to_skip(rules: RuleSet) -> None:
    history = History(episode_runs=(same_episode("memory-critical", run_id="b", changed=False),))
    result = resolved(rules, history)
    assert result.skips == ()
    assert result.resolves[0].steps == ()


# --------------------------------------------------------------------------------------------
# the property: a retry plans the same


LATER_RUNS = st.lists(
    st.builds(
        prior,
        st.sampled_from(["memory", "memory-critical", "queue"]),
        age=st.integers(min_value=0, max_value=7200).map(lambda s: timedelta(seconds=s)),
        run_id=st.text(min_size=1, max_size=3),
        target=st.sampled_from([WEB, Target("StatefulSet", "shop", "workers")]),
        event_id=st.integers(min_value=8, max_value=100),  # this event is 7
    ),
    max_size=4,
)


@given(
    EVENTS,
    HISTORIES,
    LATER_RUNS,
    st.integers(min_value=0, max_value=3).map(lambda n: n * timedelta(minutes=40)),
    st.integers(min_value=0, max_value=2),
    st.booleans(),
)
def test_an_event_plans_the_same_however_often_and_late_it_is_retried(
    alert: AlertEvent,
    history: History,
    later: list[PriorRun],
    delay: timedelta,
    attempts: int,
    known_event: bool,
) -> None:
    arrived = dataclasses.replace(alert, received_at=NOW)
    rules = PROPERTY_RULES
    first = plan(arrived, rules, history, POLICY, now=NOW)
    # What earlier attempts left: a run of this very occurrence for each planned rule.
    own = tuple(
        own_attempt(arrived, run.rule, run.target, timedelta(seconds=n), known_event=known_event)
        for run in first.runs
        for n in range(attempts)
    )
    retried = History(
        episode_runs=history.episode_runs,
        recent_runs=(*history.recent_runs, *own, *later),
        episode_resolved=history.episode_resolved,
    )
    assert plan(arrived, rules, retried, POLICY, now=NOW + delay) == first


def test_the_starting_point_of_these_histories_is_the_same_episode() -> None:
    # The strategies' own-attempt rows must look like the store's: same fingerprint, startsAt
    # and refire as the event, or the property above would test nothing.
    alert = event()
    row = own_attempt(alert, "memory", WEB, MIN)
    assert row.occurrence == alert.occurrence == ("fp1", STARTS, 0)
