"""Params models of the Kubernetes actions other than set_resources: scale (its desired count,
bounds and restore), set_env, rollout_undo and delete_pod. Pure, no cluster."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from remediations.kubernetes.container import SetEnvParams
from remediations.kubernetes.pods import DeletePodParams
from remediations.kubernetes.rollback import UndoParams
from remediations.kubernetes.scale import ScaleParams


@pytest.mark.parametrize(
    "raw",
    [
        {"max": 5},  # no mode
        {"replicas": 2},  # max is required
        {"replicas": 2, "delta": 1, "max": 5},
        {"delta": 0, "max": 5},
        {"factor": 0, "max": 5},
        {"factor": -1.5, "max": 5},
        {"factor": 11, "max": 5},
        {"replicas": -1, "max": 5},
        {"replicas": 2, "min": 4, "max": 3},
        {"restore": True, "replicas": 2, "max": 5},
        {"replicas": 2, "max": 5, "extra": 1},
        {"replicas": 2, "max": 100000},
    ],
)
def test_scale_params_rejected(raw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ScaleParams.model_validate(raw)


@pytest.mark.parametrize(
    ("raw", "current", "desired"),
    [
        ({"replicas": 3, "max": 5}, 1, 3),
        ({"replicas": 9, "max": 5}, 1, 5),
        ({"replicas": 0, "min": 1, "max": 5}, 3, 1),
        ({"delta": 2, "max": 5}, 2, 4),
        ({"delta": -5, "min": 1, "max": 5}, 3, 1),
        ({"factor": 1.5, "max": 10}, 3, 5),  # 4.5 rounds up when growing
        ({"factor": 0.5, "min": 0, "max": 10}, 3, 1),  # 1.5 rounds down when shrinking
        ({"factor": 0.5, "min": 0, "max": 10}, 1, 0),  # zero, as min: 0 says
        ({"factor": 0.5, "min": 1, "max": 10}, 1, 1),
        ({"delta": -3, "min": 0, "max": 10}, 2, 0),
        ({"factor": 2.0, "max": 10}, 0, 0),
        # A bound limits the step's own change; it is not an order to move there. A raise of a
        # count already above max leaves it (the shipped HighErrorRate and QueueBacklog rules
        # scaled 12 and 25 replicas down to their max of 10 and 20), a lowering of a count
        # already below min leaves it.
        ({"factor": 1.5, "min": 2, "max": 10}, 12, 12),
        ({"factor": 1.5, "min": 1, "max": 20}, 25, 25),
        ({"delta": 2, "max": 10}, 15, 15),
        ({"delta": 2, "max": 10}, 10, 10),
        ({"replicas": 30, "max": 20}, 25, 25),
        ({"factor": 0.5, "min": 3, "max": 10}, 2, 2),
        ({"delta": -2, "min": 5, "max": 10}, 4, 4),
        ({"replicas": 1, "min": 5, "max": 10}, 4, 4),
        # ... and stops at the bound when it crosses it in the direction asked.
        ({"delta": 5, "max": 10}, 8, 10),
        ({"delta": -5, "min": 3, "max": 10}, 6, 3),
        ({"replicas": 3, "min": 4, "max": 10}, 9, 4),
        ({"delta": 1, "min": 4, "max": 10}, 1, 4),
    ],
)
def test_scale_desired(raw: dict[str, Any], current: int, desired: int) -> None:
    assert ScaleParams.model_validate(raw).desired(current) == desired


@pytest.mark.parametrize(
    ("raw", "what"),
    [({"factor": 0.5, "max": 5}, "factor 0.5"), ({"delta": -1, "max": 5}, "delta -1")],
)
def test_a_lowering_without_min_is_refused(raw: dict[str, Any], what: str) -> None:
    """The default min 0 let factor 0.5 take 1 replica to 0: a lowering must say its floor."""
    with pytest.raises(ValidationError) as refused:
        ScaleParams.model_validate(raw)
    assert (
        f"a lowering ({what}) needs min: min: 1 keeps at least one pod, min: 0 lets it scale "
        "the workload to zero replicas (an outage)"
    ) in str(refused.value)
    # A raise, an explicit count and a restore keep the default.
    for fine in ({"factor": 1.5, "max": 5}, {"replicas": 0, "max": 5}, {"restore": True, "max": 5}):
        assert ScaleParams.model_validate(fine).min == 0


def test_scale_factor_of_one_is_refused() -> None:
    with pytest.raises(ValidationError, match="factor must not be 1"):
        ScaleParams.model_validate({"factor": 1, "max": 5})


_BOUND = st.integers(min_value=0, max_value=1000)


@given(
    mode=st.one_of(
        st.builds(lambda n: {"replicas": n}, _BOUND),
        st.builds(lambda n: {"delta": n}, st.integers(-1000, 1000).filter(bool)),
        st.builds(
            lambda f: {"factor": f},
            st.floats(min_value=0.01, max_value=10, allow_nan=False).filter(lambda f: f != 1),
        ),
    ),
    bounds=st.tuples(_BOUND, _BOUND).map(sorted),
    current=_BOUND,
)
def test_scale_never_moves_the_other_way(
    mode: dict[str, Any], bounds: list[int], current: int
) -> None:
    """Whatever the live count: the result is the live count, or within [min, max] and on the
    side of it that was asked; and a count inside the bounds stays inside."""
    params = ScaleParams.model_validate({**mode, "min": bounds[0], "max": bounds[1]})
    wanted, result = params.wanted(current), params.desired(current)
    assert (result > current) <= (wanted > current)
    assert (result < current) <= (wanted < current)
    if result != current:
        assert params.min <= result <= params.max
        assert params.held(current, wanted) == ""
    elif wanted != current and not params.min <= current <= params.max:
        assert params.held(current, wanted)  # says which bound held it
    if params.min <= current <= params.max:
        assert params.min <= result <= params.max


def test_a_restore_has_no_count_of_its_own() -> None:
    # It undoes exactly what its run changed, its max bounding nothing and its min a floor
    # (Scale.plan, tested against the API server in tests/integration/test_kubernetes_scale.py).
    params = ScaleParams(restore=True, min=3, max=10)
    with pytest.raises(ValueError, match="undoes its run's own change"):
        params.desired(7)


@pytest.mark.parametrize(
    "raw",
    [
        {"container": "app", "name": "1BAD", "value": "x"},
        {"container": "app", "name": "", "value": "x"},
        {"container": "app", "name": "A B", "value": "x"},
        {"container": "app", "name": "A"},
        {"container": "app", "name": "A", "value": 5},
        {"container": "", "name": "A", "value": "x"},
    ],
)
def test_set_env_params_rejected(raw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SetEnvParams.model_validate(raw)


def test_undo_params() -> None:
    assert UndoParams().to_revision is None
    assert UndoParams(expected_revision=3, to_revision=1).to_revision == 1
    for bad in ({"to_revision": 0}, {"expected_revision": -1}, {"revision": 1}):
        with pytest.raises(ValidationError):
            UndoParams.model_validate(bad)


@pytest.mark.parametrize(
    "raw",
    [
        {"pod": "a", "selector": "app=x"},
        {"max_pods": 0},
        {"max_pods": 11},
        {"pod": "Bad_Name"},
        {"selector": ""},
        {"selector": "app=x; rm -rf"},
        {"grace_period_seconds": -1},
    ],
)
def test_delete_pod_params_rejected(raw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        DeletePodParams.model_validate(raw)


def test_delete_pod_refuses_a_force_delete_saying_what_to_give() -> None:
    """gracePeriodSeconds 0 removes the pod before its containers stop (a force delete);
    kubectl sends 1 for --grace-period=0 without --force."""
    with pytest.raises(ValidationError, match=r"0 is a force delete.*give 1"):
        DeletePodParams.model_validate({"grace_period_seconds": 0})
    assert DeletePodParams.model_validate({"grace_period_seconds": 1}).grace_period_seconds == 1


def test_delete_pod_params_defaults() -> None:
    params = DeletePodParams.model_validate({"selector": "app=web,tier in (a,b)"})
    assert params.max_pods == 1
    assert params.pod is None
