"""A Deployment with nothing to roll back to (a new one: its creation is its only release):
what ``kubernetes.rollout_undo`` would go back to (``release.undo_target``), the rollout fact
that carries it, the ``can_roll_back`` / ``or_nothing_to_roll_back`` conditions, and the
shipped HighErrorRate rule deciding on them. Pure: plain-dict objects and plain facts."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.engine import plan
from receiver.facts import FactKind, FactReading, Facts, Rollout, can_roll_back, within
from receiver.model import AlertEvent, History, NamespacePolicy, Status, Target
from receiver.rules.compile import compile_files, lint_files
from receiver.rules.model import RuleSet
from remediations.kubernetes.release import UndoTarget, default_revision, undo_target
from remediations.registry import default_registry

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
POLICY = NamespacePolicy()
WEB = Target("Deployment", "shop", "web")
MIN = timedelta(minutes=1)
SHIPPED = Path(__file__).parents[2] / "rules" / "high-error-rate.yaml"
UNDO, SCALE = "kubernetes.rollout_undo", "kubernetes.scale"


def template(image: str, restarted: str = "") -> dict[str, Any]:
    annotations = {"kubectl.kubernetes.io/restartedAt": restarted} if restarted else {}
    return {
        "metadata": {
            "labels": {"app": "web", "pod-template-hash": image[-1]},
            **({"annotations": annotations} if annotations else {}),
        },
        "spec": {"containers": [{"name": "app", "image": image}]},
    }


def rs(tpl: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "web-x"}, "spec": {"template": tpl}}


# -- what rollout_undo would go back to --------------------------------------------------------


def test_a_new_deployment_has_nothing_to_roll_back_to() -> None:
    one = template("img/a:1")
    got = undo_target({1: rs(one)}, one)
    assert got.revision is None
    assert got.nothing == (
        "no previous revision to roll back to: revision 1 is its creation, its first release"
    )


def test_restarts_after_the_creation_are_nothing_to_roll_back_to() -> None:
    """kubectl would go back to revision 2, a restart of the same template; the rollback's
    default skips restarts, so there is nothing: the fact says so, naming them."""
    one = template("img/a:1")
    history = {1: rs(one), 2: rs(template("img/a:1", "t1")), 3: rs(template("img/a:1", "t2"))}
    got = undo_target(history, template("img/a:1", "t2"))
    assert got.revision is None
    assert got.nothing == (
        "no previous revision to roll back to: revisions 2, 3 after revision 1 only restarted "
        "its pods or are remediator's own changes, not releases, and revision 1 is its creation"
    )


def test_a_pruned_history_has_nothing_known_to_roll_back_to() -> None:
    got = undo_target({2: rs(template("img/a:1", "t1"))}, template("img/a:1", "t1"))
    assert got.revision is None
    assert "the ReplicaSet of revision 1 is gone (spec.revisionHistoryLimit)" in got.nothing


def test_a_release_with_an_earlier_revision_is_rolled_back_to_it() -> None:
    one, two = template("img/a:1"), template("img/a:2")
    assert undo_target({1: rs(one), 2: rs(two)}, two) == UndoTarget(1)
    assert undo_target({1: rs(one), 2: rs(two), 3: rs(template("img/a:2", "t"))}, two) == (
        UndoTarget(1)
    )


@pytest.mark.parametrize(
    ("live", "says"),
    [
        pytest.param(template("img/a:1"), "is the template it runs", id="runs-it-already"),
        pytest.param(template("img/a:1", "t"), "only by a restart", id="only-a-restart-apart"),
    ],
)
def test_a_previous_revision_that_is_the_live_template_is_nothing_to_roll_back_to(
    live: dict[str, Any], says: str
) -> None:
    """The action would do nothing (kubectl's "skipped rollback") or refuse."""
    got = undo_target({1: rs(template("img/a:1")), 2: rs(template("img/a:2"))}, live)
    assert got.revision is None
    assert got.nothing.startswith("no other template to roll back to: revision 1, ")
    assert says in got.nothing


@given(st.lists(st.booleans(), min_size=1, max_size=10), st.integers(min_value=0, max_value=10))
def test_undo_target_is_the_rollbacks_default_and_none_exactly_when_it_has_none(
    releases: list[bool], keep: int
) -> None:
    """Any history of releases and restarts, pruned as the controller prunes it: the target
    is ``default_revision`` (the action's choice) whenever that exists, and there is nothing
    to roll back to exactly when the newest release is the creation or cannot be told."""
    full: dict[int, dict[str, Any]] = {}
    truth = 1
    tpl = template("img/a:0")
    for revision, release in enumerate(releases, start=1):
        if revision > 1 and release:
            tpl, truth = template(f"img/a:{revision}"), revision
        else:
            tpl = template(tpl["spec"]["containers"][0]["image"], str(revision))
        full[revision] = rs(tpl)
    newest = len(releases)
    kept = {r: full[r] for r in full if r >= newest - keep}
    got = undo_target(kept, tpl)
    assert got.revision == default_revision(kept)
    tells = truth in kept and (truth == 1 or truth - 1 in kept)
    assert (got.revision is None) is (truth == 1 or not tells)
    assert bool(got.nothing) is (got.revision is None)


def test_a_paused_deployment_has_nothing_to_roll_back_to_whatever_its_history() -> None:
    """``rollout_undo`` refuses a paused Deployment before it looks at the history, as kubectl
    does ("you cannot rollback a paused deployment; resume it first")."""
    one, two = template("img/a:1"), template("img/a:2")
    got = undo_target({1: rs(one), 2: rs(two)}, two, paused=True)
    assert got.revision is None
    assert got.nothing.startswith("paused (spec.paused): a paused Deployment cannot be rolled")
    assert undo_target({1: rs(one)}, one, paused=True) == got


# -- the fact and the conditions ---------------------------------------------------------------


def test_the_fact_of_a_creation_or_an_unknown_release_has_nothing_to_roll_back_to() -> None:
    assert Rollout(1, "web-1", NOW).no_rollback.endswith(
        "revision 1 is its creation, its first release"
    )
    assert "revision 1 is gone" in Rollout(2, "web-2", NOW, known=False).no_rollback
    assert Rollout(7, "web-7", NOW).no_rollback == ""
    # What the probe read wins over what is implied.
    said = Rollout(1, "web-1", NOW, no_rollback="revisions 2 after it only restarted its pods")
    assert said.no_rollback == "revisions 2 after it only restarted its pods"


def test_or_nothing_to_roll_back_holds_for_a_new_deployment_and_says_why() -> None:
    new = Rollout(1, "web-1", NOW - 5 * MIN)
    assert within(new, 1800.0, NOW, negate=True, or_unknown=True)[0] is False
    holds, why = within(new, 1800.0, NOW, negate=True, or_unknown=True, or_no_rollback=True)
    assert holds is True
    assert why == (
        "holds, there is nothing to roll back to (no previous revision to roll back to: "
        "revision 1 is its creation, its first release); by the release's age alone it does "
        "not hold (newest release: revision 1 (the Deployment's creation), ReplicaSet web-1, "
        "created 5m ago)"
    )
    # A release with a revision before it is decided on its age alone.
    recent = Rollout(7, "web-7", NOW - 5 * MIN, rollback_to=6)
    assert within(recent, 1800.0, NOW, negate=True, or_unknown=True, or_no_rollback=True)[0] is (
        False
    )


def test_can_roll_back_names_the_revision_or_why_there_is_none() -> None:
    assert can_roll_back(Rollout(7, "web-7", NOW, rollback_to=6), True) == (
        True,
        "holds (revision 6 before the newest release (revision 7) to roll back to)",
    )
    holds, why = can_roll_back(Rollout(1, "web-1", NOW), True)
    assert holds is False
    assert why.startswith("does not hold (no previous revision to roll back to: revision 1")
    assert can_roll_back(Rollout(1, "web-1", NOW), False)[0] is True


# -- the shipped rule --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> RuleSet:
    return compile_files({"high-error-rate.yaml": SHIPPED.read_text()}, default_registry(), POLICY)


def event() -> AlertEvent:
    return AlertEvent(
        id=11,
        fingerprint="fp",
        starts_at="2026-03-02T11:58:00Z",
        status=Status.FIRING,
        labels={"alertname": "HighErrorRate", "namespace": "shop", "deployment": "web"},
        annotations={},
        received_at=NOW,
    )


def decide(rules: RuleSet, rollout: Rollout) -> tuple[list[str], Mapping[str, Any]]:
    facts = Facts.of(FactReading(FactKind.ROLLOUT, WEB, value=rollout, read_at=NOW))
    (run,) = plan(event(), rules, History(), POLICY, now=NOW, facts=facts).runs
    assert run.decision is not None
    return [s.action for s in run.steps], run.decision


def test_a_new_deployment_is_scaled_out_and_the_decision_says_there_is_nothing_to_roll_back(
    shipped: RuleSet,
) -> None:
    planned, decision = decide(shipped, Rollout(1, "web-1", NOW - 5 * MIN))
    assert planned == [SCALE]
    steps = {s["action"]: (s["included"], s["why"]) for s in decision["steps"]}
    included, why = steps[UNDO]
    assert not included
    assert why[0].startswith("rolled_out_within 30m: holds (newest release: revision 1")
    assert why[1].startswith(
        "can_roll_back true: does not hold (no previous revision to roll back to: revision 1 "
        "is its creation"
    )
    included, why = steps[SCALE]
    assert included
    assert why == [
        "not_rolled_out_within 30m or release unknown or nothing to roll back: holds, there is "
        "nothing to roll back to (no previous revision to roll back to: revision 1 is its "
        "creation, its first release); by the release's age alone it does not hold (newest "
        "release: revision 1 (the Deployment's creation), ReplicaSet web-1, created 5m ago)"
    ]
    (fact,) = decision["facts"]
    assert fact["nothing_to_roll_back"].startswith("no previous revision to roll back to")


def test_a_recent_release_with_an_earlier_revision_is_still_rolled_back(
    shipped: RuleSet,
) -> None:
    planned, decision = decide(shipped, Rollout(7, "web-7", NOW - 5 * MIN, rollback_to=6))
    assert planned == [UNDO]
    (fact,) = decision["facts"]
    assert fact["rollback_to"] == 6
    assert "nothing_to_roll_back" not in fact


def test_a_recent_rollback_is_scaled_out_not_rolled_back_again(shipped: RuleSet) -> None:
    """x:1, x:2 (4 minutes ago), x:3, then a human's ``kubectl rollout undo``: revision 4 runs
    the x:2 ReplicaSet again, created 4 minutes ago. Rolling "back" from it would ship x:3, the
    release the human removed: the fact has nothing to roll back to, and the rule scales out."""
    one, two, three = (rs(template(f"img/a:{n}")) for n in (1, 2, 3))
    two["metadata"]["annotations"] = {"deployment.kubernetes.io/revision-history": "2"}
    history = {1: one, 3: three, 4: two}
    undo = undo_target(history, template("img/a:2"))
    assert undo.revision is None
    rollout = Rollout(4, "web-x", NOW - 4 * MIN, no_rollback=undo.nothing, returns_to=2)
    planned, decision = decide(shipped, rollout)
    assert planned == [SCALE]
    steps = {s["action"]: (s["included"], s["why"]) for s in decision["steps"]}
    assert steps[UNDO][1] == [
        "rolled_out_within 30m: holds (newest release: revision 4 (a rollback to the template "
        "of revision 2), ReplicaSet web-x, created 4m ago)",
        f"can_roll_back true: does not hold ({undo.nothing})",
    ]
    (fact,) = decision["facts"]
    assert (fact["returns_to"], fact["nothing_to_roll_back"]) == (2, undo.nothing)
    # A fixture that states only ``returns_to`` has nothing to roll back to either.
    assert Rollout(4, "web-x", NOW, rollback_to=3, returns_to=2).rollback_to is None
    assert decide(shipped, Rollout(4, "web-x", NOW, returns_to=2))[0] == [SCALE]


def test_a_paused_deployment_with_a_recent_release_is_scaled_out_not_rolled_back(
    shipped: RuleSet,
) -> None:
    """The fact as ``probe.newest_rollout`` builds it for a paused Deployment at revision 2:
    the rollback, which would be asked for approval and then refused, is left out."""
    history = {1: rs(template("img/a:1")), 2: rs(template("img/a:2"))}
    undo = undo_target(history, template("img/a:2"), paused=True)
    rollout = Rollout(2, "web-2", NOW, rollback_to=undo.revision, no_rollback=undo.nothing)
    planned, decision = decide(shipped, rollout)
    assert planned == [SCALE]
    steps = {s["action"]: (s["included"], s["why"]) for s in decision["steps"]}
    assert steps[UNDO][1][1].startswith("can_roll_back true: does not hold (paused (spec.paused)")
    (fact,) = decision["facts"]
    assert fact["nothing_to_roll_back"] == undo.nothing


@given(
    revision=st.integers(min_value=1, max_value=12),
    age_s=st.integers(min_value=-600, max_value=10**5),
    known=st.booleans(),
    bounded=st.booleans(),
    same_template=st.booleans(),
)
def test_the_shipped_rule_plans_exactly_one_step_and_a_rollback_only_with_a_target(
    shipped: RuleSet,
    revision: int,
    age_s: int,
    known: bool,
    bounded: bool,
    same_template: bool,
) -> None:
    """Whatever the history says, one of the two steps is planned: the rollback only when it
    has a revision to go back to and the release is recent, the scale-out otherwise."""
    rollout = Rollout(
        revision,
        f"web-{revision}",
        NOW - timedelta(seconds=age_s),
        known=known,
        bounded=bounded or known,
        no_rollback="no other template to roll back to" if same_template else "",
    )
    planned, _ = decide(shipped, rollout)
    able = not rollout.no_rollback
    recent = known and age_s <= 1800
    assert planned == ([UNDO] if able and recent else [SCALE])


# -- misuse ------------------------------------------------------------------------------------

TARGET = "target: {kind: Deployment, namespace: shop, name: web}\n"
SCALE_OTHERWISE = (
    "  - action: kubernetes.scale\n"
    "    when: {not_rolled_out_within: 30m, or_nothing_to_roll_back: true}\n"
    "    params: {delta: 1, max: 3}\n"
)


def lint(body: str) -> list[str]:
    text = "rules:\n  - name: r\n    match: ['alertname=\"A\"']\n" + "".join(
        f"    {line}\n" for line in body.splitlines()
    )
    return [str(e) for e in lint_files({"a.yaml": text}, default_registry(), POLICY)]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            TARGET + "steps:\n  - action: kubernetes.rollout_restart\n"
            "    when: {repeated: {times: 2, within: 1h}, or_nothing_to_roll_back: true}\n",
            "a.yaml:7: rule 'r': steps[0].when: or_nothing_to_roll_back qualifies "
            "rolled_out_within or not_rolled_out_within: give one of them on the same step",
            id="qualifier-without-a-rollout-condition",
        ),
        pytest.param(
            TARGET + "steps:\n  - action: kubernetes.rollout_restart\n"
            "    when: {can_roll_back: 'no'}\n",
            "a.yaml:7: rule 'r': steps[0].when.can_roll_back: 'no' is text, not a boolean",
            id="not-a-boolean",
        ),
        pytest.param(
            "target: {kind: StatefulSet, namespace: shop, name: web}\nsteps:\n"
            "  - action: kubernetes.rollout_restart\n    when: {can_roll_back: false}\n",
            "a.yaml:7: rule 'r': when.can_roll_back reads a Deployment's rollout history; the "
            "target is a StatefulSet",
            id="not-a-deployment",
        ),
        pytest.param(
            TARGET + "steps:\n  - action: kubernetes.rollout_undo\n"
            "    when: {rolled_out_within: 30m, or_nothing_to_roll_back: true}\n",
            "a.yaml:7: rule 'r': steps[0].when.or_nothing_to_roll_back plans "
            "kubernetes.rollout_undo exactly when it has nothing to roll back to, where it "
            "refuses: give the rollback `can_roll_back: true`",
            id="rollback-when-there-is-nothing",
        ),
        pytest.param(
            TARGET + "steps:\n  - action: kubernetes.rollout_undo\n"
            "    when: {can_roll_back: false}\n",
            "a.yaml:7: rule 'r': steps[0].when.can_roll_back plans kubernetes.rollout_undo "
            "exactly when it has nothing to roll back to",
            id="rollback-only-when-there-is-nothing",
        ),
        pytest.param(
            TARGET + "steps:\n  - action: kubernetes.rollout_undo\n"
            "    when: {rolled_out_within: 30m}\n" + SCALE_OTHERWISE,
            "a.yaml:7: rule 'r': steps[0] (kubernetes.rollout_undo) would also be planned when "
            "there is nothing to roll back to, beside steps[1] (or_nothing_to_roll_back: "
            "true), and refuse, which stops the run: add `can_roll_back: true` to "
            "steps[0].when",
            id="rollback-beside-the-other-step",
        ),
    ],
)
def test_misuse_is_an_error_at_its_line_saying_what_to_write(body: str, expected: str) -> None:
    errors = lint(body)
    assert len(errors) == 1, errors
    assert errors[0].startswith(expected), errors[0]


def test_the_pair_as_documented_lints_clean() -> None:
    body = (
        TARGET + "steps:\n  - action: kubernetes.rollout_undo\n"
        "    when: {rolled_out_within: 30m, can_roll_back: true}\n" + SCALE_OTHERWISE
    )
    assert lint(body) == []
