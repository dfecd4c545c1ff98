"""engine.plan(): properties over arbitrary labels and history (hypothesis), and the two
functions that let the store and intake do less: repeat_keys() and settled_at_intake()."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from receiver.engine import NO_RULE, plan, repeat_keys, settled_at_intake
from receiver.model import AlertEvent, History, NamespacePolicy, PriorRun, Status, Target
from receiver.rules.compile import compile_files
from receiver.rules.model import RuleSet
from receiver.templating import validate_target
from tests.support import engine_cases
from tests.support.engine_cases import (
    EVENTS,
    HISTORIES,
    NOW,
    POLICY,
    PRIORS,
    PROPERTY_RULES,
    RULES,
    WEB,
    event,
    prior,
    run_plan,
)
from tests.support.rules import registry

# The engine's rule set, compiled once per module (a fixture: tests take it by name).
rules = engine_cases.rules


POLICIES = st.builds(
    NamespacePolicy,
    allow=st.sampled_from([(), ("shop",), ("shop", "billing")]),
    deny=st.sampled_from([(), ("kube-system",), ("shop",)]),
)
PERMISSIVE_RULES = compile_files({"rules.yaml": RULES}, registry(), NamespacePolicy(deny=()))


@given(EVENTS, HISTORIES, POLICIES)
def test_no_planned_target_is_outside_the_policy(
    alert: AlertEvent, history: History, policy: NamespacePolicy
) -> None:
    rules = PERMISSIVE_RULES
    for run in plan(alert, rules, history, policy, now=NOW).runs:
        assert policy.permits(run.target.namespace)
        validate_target(run.target, policy)  # DNS-1123 shaped, or it raises


@given(EVENTS, HISTORIES)
def test_plan_is_deterministic(alert: AlertEvent, history: History) -> None:
    rules = PROPERTY_RULES
    assert plan(alert, rules, history, POLICY, now=NOW) == plan(
        alert, rules, history, POLICY, now=NOW
    )


@given(EVENTS, HISTORIES)
def test_resolved_never_runs_and_firing_never_resolves(alert: AlertEvent, history: History) -> None:
    rules = PROPERTY_RULES
    result = plan(alert, rules, history, POLICY, now=NOW)
    if alert.status is Status.RESOLVED:
        assert result.runs == ()
    else:
        assert result.resolves == ()
    # Every event leaves a trace: something to do, or a reason why not.
    assert not result.is_empty or result.skips


@given(EVENTS, HISTORIES, PRIORS)
def test_more_history_never_means_fewer_steps(
    alert: AlertEvent, history: History, extra: PriorRun
) -> None:
    rules = PROPERTY_RULES
    before = plan(alert, rules, history, POLICY, now=NOW)
    more = History(history.episode_runs, (*history.recent_runs, extra), history.episode_resolved)
    after = plan(alert, rules, more, POLICY, now=NOW)
    steps_before = {r.rule: {s.index for s in r.steps} for r in before.runs}
    steps_after = {r.rule: {s.index for s in r.steps} for r in after.runs}
    assert steps_before.keys() == steps_after.keys()
    for rule, indexes in steps_before.items():
        assert indexes <= steps_after[rule]


@given(
    st.lists(st.integers(min_value=0, max_value=2 * 86400), max_size=6),
    st.integers(min_value=0, max_value=2 * 86400),
)
def test_escalation_matches_its_definition(ages_s: list[int], extra_s: int) -> None:
    # Runs of the same rule and target at arbitrary ages, against the rule's own words:
    # step 1 at the 2nd run within 1h, step 2 at the 3rd within 1d, this alert counted.
    rules = PROPERTY_RULES

    def steps(ages: list[int]) -> list[int]:
        history = History(
            recent_runs=tuple(
                prior(age=timedelta(seconds=a), run_id=f"r{i}") for i, a in enumerate(ages)
            )
        )
        (run,) = run_plan(rules, history).runs
        # Counted up to the rule's highest times (3) earlier ones, where no step decides
        # otherwise (receiver.repetitions).
        assert run.occurrence == 1 + min(sum(a <= 86400 for a in ages), 3)
        return [s.index for s in run.steps]

    expected = [0]
    if 1 + sum(a <= 3600 for a in ages_s) >= 2:
        expected.append(1)
    if 1 + sum(a <= 86400 for a in ages_s) >= 3:
        expected.append(2)
    assert steps(ages_s) == expected
    assert set(steps(ages_s)) <= set(steps([*ages_s, extra_s]))


@given(EVENTS, HISTORIES)
def test_settling_at_intake_never_hides_work_from_the_worker(
    alert: AlertEvent, history: History
) -> None:
    # Intake stores a settled event already done, so the worker never plans it: that is only
    # sound if the plan, whatever the history, would have been "nothing to do".
    rules = PROPERTY_RULES
    reason = settled_at_intake(alert.status, alert.labels, rules)
    if reason is not None:
        result = plan(alert, rules, history, POLICY, now=NOW)
        assert result.runs == ()
        assert result.resolves == ()
        assert alert.status is Status.FIRING
        assert reason == NO_RULE


def test_settled_at_intake_only_for_firing_alerts_no_rule_matches(rules: RuleSet) -> None:
    unmatched = {"alertname": "DiskFull", "namespace": "shop"}
    matched = {"alertname": "HighMemoryUsage", "namespace": "shop", "deployment": "web"}
    assert settled_at_intake(Status.FIRING, unmatched, rules) == NO_RULE
    assert settled_at_intake(Status.FIRING, matched, rules) is None
    # A resolved alert may close a run whose rule has changed since: always the worker's.
    assert settled_at_intake(Status.RESOLVED, unmatched, rules) is None
    assert settled_at_intake(Status.RESOLVED, matched, rules) is None


# Narrow on purpose: alerts and prior runs that often share a rule and target within the
# rules' windows, so that dropping a run the plan counts shows up in a few examples.
NEAR_TARGETS = st.sampled_from(
    [WEB, Target("Deployment", "shop", "api"), Target("StatefulSet", "shop", "workers")]
)
NEAR_HISTORIES = st.builds(
    History,
    episode_runs=st.just(()),
    recent_runs=st.lists(
        st.builds(
            prior,
            st.sampled_from(["memory", "memory-critical", "queue"]),
            age=st.integers(min_value=0, max_value=2 * 86400).map(lambda s: timedelta(seconds=s)),
            target=NEAR_TARGETS,
        ),
        max_size=8,
    ).map(tuple),
)
NEAR_EVENTS = st.builds(
    event,
    st.fixed_dictionaries(
        {
            "alertname": st.sampled_from(["HighMemoryUsage", "QueueBacklog"]),
            "namespace": st.just("shop"),
            "deployment": st.sampled_from(["web", "api"]),
        },
        optional={"severity": st.sampled_from(["critical", "warning"])},
    ),
    status=st.sampled_from(list(Status)),
    annotations=st.fixed_dictionaries({}, optional={"owner": st.sampled_from(["web", "api"])}),
)


@given(st.one_of(EVENTS, NEAR_EVENTS), st.one_of(HISTORIES, NEAR_HISTORIES), POLICIES)
def test_the_plan_needs_only_the_recent_runs_of_its_repeat_keys(
    alert: AlertEvent, history: History, policy: NamespacePolicy
) -> None:
    # The store reads recent runs only for repeat_keys(); any other recent run must not be
    # able to change the plan.
    rules = PERMISSIVE_RULES
    keys = {(rule, target.key) for rule, target in repeat_keys(alert, rules, policy)}
    narrowed = History(
        history.episode_runs,
        tuple(r for r in history.recent_runs if (r.rule, r.target.key) in keys),
        history.episode_resolved,
    )
    assert plan(alert, rules, narrowed, policy, now=NOW) == plan(
        alert, rules, history, policy, now=NOW
    )


def test_repeat_keys_are_the_rendered_targets_of_rules_that_count_repetitions(
    rules: RuleSet,
) -> None:
    labels = {"alertname": "HighMemoryUsage", "namespace": "shop", "deployment": "web"}
    assert repeat_keys(event(labels), rules, POLICY) == [("memory", WEB)]
    # queue has no `repeated` step: its plan never counts, so nothing is read for it.
    queue = {"alertname": "QueueBacklog", "namespace": "shop"}
    assert repeat_keys(event(queue), rules, POLICY) == []
    assert repeat_keys(event(labels, status=Status.RESOLVED), rules, POLICY) == []
    hostile = {**labels, "deployment": "../../etc"}
    assert repeat_keys(event(hostile), rules, POLICY) == []
