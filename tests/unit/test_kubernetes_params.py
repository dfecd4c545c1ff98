"""Params models and quantity arithmetic of the Kubernetes actions: pure, no cluster."""

from __future__ import annotations

import typing
from decimal import Decimal
from typing import Annotated, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError

from remediations.base import Action, ActionContext, ActionRefused, Clients, ParamsError, Risk
from remediations.kubernetes import quantity
from remediations.kubernetes.container import QuantityChange, SetEnvParams, SetResourcesParams
from remediations.kubernetes.pods import DeletePodParams
from remediations.kubernetes.restart import RolloutRestart
from remediations.kubernetes.retry import RetryPolicy
from remediations.kubernetes.rollback import UndoParams
from remediations.kubernetes.scale import ScaleParams
from remediations.registry import default_registry
from remediations.targets import Target

# --------------------------------------------------------------------------------------------
# quantities


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("512Mi", Decimal(512 * 2**20)),
        ("1.5Gi", Decimal(3 * 2**29)),
        ("100Ki", Decimal(102400)),
        ("250m", Decimal("0.25")),
        ("2", Decimal(2)),
        ("0.5", Decimal("0.5")),
        ("4G", Decimal(4 * 10**9)),
        ("1e3", Decimal(1000)),
        ("1E-3", Decimal("0.001")),
        ("10u", Decimal("0.00001")),
        ("+1k", Decimal(1000)),
        (".5", Decimal("0.5")),
    ],
)
def test_parse(text: str, value: Decimal) -> None:
    assert quantity.value_of(text) == value


@pytest.mark.parametrize("text", ["", "Mi", "abc", "-1Mi", "1.5.5", "5MB", "1 Gi", "0x10", "1mi"])
def test_parse_rejects(text: str) -> None:
    with pytest.raises(quantity.QuantityError):
        quantity.parse(text)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("0.5Gi", "512Mi"),
        ("2048Mi", "2Gi"),
        ("1536Mi", "1536Mi"),
        ("1Ki", "1Ki"),
        ("0.5Ki", "512"),  # binary below 1024 is spelled in decimal, as the API server does
        ("1000m", "1"),
        ("1.5", "1500m"),
        ("1000", "1k"),
        ("100", "100"),
        ("0", "0"),
        ("4G", "4G"),
        ("4000M", "4G"),
        ("0.1m", "100u"),
    ],
)
def test_canonical_matches_api_server_spelling(text: str, canonical: str) -> None:
    assert quantity.canonical(text) == canonical


@pytest.mark.parametrize(
    ("current", "factor", "cap", "resource", "expected"),
    [
        ("256Mi", 1.5, "4Gi", "memory", "384Mi"),
        ("100Mi", 1.3, "4Gi", "memory", "130Mi"),
        ("100Mi", 1.01, "4Gi", "memory", "101Mi"),  # 101.0 exactly: no extra MiB
        ("1000M", 1.1, "4Gi", "memory", "1050Mi"),  # 1049.04 MiB, rounded up to a whole MiB
        ("3Gi", 2, "4Gi", "memory", "4Gi"),  # capped
        ("1Gi", 1.5, "1.2G", "memory", "1200M"),  # cap keeps its own spelling
        ("1Gi", 0.5, "4Gi", "memory", "512Mi"),
        ("500m", 1.5, "2", "cpu", "750m"),
        ("1", 1.5, "4", "cpu", "1500m"),
        ("333m", 1.5, "1", "cpu", "500m"),  # 499.5m rounded up
        ("2", 2, "4", "cpu", "4"),
    ],
)
def test_scale(current: str, factor: float, cap: str, resource: str, expected: str) -> None:
    assert quantity.scale(current, factor, cap, resource=resource) == quantity.Scaled(expected)


def test_equal_compares_values_not_spelling() -> None:
    assert quantity.equal("1Gi", "1024Mi")
    assert quantity.equal("1", "1000m")
    assert not quantity.equal("1G", "1Gi")
    assert not quantity.equal(None, "1")
    assert quantity.equal(None, None)


@given(
    st.integers(min_value=0, max_value=10**6),
    st.sampled_from(["", "m", "k", "M", "G", "Ki", "Mi", "Gi", "u", "n"]),
)
def test_canonical_keeps_the_value(number: int, suffix: str) -> None:
    text = f"{number}{suffix}"
    canonical = quantity.canonical(text)
    assert quantity.value_of(canonical) == quantity.value_of(text)
    assert quantity.canonical(canonical) == canonical


# --------------------------------------------------------------------------------------------
# scale params


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
    # It undoes what its run changed (Scale.plan, tested against the API server), with the
    # same rule: never past the live count the other way.
    params = ScaleParams(restore=True, min=3, max=10)
    with pytest.raises(ValueError, match="undoes its run's own change"):
        params.desired(7)
    assert [params.toward(7, n) for n in (1, 5, 12)] == [3, 5, 10]
    assert [params.toward(2, 1), params.toward(12, 14)] == [2, 12]


# --------------------------------------------------------------------------------------------
# set_resources, set_env, undo, delete_pod params


@pytest.mark.parametrize(
    "raw",
    [
        {},
        {"factor": 1.5},  # the cap is mandatory
        {"value": "1Gi", "factor": 1.5, "max": "2Gi"},
        {"value": "1Gi", "max": "2Gi"},
        {"value": "lots"},
        {"factor": 1.5, "max": "-1Gi"},
        {"factor": 0, "max": "1Gi"},
    ],
)
def test_quantity_change_rejected(raw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        QuantityChange.model_validate(raw)


def test_quantity_change_is_canonicalised() -> None:
    assert QuantityChange(value="0.5Gi").value == "512Mi"
    assert QuantityChange(factor=1.5, max="4096Mi").max == "4Gi"


def test_set_resources_params() -> None:
    params = SetResourcesParams.model_validate(
        {"container": "app", "memory_limit": {"factor": 1.5, "max": "4Gi"}}
    )
    assert list(params.changes()) == [("limits", "memory")]
    with pytest.raises(ValidationError, match="at least one"):
        SetResourcesParams.model_validate({"container": "app"})
    with pytest.raises(ValidationError, match="container name"):
        SetResourcesParams.model_validate({"container": "App_1", "cpu_limit": {"value": "1"}})
    with pytest.raises(ValidationError):
        SetResourcesParams.model_validate({"container": "app", "disk_limit": {"value": "1"}})


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("memory_limit", {"value": "512m"}),  # 0.512 bytes: m is milli, not Mi
        ("memory_request", {"value": "1.5"}),
        ("memory_limit", {"factor": 1.5, "max": "4096m"}),  # a cap of 4.096 bytes
        ("memory_request", {"factor": 0.5, "max": "100u"}),
    ],
)
def test_memory_in_fractions_of_a_byte_is_refused(field: str, change: dict[str, Any]) -> None:
    """Memory is counted in bytes: Kubernetes' own docs warn that 400m is 0.4 bytes, not
    400Mi, and the API server only warns ("fractional byte value"); refused when rules load."""
    key = "max" if "max" in change else "value"
    with pytest.raises(ValidationError, match=rf"{key}: {change[key]!r} is a fraction of a byte"):
        SetResourcesParams.model_validate({"container": "app", field: change})


@pytest.mark.parametrize(
    ("field", "change", "cores"),
    [
        ("cpu_limit", {"value": "1Ki"}, "1024"),
        ("cpu_request", {"value": "0.5Ki"}, "512"),
        ("cpu_limit", {"factor": 1.5, "max": "2Mi"}, "2097152"),
    ],
)
def test_cpu_with_a_binary_suffix_is_refused(
    field: str, change: dict[str, Any], cores: str
) -> None:
    """A binary suffix on cpu is a power of 1024 cores: the API server takes "1Ki" as 1024
    cores without a word (apimachinery's Quantity has no unit; a container's cpu is only
    checked to be non-negative), so a rule set a limit no node gives; refused when rules load."""
    key = "max" if "max" in change else "value"
    with pytest.raises(
        ValidationError, match=rf"{key}: {change[key]!r} is {cores} cores .*write e.g. 2, 1.5"
    ):
        SetResourcesParams.model_validate({"container": "app", field: change})


def test_whole_bytes_and_cpu_fractions_are_accepted() -> None:
    params = SetResourcesParams.model_validate(
        {
            "container": "app",
            "memory_limit": {"value": "0.5Gi"},
            "memory_request": {"factor": 1.5, "max": "1e3"},
            "cpu_limit": {"value": "512m"},
            "cpu_request": {"factor": 1.5, "max": "250m"},
        }
    )
    assert len(params.changes()) == 4


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


# --------------------------------------------------------------------------------------------
# the registry's view


def test_registry_holds_every_shipped_action_with_its_risk() -> None:
    registry = default_registry()
    table = {a.name: (a.risk, a.disruptive, sorted(a.target_kinds)) for a in registry}
    assert table == {
        "kubernetes.rollout_restart": (
            Risk.LOW,
            True,
            ["DaemonSet", "Deployment", "StatefulSet"],
        ),
        "kubernetes.scale": (Risk.LOW, False, ["Deployment", "StatefulSet"]),
        "kubernetes.set_resources": (Risk.HIGH, True, ["DaemonSet", "Deployment", "StatefulSet"]),
        "kubernetes.set_env": (Risk.HIGH, True, ["DaemonSet", "Deployment", "StatefulSet"]),
        "kubernetes.rollout_undo": (Risk.HIGH, True, ["Deployment"]),
        "kubernetes.delete_pod": (
            Risk.HIGH,
            True,
            ["DaemonSet", "Deployment", "Pod", "StatefulSet"],
        ),
        "postgres.terminate_idle": (Risk.LOW, True, ["PostgresDatabase"]),
        "postgres.cancel_long_queries": (Risk.LOW, True, ["PostgresDatabase"]),
        "redis.requeue_dead_letters": (Risk.LOW, False, ["RedisQueue"]),
        "http.call": (Risk.HIGH, True, ["HttpEndpoint"]),
        "notify": (
            Risk.LOW,
            False,
            sorted(
                [
                    "DaemonSet",
                    "Deployment",
                    "HttpEndpoint",
                    "Pod",
                    "PostgresDatabase",
                    "RedisQueue",
                    "StatefulSet",
                ]
            ),
        ),
    }
    assert all(isinstance(a, Action) for a in registry)


@pytest.mark.parametrize("name", default_registry().names())
def test_every_params_model_forbids_unknown_fields(name: str) -> None:
    with pytest.raises(ParamsError, match=rf"invalid params for {name}: .*surprise"):
        default_registry().parse_params(name, {"surprise": 1})


def test_parse_params_reports_the_field() -> None:
    with pytest.raises(ParamsError) as excinfo:
        default_registry().parse_params(
            "kubernetes.set_resources", {"container": "app", "memory_limit": {"factor": 2}}
        )
    assert "memory_limit" in excinfo.value.message
    assert "factor needs max" in excinfo.value.message


def test_describe_is_human_readable() -> None:
    from remediations.targets import Target

    registry = default_registry()
    target = Target("Deployment", "shop", "web")
    action = registry.get("kubernetes.set_resources")
    params = registry.parse_params(
        "kubernetes.set_resources",
        {"container": "app", "memory_limit": {"factor": 1.5, "max": "4Gi"}},
    )
    assert action.describe(target, params) == (
        "set memory limit x1.5 (at most 4Gi) on container app of Deployment shop/web"
    )
    scale = registry.get("kubernetes.scale")
    scale_params = registry.parse_params("kubernetes.scale", {"delta": 2, "max": 6})
    assert scale.describe(target, scale_params) == (
        "scale Deployment shop/web by +2 replicas, within [0, 6]"
    )


def test_retry_policy_bounds() -> None:
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="negative"):
        RetryPolicy(initial_wait=-1)


def test_pure_modules_load_without_the_client_library() -> None:
    # The package's __init__ imports nothing, so quantity and objects stay usable (and cheap
    # to import) where kubernetes_asyncio is not wanted.
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = str(Path(__file__).resolve().parents[2])
    code = (
        "import sys, remediations.kubernetes.quantity, remediations.kubernetes.objects; "
        "sys.exit('kubernetes_asyncio' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": repo}
    assert subprocess.run([sys.executable, "-c", code], env=env, check=False).returncode == 0


# --------------------------------------------------------------------------------------------
# params and clients, as the registry and an action see them


async def test_no_client_is_refused() -> None:
    ctx = ActionContext(run_id="r", dry_run=True, clients=Clients())
    with pytest.raises(ActionRefused, match="no Kubernetes credentials"):
        await RolloutRestart().preview(
            ctx, Target("Deployment", "x", "web"), RolloutRestart.Params()
        )


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("kubernetes.rollout_restart", {"force": True}),
        ("kubernetes.scale", {"replicas": 2}),
        ("kubernetes.scale", {"replicas": 2, "delta": 1, "max": 4}),
        ("kubernetes.set_resources", {"container": "app", "memory_limit": {"factor": 2}}),
        ("kubernetes.set_env", {"container": "app", "name": "1BAD", "value": "x"}),
        ("kubernetes.rollout_undo", {"to_revision": 0}),
        ("kubernetes.delete_pod", {"max_pods": 11}),
    ],
)
def test_invalid_params_raise_params_error(name: str, raw: dict[str, Any]) -> None:
    with pytest.raises(ParamsError, match=f"invalid params for {name}"):
        default_registry().parse_params(name, raw)


@pytest.mark.parametrize(
    ("action", "params"),
    [
        ("kubernetes.scale", {"delta": True, "max": 10}),
        ("kubernetes.scale", {"replicas": True, "max": 10}),
        ("kubernetes.scale", {"factor": True, "max": 10}),
        ("kubernetes.scale", {"replicas": 2, "max": True}),
        ("kubernetes.rollout_undo", {"to_revision": True}),
        ("kubernetes.delete_pod", {"max_pods": True}),
        (
            "kubernetes.set_resources",
            {"container": "app", "memory_limit": {"factor": True, "max": "4Gi"}},
        ),
        ("postgres.terminate_idle", {"roles": ["app"], "idle_for": "10m", "max_sessions": True}),
        ("redis.requeue_dead_letters", {"max_messages": True}),
    ],
)
def test_a_boolean_is_not_a_number_in_any_action_params(
    action: str, params: dict[str, Any]
) -> None:
    # YAML's `true` was read as 1: `to_revision: true` rolled back to revision 1, `delta:
    # true` added one replica. Kubernetes' own API refuses `"replicas": true`.
    with pytest.raises(ParamsError, match="is a boolean, not a number"):
        default_registry().parse_params(action, params)


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("yes", "'yes' is text, not a boolean: write true or false, unquoted"),
        ("true", "'true' is text, not a boolean"),
        ("no", "'no' is text, not a boolean"),
        (1, "1 is not a boolean: write true or false"),
        (0, "0 is not a boolean"),
    ],
)
def test_a_flag_in_action_params_is_a_boolean_not_text_or_a_number(
    value: object, said: str
) -> None:
    # `restore: "yes"` (quoted in the rule file, so text) was read as true by pydantic's lax
    # mode, and `restore: "no"` would have been read as false just as silently.
    with pytest.raises(ParamsError) as excinfo:
        default_registry().parse_params("kubernetes.scale", {"restore": value, "max": 5})
    assert "restore: " in excinfo.value.message
    assert said in excinfo.value.message
    params = default_registry().parse_params("kubernetes.scale", {"restore": True, "max": 5})
    assert isinstance(params, ScaleParams)
    assert params.restore is True


def _flags(model: type[BaseModel], path: str = "") -> list[tuple[str, Any]]:
    """Every boolean field of ``model`` and of the models it nests, with its full annotation."""
    found: list[tuple[str, Any]] = []
    for name, info in model.model_fields.items():
        for kind in (info.annotation, *typing.get_args(info.annotation)):
            if kind is bool:
                annotation = Annotated[bool, *info.metadata] if info.metadata else bool
                found.append((path + name, annotation))
            elif isinstance(kind, type) and issubclass(kind, BaseModel):
                found.extend(_flags(kind, f"{path}{name}."))
    return found


_ALL_FLAGS = [
    (f"{action.name}: {field}", annotation)
    for action in default_registry()
    for field, annotation in _flags(action.Params)
]


def test_the_shipped_actions_have_flags_to_check() -> None:
    assert "kubernetes.scale: restore" in [name for name, _ in _ALL_FLAGS]


@pytest.mark.parametrize(("field", "annotation"), _ALL_FLAGS, ids=[n for n, _ in _ALL_FLAGS])
def test_every_flag_in_any_action_params_refuses_text_and_numbers(
    field: str, annotation: Any
) -> None:
    # A new flag declared as a plain `bool` would read "yes" and 1 as true again.
    adapter = TypeAdapter(annotation)
    for value in ("yes", "false", 1):
        with pytest.raises(ValidationError, match="not a boolean"):
            adapter.validate_python(value)
    assert adapter.validate_python(False) is False
