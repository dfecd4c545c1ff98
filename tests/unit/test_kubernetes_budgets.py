"""``budgets.forecast``: PodDisruptionBudgets counted down pod by pod as the Eviction API
would (kubernetes v1.36 ``pkg/registry/core/pod/storage/eviction.go``), and the label
selectors that pick a pod's budgets. The integration tests
(tests/integration/test_kubernetes_delete_pod_forecast.py) hold the forecast against the API
server; these cover the cases a test cluster makes awkward."""

from __future__ import annotations

from typing import Any

import pytest

from remediations.kubernetes.budgets import Forecast, forecast
from remediations.kubernetes.objects import selector_matches


def pod(name: str, *, ready: bool = True, phase: str = "Running", **labels: str) -> dict[str, Any]:
    status = "True" if ready else "False"
    return {
        "metadata": {"name": name, "labels": labels or {"app": "web"}},
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": status}]},
    }


def budget(
    name: str = "web",
    *,
    allowed: int,
    healthy: int,
    desired: int,
    selector: dict[str, Any] | None = None,
    policy: str | None = None,
    stale: bool = False,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "web"}} if selector is None else selector
    }
    if policy is not None:
        spec["unhealthyPodEvictionPolicy"] = policy
    return {
        "metadata": {"name": name, "generation": 2},
        "spec": spec,
        "status": {
            "disruptionsAllowed": allowed,
            "currentHealthy": healthy,
            "desiredHealthy": desired,
            "observedGeneration": 1 if stale else 2,
        },
    }


def test_each_pod_uses_one_disruption_until_none_is_left() -> None:
    told = forecast([pod("a"), pod("b"), pod("c")], [budget(allowed=1, healthy=3, desired=2)])
    assert told == Forecast(
        ("a",),
        ("b", "c"),
        "the disruption budget web allows 1 disruption(s) now, taken by a: it needs 2 healthy "
        "pods and would have 2",
        "the budget allows more once enough of its pods are ready",
    )
    assert told.after() == {"deleted": ["a"], "not_deleted": ["b", "c"]}


def test_nothing_refused_deletes_every_pod() -> None:
    told = forecast([pod("a"), pod("b")], [budget(allowed=2, healthy=3, desired=1)])
    assert (told, told.after(), told.summary()) == (
        Forecast(("a", "b")),
        {"deleted": ["a", "b"]},
        "",
    )


def test_a_pod_no_budget_selects_or_that_is_pending_is_not_counted() -> None:
    budgets = [budget(allowed=0, healthy=2, desired=2)]
    pods = [pod("other", app="db"), pod("new", phase="Pending"), pod("a")]
    told = forecast(pods, budgets)
    assert (told.evicted, told.refused) == (("other", "new"), ("a",))
    assert told.reason == (
        "the disruption budget web allows no disruption now: it needs 2 healthy pods and has 2"
    )


@pytest.mark.parametrize(
    ("policy", "healthy", "passes"),
    [
        (None, 2, True),  # IfHealthyBudget by default: the budget is healthy
        ("IfHealthyBudget", 1, False),  # not healthy: the unready pod needs an allowance
        ("AlwaysAllow", 1, True),
    ],
)
def test_an_unready_pod_passes_when_its_policy_lets_it(
    policy: str | None, healthy: int, passes: bool
) -> None:
    told = forecast(
        [pod("sick", ready=False)],
        [budget(allowed=0, healthy=healthy, desired=2, policy=policy)],
    )
    assert told.evicted == (("sick",) if passes else ())


def test_a_pod_two_budgets_select_is_refused() -> None:
    budgets = [
        budget("b", allowed=5, healthy=5, desired=0),
        budget("a", allowed=5, healthy=5, desired=0),
    ]
    told = forecast([pod("x")], budgets)
    assert told.refused == ("x",)
    assert told.reason.startswith("budgets a, b all select it")
    assert told.advice.startswith("the Eviction API evicts no pod that two budgets select")


def test_a_stale_budget_says_so() -> None:
    told = forecast([pod("a")], [budget(allowed=0, healthy=2, desired=2, stale=True)])
    assert told.reason.endswith("which the disruption controller has not observed yet")


def test_the_dry_run_refusal_reads_as_the_live_one() -> None:
    told = forecast([pod("a"), pod("b")], [budget(allowed=1, healthy=2, desired=1)])
    assert told.refusal("shop").message == (
        "dry run, nothing evicted: a PodDisruptionBudget would refuse evicting pod b in "
        "namespace shop (the disruption budget web allows 1 disruption(s) now, taken by a: it "
        "needs 1 healthy pods and would have 1); would not evict: b; would evict: a; the "
        "budget allows more once enough of its pods are ready"
    )
    assert not told.refusal("shop").may_have_acted


@pytest.mark.parametrize(
    ("selector", "labels", "selects"),
    [
        (None, {"app": "web"}, False),  # absent: nothing
        ({}, {"app": "web"}, True),  # empty: everything
        ({"matchLabels": {"app": "web"}}, {"app": "web", "x": "1"}, True),
        ({"matchLabels": {"app": "web"}}, {"app": "db"}, False),
        ({"matchExpressions": [{"key": "t", "operator": "In", "values": ["a"]}]}, {"t": "a"}, True),
        ({"matchExpressions": [{"key": "t", "operator": "In", "values": ["a"]}]}, {}, False),
        ({"matchExpressions": [{"key": "t", "operator": "NotIn", "values": ["a"]}]}, {}, True),
        (
            {"matchExpressions": [{"key": "t", "operator": "NotIn", "values": ["a"]}]},
            {"t": "a"},
            False,
        ),
        ({"matchExpressions": [{"key": "t", "operator": "Exists"}]}, {"t": ""}, True),
        ({"matchExpressions": [{"key": "t", "operator": "DoesNotExist"}]}, {"t": ""}, False),
        ({"matchExpressions": [{"key": "t", "operator": "Near"}]}, {"t": ""}, False),
    ],
)
def test_selector_matches_as_kubernetes_does(
    selector: dict[str, Any] | None, labels: dict[str, str], selects: bool
) -> None:
    assert selector_matches(selector, labels) is selects
