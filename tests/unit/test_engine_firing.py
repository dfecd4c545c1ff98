"""engine.plan() on a firing alert, every branch as a table: escalation on repetitions,
skips (run exists, late firing, no rule, bad target) and rule order."""

from __future__ import annotations

from datetime import timedelta

import pytest

from receiver.engine import LATE_FIRING, NO_RULE, RUN_EXISTS, plan
from receiver.model import GuardSpec, History, Plan, PriorRun, Skip, StepPlan, Target
from receiver.rules.model import RuleSet
from tests.support import engine_cases
from tests.support.engine_cases import NOW, POLICY, WEB, event, prior, run_plan, same_episode

# The engine's rule set, compiled once per module (a fixture: tests take it by name).
rules = engine_cases.rules


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
