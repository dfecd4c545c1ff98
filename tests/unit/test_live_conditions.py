"""The engine's decisions on live facts (a rollout's age, a fact that could not be read) and on
recurrences while a run settles. Pure: facts are plain data passed in."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from receiver.engine import fact_needs, plan, settle_keys
from receiver.facts import FactKind, FactReading, Facts, Rollout
from receiver.model import AlertEvent, History, PriorRun, Recurrence, RunOutcome, Status, Target
from receiver.rules.model import RuleSet
from tests.support import live_rules
from tests.support.live_rules import POLICY

# The rule set, compiled once per module (a fixture: tests take it by name).
rules = live_rules.rules


NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
WEB = Target("Deployment", "shop", "web")
MIN = timedelta(minutes=1)


def event(alertname: str = "HighErrorRate", **changes: Any) -> AlertEvent:
    base = AlertEvent(
        id=11,
        fingerprint="fp-errors",
        starts_at="2026-03-02T11:58:00Z",
        status=Status.FIRING,
        labels={"alertname": alertname, "namespace": "shop", "deployment": "web"},
        annotations={},
        received_at=NOW,
    )
    return dataclasses.replace(base, **changes)


def rollout(age: timedelta, *, revision: int = 7) -> Facts:
    return Facts.of(
        FactReading(
            FactKind.ROLLOUT,
            WEB,
            value=Rollout(revision, f"web-{revision}abc", NOW - age),
            read_at=NOW,
        )
    )


def unreadable(error: str) -> Facts:
    return Facts.of(FactReading(FactKind.ROLLOUT, WEB, error=error, read_at=NOW))


def steps_of(result_rules: RuleSet, facts: Facts | None, **changes: Any) -> list[str]:
    (run,) = plan(event(**changes), result_rules, History(), POLICY, now=NOW, facts=facts).runs
    return [s.action for s in run.steps]


def test_a_recent_rollout_rolls_back_and_an_old_one_scales_out(rules: RuleSet) -> None:
    assert steps_of(rules, rollout(12 * MIN)) == ["test.undo", "test.restart"]
    assert steps_of(rules, rollout(3 * 60 * MIN)) == ["test.scale", "test.restart"]


@pytest.mark.parametrize(
    ("age", "recent"),
    [
        pytest.param(30 * MIN, True, id="exactly-30m-is-within"),
        pytest.param(30 * MIN + timedelta(seconds=1), False, id="just-older"),
        pytest.param(-5 * MIN, True, id="created-ahead-of-our-clock"),
    ],
)
def test_the_edge_of_the_window(rules: RuleSet, age: timedelta, recent: bool) -> None:
    expected = "test.undo" if recent else "test.scale"
    assert steps_of(rules, rollout(age))[0] == expected


def test_the_decision_is_recorded_with_the_fact_that_made_it(rules: RuleSet) -> None:
    (run,) = plan(event(), rules, History(), POLICY, now=NOW, facts=rollout(12 * MIN)).runs
    assert run.decision is not None
    assert run.decision["decided_at"] == NOW.isoformat()
    assert run.decision["facts"] == [
        {
            "kind": "rollout",
            "target": WEB.key,
            "revision": 7,
            "replicaset": "web-7abc",
            "created_at": (NOW - 12 * MIN).isoformat(),
            "read_at": NOW.isoformat(),
        }
    ]
    decided = [(s["action"], s["included"], s["why"]) for s in run.decision["steps"]]
    assert decided == [
        (
            "test.undo",
            True,
            [
                "rolled_out_within 30m: holds (newest release: revision 7, ReplicaSet web-7abc, "
                "created 12m ago)"
            ],
        ),
        (
            "test.scale",
            False,
            [
                "not_rolled_out_within 30m: does not hold (newest release: revision 7, ReplicaSet "
                "web-7abc, created 12m ago)"
            ],
        ),
        ("test.restart", True, ["no condition"]),
    ]
    # The planned step carries why, for its record; an unconditional one nothing.
    assert run.steps[0].description.startswith("rolled_out_within 30m: holds")
    assert run.steps[1].description == ""
    assert (run.settle_s, run.announce) == (1800.0, rules.by_name("errors").announce)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "facts",
    [
        pytest.param(unreadable("Deployment shop/web not found"), id="target-missing"),
        pytest.param(
            unreadable("no Kubernetes credentials are configured (client 'kubernetes')"),
            id="no-cluster",
        ),
        pytest.param(None, id="not-read-at-all"),
    ],
)
def test_a_fact_that_could_not_be_read_is_never_guessed(
    rules: RuleSet, facts: Facts | None
) -> None:
    (run,) = plan(event(), rules, History(), POLICY, now=NOW, facts=facts).runs
    # Neither the rollback nor the scale-out: only the unconditional step.
    assert [s.action for s in run.steps] == ["test.restart"]
    assert run.decision is not None
    reasons = [s["why"][0] for s in run.decision["steps"][:2]]
    assert all("cannot tell" in r and r.endswith("step left out") for r in reasons), reasons
    if facts is not None:
        assert run.decision["facts"][0]["error"] in reasons[0]


def test_a_rule_left_with_no_step_is_skipped_saying_why(rules: RuleSet) -> None:
    result = plan(
        event("Canary"),
        rules,
        History(),
        POLICY,
        now=NOW,
        facts=rollout(2 * 60 * MIN),
    )
    assert result.runs == ()
    (skip,) = result.skips
    assert skip.rule == "only-when-recent"
    assert skip.reason.startswith("no step applies at occurrence 1: step 0: ")
    assert "rolled_out_within 1h: does not hold" in skip.reason


def test_the_same_inputs_give_the_same_plan(rules: RuleSet) -> None:
    first = plan(event(), rules, History(), POLICY, now=NOW, facts=rollout(5 * MIN))
    again = plan(event(), rules, History(), POLICY, now=NOW, facts=rollout(5 * MIN))
    assert first == again


def test_fact_needs_names_each_target_once_and_nothing_it_will_not_plan(
    rules: RuleSet,
) -> None:
    assert fact_needs(event(), rules, POLICY) == [(FactKind.ROLLOUT, WEB)]
    assert fact_needs(event(status=Status.RESOLVED), rules, POLICY) == []
    assert fact_needs(event("Unrelated"), rules, POLICY) == []
    assert fact_needs(event(), rules, POLICY, History(episode_resolved=True)) == []
    planned = PriorRun(
        run_id="r1",
        rule="errors",
        target=WEB,
        fingerprint="fp-errors",
        starts_at="2026-03-02T11:58:00Z",
        created_at=NOW,
        outcome=RunOutcome.PENDING,
    )
    # Its run exists: it keeps the steps decided then, nothing is read again.
    assert fact_needs(event(), rules, POLICY, History(episode_runs=(planned,))) == []


def settling(
    *,
    until: datetime = NOW + 10 * MIN,
    rule: str = "errors",
    target: Target = WEB,
    alertname: str = "HighErrorRate",
    refire: int = 0,
    starts_at: str = "2026-03-02T11:58:00Z",
) -> PriorRun:
    return PriorRun(
        run_id="settling-1",
        rule=rule,
        target=target,
        fingerprint="fp-errors",
        starts_at=starts_at,
        created_at=NOW - 20 * MIN,
        outcome=RunOutcome.VERIFYING,
        closed=True,
        refire=refire,
        alertname=alertname,
        settle_until=until,
    )


def recurrences(rules: RuleSet, run: PriorRun, **changes: Any) -> tuple[Recurrence, ...]:
    history = History(settling_runs=(run,))
    firing = event(**{"refire": 1, **changes})
    return plan(firing, rules, history, POLICY, now=NOW, facts=rollout(2 * MIN)).recurrences


def test_a_refire_while_settling_fails_the_run_as_recurred(rules: RuleSet) -> None:
    assert recurrences(rules, settling()) == (Recurrence("settling-1", "errors", 11),)
    # A new episode of the same alert (Prometheus resolved and fired it again) recurs too.
    assert recurrences(rules, settling(), refire=0, starts_at="2026-03-02T12:00:00Z") != ()
    # At the very end of the settle period it still counts.
    assert recurrences(rules, settling(until=NOW)) != ()


@pytest.mark.parametrize(
    ("run", "changes"),
    [
        pytest.param(settling(until=NOW - timedelta(seconds=1)), {}, id="settled-already"),
        pytest.param(settling(target=Target("Deployment", "shop", "api")), {}, id="other-target"),
        pytest.param(settling(alertname="Other"), {}, id="other-alert"),
        pytest.param(settling(rule="only-when-recent"), {}, id="other-rule"),
        pytest.param(settling(refire=1), {}, id="its-own-occurrence"),
    ],
)
def test_what_is_not_a_recurrence(rules: RuleSet, run: PriorRun, changes: dict[str, Any]) -> None:
    assert recurrences(rules, run, **changes) == ()


def test_a_late_copy_of_the_resolved_firing_is_not_a_recurrence(rules: RuleSet) -> None:
    history = History(settling_runs=(settling(),), episode_resolved=True)
    late = plan(event(refire=1), rules, history, POLICY, now=NOW)
    assert late.recurrences == ()


def test_settle_keys_only_for_rules_with_a_settle_period(rules: RuleSet) -> None:
    assert settle_keys(event(), rules, POLICY) == [("errors", WEB)]
    assert settle_keys(event("Canary"), rules, POLICY) == []
    assert settle_keys(event(status=Status.RESOLVED), rules, POLICY) == []
