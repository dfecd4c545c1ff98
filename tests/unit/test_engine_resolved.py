"""engine.plan() on a resolved alert, every branch as a table: which open runs it closes, with
which on_resolved steps, and the undo a run keeps from when it was planned."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.engine import NO_OPEN_RUN, NOTHING_TO_UNDO, RULE_GONE, plan
from receiver.model import History, Plan, PriorRun, ResolvePlan, Skip, StepPlan, Target
from receiver.rules.model import RuleSet
from tests.support import engine_cases
from tests.support.engine_cases import NOW, POLICY, WEB, event, prior, resolved, same_episode

# The engine's rule set, compiled once per module (a fixture: tests take it by name).
rules = engine_cases.rules


def test_resolved_closes_open_runs_with_on_resolved_steps(rules: RuleSet) -> None:
    history = History(episode_runs=(same_episode(run_id="a"),))
    assert resolved(rules, history) == Plan(
        event_id=7,
        resolves=(
            ResolvePlan(
                run_id="a",
                rule="memory",
                target=WEB,
                steps=(
                    StepPlan(0, "test.scale", {"delta": None, "restore": True, "max": 5}, False),
                ),
            ),
        ),
    )


def test_resolved_keeps_the_recorded_target(rules: RuleSet) -> None:
    recorded = Target("Deployment", "shop", "web-v1")
    history = History(episode_runs=(same_episode(run_id="a", target=recorded),))
    assert resolved(rules, history).resolves[0].target == recorded


def test_resolved_rule_without_on_resolved(rules: RuleSet) -> None:
    history = History(episode_runs=(same_episode("memory-critical", run_id="b"),))
    assert resolved(rules, history).resolves == (
        ResolvePlan(run_id="b", rule="memory-critical", target=WEB, steps=()),
    )


def test_resolved_with_a_removed_rule_still_closes(rules: RuleSet) -> None:
    history = History(episode_runs=(same_episode("gone", run_id="c"),))
    assert resolved(rules, history) == Plan(
        event_id=7,
        resolves=(ResolvePlan(run_id="c", rule="gone", target=WEB, steps=()),),
        skips=(Skip(RULE_GONE, "gone"),),
    )


@pytest.mark.parametrize(
    "runs",
    [
        pytest.param((), id="none"),
        pytest.param((same_episode(closed=True),), id="closed"),
        pytest.param((prior(),), id="other-episode"),
        pytest.param((same_episode(fingerprint="other"),), id="other-fingerprint"),
    ],
)
def test_resolved_without_open_runs(rules: RuleSet, runs: tuple[PriorRun, ...]) -> None:
    assert resolved(rules, History(episode_runs=runs)) == Plan(
        event_id=7, skips=(Skip(NO_OPEN_RUN),)
    )


def test_resolved_closes_only_the_open_ones(rules: RuleSet) -> None:
    history = History(
        episode_runs=(
            same_episode(run_id="x", closed=True),
            same_episode("memory-critical", run_id="y"),
        )
    )
    assert [r.run_id for r in resolved(rules, history).resolves] == ["y"]


def test_resolved_ignores_late_firing_flag_and_recent_runs(rules: RuleSet) -> None:
    history = History(
        episode_runs=(same_episode(run_id="a"),),
        recent_runs=(prior(),),
        episode_resolved=True,
    )
    result = resolved(rules, history)
    assert result.runs == ()
    assert [r.run_id for r in result.resolves] == ["a"]


def test_a_new_run_keeps_its_rules_on_resolved_steps(rules: RuleSet) -> None:
    [run] = plan(event(), rules, History(), POLICY, now=NOW).runs
    assert run.rule == "memory"
    assert run.on_resolved == (
        StepPlan(0, "test.scale", {"delta": None, "restore": True, "max": 5}, False),
    )


KEPT_STEPS = st.lists(
    st.builds(
        StepPlan,
        index=st.integers(0, 5),
        action=st.sampled_from(["test.scale", "test.restart", "test.notify"]),
        params=st.dictionaries(st.sampled_from(["a", "b"]), st.integers(), max_size=2),
        needs_approval=st.booleans(),
    ),
    max_size=3,
).map(tuple)


@given(
    kept=KEPT_STEPS,
    rule=st.sampled_from(["memory", "memory-critical", "gone"]),
    changed=st.booleans(),
)
def test_a_kept_undo_is_planned_whatever_the_rules_say_now(
    rules: RuleSet, kept: tuple[StepPlan, ...], rule: str, changed: bool
) -> None:
    # The rule may be loaded with other on_resolved steps, none, or not at all (renamed or
    # removed): the run undoes what it was planned with, once it changed something.
    run = dataclasses.replace(same_episode(rule, changed=changed), on_resolved=kept)
    result = resolved(rules, History(episode_runs=(run,)))
    steps = kept if changed else ()
    assert result.resolves == (ResolvePlan(run.run_id, rule, WEB, steps),)
    assert result.skips == ((Skip(NOTHING_TO_UNDO, rule),) if kept and not changed else ())
