"""engine.plan(): every branch as a table, then properties over arbitrary labels and history."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.engine import (
    LATE_FIRING,
    NO_OPEN_RUN,
    NO_RULE,
    NOTHING_TO_UNDO,
    RULE_GONE,
    RUN_EXISTS,
    plan,
    repeat_keys,
    settled_at_intake,
)
from receiver.model import (
    AlertEvent,
    GuardSpec,
    History,
    NamespacePolicy,
    Plan,
    PriorRun,
    ResolvePlan,
    RunOutcome,
    Skip,
    Status,
    StepPlan,
    Target,
)
from receiver.rules.compile import compile_files
from receiver.rules.model import RuleSet
from receiver.templating import validate_target
from tests.support.rules import registry

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
POLICY = NamespacePolicy(deny=("kube-system",))
STARTS = "2024-05-01T11:55:00.123456789Z"

RULES = """\
rules:
  - name: memory
    match: ['alertname="HighMemoryUsage"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: test.restart
      - action: test.grow
        when: {repeated: {times: 2, within: 1h}}
        params: {container: app, factor: 1.5}
      - action: test.undo
        when: {repeated: {times: 3, within: 1d}}
    verify: {resolved_within: 10m}
    guards: {cooldown: 15m, max_runs: {count: 3, per: 1h}}
    on_resolved:
      - action: test.scale
        params: {restore: true, max: 5}
  - name: memory-critical
    match: ['alertname="HighMemoryUsage"', 'severity="critical"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ annotations.owner }}"}
    steps:
      - action: test.scale
        params: {delta: 1, max: 5}
        approval: required
  - name: queue
    match: ['alertname="QueueBacklog"']
    target: {kind: StatefulSet, namespace: "{{ labels.namespace }}", name: "workers"}
    steps:
      - action: test.scale
        params: {delta: 2, max: 10}
"""


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return compile_files({"rules.yaml": RULES}, registry(), POLICY)


def event(
    labels: dict[str, str] | None = None,
    *,
    status: Status = Status.FIRING,
    annotations: dict[str, str] | None = None,
    fingerprint: str = "fp1",
    starts_at: str = STARTS,
    refire: int = 0,
    received_at: datetime | None = None,
) -> AlertEvent:
    return AlertEvent(
        id=7,
        fingerprint=fingerprint,
        starts_at=starts_at,
        refire=refire,
        received_at=received_at,
        status=status,
        labels=(
            labels
            if labels is not None
            else {"alertname": "HighMemoryUsage", "namespace": "shop", "deployment": "web"}
        ),
        annotations=annotations or {},
    )


WEB = Target("Deployment", "shop", "web")


def prior(
    rule: str = "memory",
    *,
    age: timedelta = timedelta(minutes=30),
    target: Target = WEB,
    closed: bool = False,
    run_id: str = "run-1",
    fingerprint: str | None = None,
    starts_at: str = "2024-05-01T10:00:00Z",
    refire: int = 0,
    event_id: int | None = None,
    changed: bool = True,
) -> PriorRun:
    # One run per (rule, occurrence): each prior run is its own earlier alert unless told.
    return PriorRun(
        run_id=run_id,
        rule=rule,
        target=target,
        fingerprint=fingerprint or f"fp0-{run_id}",
        starts_at=starts_at,
        created_at=NOW - age,
        outcome=RunOutcome.VERIFIED if closed else RunOutcome.VERIFYING,
        closed=closed,
        refire=refire,
        event_id=event_id,
        changed=changed,
    )


def same_episode(
    rule: str = "memory",
    *,
    run_id: str = "run-1",
    closed: bool = False,
    target: Target = WEB,
    fingerprint: str = "fp1",
    refire: int = 0,
    changed: bool = True,
    event_id: int | None = None,
) -> PriorRun:
    return prior(
        rule,
        run_id=run_id,
        closed=closed,
        target=target,
        fingerprint=fingerprint,
        starts_at=STARTS,
        refire=refire,
        changed=changed,
        event_id=event_id,
    )


NO_HISTORY = History()


def run_plan(rules: RuleSet, history: History = NO_HISTORY, **labels: str) -> Plan:
    base = {"alertname": "HighMemoryUsage", "namespace": "shop", "deployment": "web"}
    return plan(event({**base, **labels}), rules, history, POLICY, now=NOW)


# --------------------------------------------------------------------------------------------
# firing


def test_first_occurrence_runs_only_the_unconditional_steps(rules: RuleSet) -> None:
    result = run_plan(rules)
    (run,) = result.runs
    assert run.rule == "memory"
    assert run.target == WEB
    assert run.steps == (StepPlan(index=0, action="test.restart", params={}, needs_approval=False),)
    assert run.guards == GuardSpec(cooldown_s=900.0, max_runs=3, max_runs_per_s=3600.0)
    assert run.verify_within_s == 600.0
    assert run.occurrence == 1
    assert result.skips == ()
    assert result.resolves == ()


H = timedelta(hours=1)
EPS = timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("ages", "steps", "occurrence"),
    [
        pytest.param([], [0], 1, id="first"),
        pytest.param([30 * timedelta(minutes=1)], [0, 1], 2, id="second-within-1h"),
        pytest.param([H], [0, 1], 2, id="exactly-at-within-counts"),
        pytest.param([H + EPS], [0], 2, id="just-outside-1h-still-inside-1d"),
        pytest.param([H - EPS], [0, 1], 2, id="just-inside-1h"),
        pytest.param([2 * H, 30 * timedelta(minutes=1)], [0, 1, 2], 3, id="third-within-1d"),
        pytest.param([2 * H, 3 * H], [0, 2], 3, id="third-but-not-within-1h"),
        pytest.param([24 * H, 24 * H], [0, 2], 3, id="exactly-at-1d-counts"),
        pytest.param([24 * H + EPS, 24 * H + EPS], [0], 1, id="outside-1d"),
        pytest.param([timedelta(0)], [0, 1], 2, id="same-instant"),
    ],
)
def test_repeated_escalation(
    rules: RuleSet, ages: list[timedelta], steps: list[int], occurrence: int
) -> None:
    history = History(recent_runs=tuple(prior(age=a, run_id=f"r{i}") for i, a in enumerate(ages)))
    (run,) = run_plan(rules, history).runs
    assert [s.index for s in run.steps] == steps
    assert run.occurrence == occurrence


class _Walked(tuple[PriorRun, ...]):
    """Recent runs that count how often they are walked."""

    walks = 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        type(self).walks += 1
        return super().__iter__()


def test_repetitions_are_counted_once_per_window(rules: RuleSet) -> None:
    # The rule's windows: 1h (test.grow), 1d (test.undo), and 1d again as its widest, which
    # the run's occurrence is counted over. A storm's every event walked its recent runs once
    # for each; once per window is enough, with the same plan.
    ages = [2 * H, 30 * timedelta(minutes=1)]
    recent = _Walked(prior(age=a, run_id=f"r{i}") for i, a in enumerate(ages))
    _Walked.walks = 0
    (run,) = run_plan(rules, History(recent_runs=recent)).runs
    assert _Walked.walks == 2
    assert [s.index for s in run.steps] == [0, 1, 2]
    assert run.occurrence == 3


def test_escalated_step_carries_params_and_approval(rules: RuleSet) -> None:
    history = History(recent_runs=(prior(), prior(run_id="r2", age=2 * H)))
    (run,) = run_plan(rules, history).runs
    assert run.steps[1:] == (
        StepPlan(
            1,
            "test.grow",
            {"container": "app", "factor": 1.5},
            needs_approval=True,
            description="repeated 2 within 1h: this is occurrence 2, holds",
        ),
        StepPlan(
            2,
            "test.undo",
            {},
            needs_approval=True,
            description="repeated 3 within 1d: this is occurrence 3, holds",
        ),
    )


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(prior("queue"), id="other-rule"),
        pytest.param(prior(target=Target("Deployment", "shop", "api")), id="other-name"),
        pytest.param(prior(target=Target("Deployment", "billing", "web")), id="other-namespace"),
        pytest.param(prior(target=Target("StatefulSet", "shop", "web")), id="other-kind"),
    ],
)
def test_repetitions_count_only_the_same_rule_and_target(rules: RuleSet, other: PriorRun) -> None:
    (run,) = run_plan(rules, History(recent_runs=(other,))).runs
    assert [s.index for s in run.steps] == [0]
    assert run.occurrence == 1


def test_existing_run_for_the_episode_is_skipped(rules: RuleSet) -> None:
    history = History(episode_runs=(same_episode(),))
    result = run_plan(rules, history)
    assert result == Plan(event_id=7, skips=(Skip(RUN_EXISTS, "memory"),))
    assert result.is_empty


def test_the_run_this_event_created_on_an_earlier_attempt_is_no_skip(rules: RuleSet) -> None:
    # A retried event takes its own run up (the pipeline does): nothing was skipped, and the
    # review must not say "run already exists" of an alert that was acted on.
    history = History(episode_runs=(same_episode(event_id=7),))
    result = run_plan(rules, history)
    assert result == Plan(event_id=7)
    assert result.is_empty


def test_existing_run_of_another_rule_does_not_block(rules: RuleSet) -> None:
    history = History(episode_runs=(same_episode("memory-critical"),))
    assert [r.rule for r in run_plan(rules, history).runs] == ["memory"]


def test_late_firing_after_resolved_is_skipped(rules: RuleSet) -> None:
    result = run_plan(rules, History(episode_resolved=True))
    assert result == Plan(event_id=7, skips=(Skip(LATE_FIRING),))


def test_no_rule_matches(rules: RuleSet) -> None:
    result = run_plan(rules, alertname="DiskFull")
    assert result == Plan(event_id=7, skips=(Skip(NO_RULE),))


def test_matching_uses_the_alerts_labels_not_its_annotations(rules: RuleSet) -> None:
    # An alert whose alertname only appears in an annotation is not that alert.
    result = plan(
        event(
            {"alertname": "Other", "namespace": "shop", "deployment": "web"},
            annotations={"alertname": "HighMemoryUsage"},
        ),
        rules,
        History(),
        POLICY,
        now=NOW,
    )
    assert result.skips == (Skip(NO_RULE),)


def test_every_matching_rule_plans_in_rule_order(rules: RuleSet) -> None:
    labels = {
        "alertname": "HighMemoryUsage",
        "severity": "critical",
        "namespace": "shop",
        "deployment": "web",
    }
    result = plan(
        event(labels, annotations={"owner": "web-owner"}), rules, History(), POLICY, now=NOW
    )
    assert [(r.rule, r.target.name) for r in result.runs] == [
        ("memory", "web"),
        ("memory-critical", "web-owner"),
    ]
    assert result.runs[1].steps[0].needs_approval is True
    assert result.runs[1].guards == GuardSpec()
    assert result.runs[1].verify_within_s is None


@pytest.mark.parametrize(
    ("namespace", "deployment", "reason"),
    [
        pytest.param(
            "kube-system",
            "web",
            "invalid target: namespace 'kube-system' is not allowed by policy "
            "(allow=[], deny=['kube-system'])",
            id="denied-namespace",
        ),
        pytest.param(
            "../etc",
            "web",
            "invalid target: namespace '../etc' is not a DNS-1123 label "
            "(a-z, 0-9, '-', at most 63)",
            id="path",
        ),
        pytest.param(
            "shop",
            "web/../../x",
            "invalid target: name 'web/../../x' is not a DNS-1123 subdomain "
            "(a-z, 0-9, '-', '.', at most 253)",
            id="slash-in-name",
        ),
        pytest.param(
            "shop\nkube-system",
            "web",
            "invalid target: namespace 'shop\\nkube-system' is not a DNS-1123 label "
            "(a-z, 0-9, '-', at most 63)",
            id="newline",
        ),
        pytest.param(
            "shop",
            "{{ labels.namespace }}",
            "invalid target: name '{{ labels.namespace }}' is not a DNS-1123 subdomain "
            "(a-z, 0-9, '-', '.', at most 253)",
            id="template-in-value-is-not-rendered-again",
        ),
        pytest.param(
            "",
            "web",
            "invalid target: label 'namespace' used by template '{{ labels.namespace }}' is "
            "missing or empty",
            id="missing-label",
        ),
    ],
)
def test_hostile_or_missing_labels_skip_instead_of_running(
    rules: RuleSet, namespace: str, deployment: str, reason: str
) -> None:
    result = run_plan(rules, namespace=namespace, deployment=deployment)
    assert result == Plan(event_id=7, skips=(Skip(reason, "memory"),))


def test_a_bad_target_for_one_rule_does_not_stop_another(rules: RuleSet) -> None:
    labels = {
        "alertname": "HighMemoryUsage",
        "severity": "critical",
        "namespace": "shop",
        "deployment": "web",
    }
    result = plan(event(labels), rules, History(), POLICY, now=NOW)  # no `owner` annotation
    assert [r.rule for r in result.runs] == ["memory"]
    assert [s.rule for s in result.skips] == ["memory-critical"]
    assert result.skips[0].reason.startswith("invalid target: annotation 'owner'")


# --------------------------------------------------------------------------------------------
# resolved


def resolved(rules: RuleSet, history: History) -> Plan:
    return plan(event(status=Status.RESOLVED), rules, history, POLICY, now=NOW)


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


# --------------------------------------------------------------------------------------------
# properties

HOSTILE = st.sampled_from(
    [
        "shop",
        "web",
        "kube-system",
        "billing",
        "../etc",
        "a/b",
        "",
        "UPPER",
        "x" * 64,
        "ns\n",
        "{{ labels.namespace }}",
        "a.b",
        "-lead",
        "café",
        " shop",
    ]
)
# Mostly valid values, so that runs are actually planned (one_of picks a branch uniformly);
# the rest hostile or arbitrary.
VALID = st.sampled_from(["shop", "billing", "web", "workers"])
LABEL_VALUES = st.one_of(VALID, VALID, VALID, HOSTILE, st.text())
LABELS = st.fixed_dictionaries(
    {
        "alertname": st.sampled_from(["HighMemoryUsage", "QueueBacklog", "Other"]),
        "namespace": LABEL_VALUES,
        "deployment": LABEL_VALUES,
    },
    optional={"severity": st.sampled_from(["critical", "warning"])},
)
ANNOTATIONS = st.fixed_dictionaries({}, optional={"owner": LABEL_VALUES})
POLICIES = st.builds(
    NamespacePolicy,
    allow=st.sampled_from([(), ("shop",), ("shop", "billing")]),
    deny=st.sampled_from([(), ("kube-system",), ("shop",)]),
)
TARGETS = st.builds(
    Target,
    kind=st.sampled_from(["Deployment", "StatefulSet"]),
    namespace=st.sampled_from(["shop", "billing"]),
    name=st.sampled_from(["web", "workers", "api"]),
)
PRIORS = st.builds(
    PriorRun,
    run_id=st.text(min_size=1, max_size=4),
    rule=st.sampled_from(["memory", "memory-critical", "queue", "gone"]),
    target=TARGETS,
    fingerprint=st.sampled_from(["fp1", "fp2"]),
    starts_at=st.sampled_from([STARTS, "2024-05-01T10:00:00Z"]),
    created_at=st.integers(min_value=-3 * 86400, max_value=60).map(
        lambda s: NOW + timedelta(seconds=s)
    ),
    outcome=st.sampled_from(list(RunOutcome)),
    closed=st.booleans(),
)
HISTORIES = st.builds(
    History,
    episode_runs=st.lists(PRIORS, max_size=2).map(tuple),
    recent_runs=st.lists(PRIORS, max_size=6).map(tuple),
    episode_resolved=st.sampled_from([False, False, False, True]),
)
EVENTS = st.builds(
    event,
    LABELS,
    status=st.sampled_from(list(Status)),
    annotations=ANNOTATIONS,
    fingerprint=st.sampled_from(["fp1", "fp2"]),
)


# Compiled once: hypothesis calls each property a hundred times.
PROPERTY_RULES = compile_files({"rules.yaml": RULES}, registry(), POLICY)
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


# --------------------------------------------------------------------------------------------
# the undo kept with the run


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
