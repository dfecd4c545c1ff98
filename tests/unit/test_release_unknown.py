"""A rollout whose history cannot tell the newest release (its ReplicaSets pruned by
``revisionHistoryLimit``): the fact says so, the conditions decide only what is known, and
``or_release_unknown`` lets a rule choose its safe step. Pure: facts are plain data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.engine import plan
from receiver.facts import FactKind, FactReading, Facts, Rollout, within
from receiver.model import AlertEvent, History, NamespacePolicy, Status, Target
from receiver.rules.compile import compile_files
from receiver.rules.model import LiveCondition, RuleSet
from tests.support.rules import TARGET, errors_of, one_rule, registry

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
POLICY = NamespacePolicy()
WEB = Target("Deployment", "shop", "web")
MIN = timedelta(minutes=1)

RULES = """\
rules:
  - name: strict
    match: ['alertname="Strict"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: test.undo
        when: {rolled_out_within: 30m}
      - action: test.scale
        when: {not_rolled_out_within: 30m}
        params: {delta: 2, max: 10}
      - action: test.restart
  - name: scale-when-unknown
    match: ['alertname="HighErrorRate"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: test.undo
        when: {rolled_out_within: 30m}
      - action: test.scale
        when: {not_rolled_out_within: 30m, or_release_unknown: true}
        params: {delta: 2, max: 10}
"""


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return compile_files({"rules.yaml": RULES}, registry(), POLICY)


def event(alertname: str) -> AlertEvent:
    return AlertEvent(
        id=11,
        fingerprint="fp",
        starts_at="2026-03-02T11:58:00Z",
        status=Status.FIRING,
        labels={"alertname": alertname, "namespace": "shop", "deployment": "web"},
        annotations={},
        received_at=NOW,
    )


def unknown(age: timedelta, *, bounded: bool = True) -> Facts:
    value = Rollout(2, "web-59b7", NOW - age, known=False, bounded=bounded)
    return Facts.of(FactReading(FactKind.ROLLOUT, WEB, value=value, read_at=NOW))


def decided(rules: RuleSet, alertname: str, facts: Facts) -> list[tuple[str, bool, str]]:
    result = plan(event(alertname), rules, History(), POLICY, now=NOW, facts=facts)
    if not result.runs:
        return []
    (run,) = result.runs
    assert run.decision is not None
    return [(s["action"], s["included"], s["why"][0]) for s in run.decision["steps"]]


def test_or_release_unknown_compiles_and_needs_a_rollout_condition(rules: RuleSet) -> None:
    rule = rules.by_name("scale-when-unknown")
    assert rule is not None
    assert rule.steps[1].conditions == (
        LiveCondition(FactKind.ROLLOUT, 1800.0, negate=True, or_unknown=True),
    )
    assert rule.steps[0].conditions == (LiveCondition(FactKind.ROLLOUT, 1800.0),)
    alone = TARGET + "steps:\n  - action: test.restart\n    when: {or_release_unknown: true}\n"
    (error,) = errors_of({"a.yaml": one_rule(alone)})
    assert "`when` needs a condition" in error
    repeated = (
        TARGET + "steps:\n  - action: test.restart\n"
        "    when: {repeated: {times: 2, within: 1h}, or_release_unknown: true}\n"
    )
    (error,) = errors_of({"a.yaml": one_rule(repeated)})
    assert "or_release_unknown qualifies rolled_out_within or not_rolled_out_within" in error
    text = (
        TARGET + "steps:\n  - action: test.restart\n"
        "    when: {rolled_out_within: 5m, or_release_unknown: 'yes'}\n"
    )
    (error,) = errors_of({"a.yaml": one_rule(text)})
    assert "is text, not a boolean" in error


def test_a_history_that_cannot_tell_decides_nothing_by_default(rules: RuleSet) -> None:
    """revisionHistoryLimit 0 after a restart 5 minutes ago: the release may be 10 minutes or a
    week old. Neither the rollback nor the scale-out is chosen on a guess, and the recorded
    sentence says what was known."""
    steps = decided(rules, "Strict", unknown(5 * MIN))
    assert [(a, included) for a, included, _ in steps] == [
        ("test.undo", False),
        ("test.scale", False),
        ("test.restart", True),
    ]
    why = steps[0][2]
    assert why.startswith("rolled_out_within 30m: cannot tell (newest release not known: ")
    assert "revision 2 (ReplicaSet web-59b7, created 5m ago) or an earlier one" in why
    assert "revisionHistoryLimit" in why
    assert "at least 5m old, maybe older" in why
    assert why.endswith("step left out")
    result = plan(event("Strict"), rules, History(), POLICY, now=NOW, facts=unknown(5 * MIN))
    (run,) = result.runs
    assert run.decision is not None
    (fact,) = run.decision["facts"]
    assert (fact["revision"], fact["known"], fact["bounded"]) == (2, False, True)


def test_or_release_unknown_plans_the_safe_step_saying_so(rules: RuleSet) -> None:
    steps = decided(rules, "HighErrorRate", unknown(5 * MIN))
    assert [(a, included) for a, included, _ in steps] == [
        ("test.undo", False),
        ("test.scale", True),
    ]
    assert steps[1][2].startswith(
        "not_rolled_out_within 30m or release unknown: holds, the release's age cannot be told "
        "(newest release not known: revision 2"
    )


@pytest.mark.parametrize("alertname", ["Strict", "HighErrorRate"])
def test_an_unknown_release_older_than_the_window_is_still_decided(
    rules: RuleSet, alertname: str
) -> None:
    """The oldest revision the release can be was created 2 hours ago: the release is older
    still, so it was not rolled out within 30 minutes, whichever revision it was."""
    steps = decided(rules, alertname, unknown(120 * MIN))
    assert [(a, included) for a, included, _ in steps][:2] == [
        ("test.undo", False),
        ("test.scale", True),
    ]
    assert steps[1][2].endswith("so the release is at least 2h old)")


def test_a_rolled_back_replicaset_bounds_nothing(rules: RuleSet) -> None:
    steps = decided(rules, "Strict", unknown(120 * MIN, bounded=False))
    assert [included for _, included, _ in steps] == [False, False, True]
    assert "was rolled back to, so its age says nothing of the release's" in steps[0][2]


def test_the_creation_is_named_as_such() -> None:
    rollout = Rollout(1, "web-1", NOW - 5 * MIN)
    holds, why = within(rollout, 1800.0, NOW, negate=False, or_unknown=False)
    assert holds is True
    assert why == (
        "holds (newest release: revision 1 (the Deployment's creation), ReplicaSet web-1, "
        "created 5m ago)"
    )


@given(
    st.integers(min_value=0, max_value=10**6),
    st.integers(min_value=0, max_value=10**6),
    st.integers(min_value=1, max_value=10**5),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)
def test_what_is_decided_holds_for_every_release_the_history_allows(
    seen_s: int, older_by_s: int, window_s: int, negate: bool, or_unknown: bool, bounded: bool
) -> None:
    """The oldest revision the release can be was created ``seen_s`` ago; the true release
    ``older_by_s`` before that (any value, when bounded). A decided answer is the right one for
    every such release; an undecided one is None, or True only when the rule asked for it."""
    rollout = Rollout(2, "web-2", NOW - timedelta(seconds=seen_s), known=False, bounded=bounded)
    holds, why = within(rollout, window_s, NOW, negate=negate, or_unknown=or_unknown)
    truth = ((seen_s + older_by_s) <= window_s) != negate
    if "cannot be told" in why:
        assert holds is True
        assert or_unknown
    elif holds is None:
        assert why.startswith("cannot tell")
        assert not or_unknown
    else:
        assert bounded
        assert holds is truth
    # Known: decided as before, on the release's own age.
    known = Rollout(7, "web-7", NOW - timedelta(seconds=seen_s))
    assert within(known, window_s, NOW, negate=negate, or_unknown=or_unknown)[0] == (
        (seen_s <= window_s) != negate
    )
