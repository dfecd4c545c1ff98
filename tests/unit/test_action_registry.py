"""The shipped actions as the registry and an action see them: each with its risk and target
kinds, params parsed into ParamsError that names the field (unknown fields, booleans that are
no numbers, flags that are no text), descriptions, retry bounds, no client refused, and the
Kubernetes package's pure modules loading without the client library. Pure, no cluster."""

from __future__ import annotations

import typing
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from remediations.base import Action, ActionContext, ActionRefused, Clients, ParamsError, Risk
from remediations.kubernetes.restart import RolloutRestart
from remediations.kubernetes.retry import RetryPolicy
from remediations.kubernetes.scale import ScaleParams
from remediations.registry import default_registry
from remediations.targets import Target


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
