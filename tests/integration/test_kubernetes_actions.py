"""Every Kubernetes action against a real kube-apiserver + controller-manager: a dry run
changes nothing and reports what the run would, a missing target is refused, and a forbidden
one is refused naming the verb and resource. Each action's own effects: test_kubernetes_rollout.py,
test_kubernetes_scale.py, test_kubernetes_container.py, test_kubernetes_delete_pod.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from remediations.base import Action, ActionRefused, Outcome
from remediations.kubernetes.catalog import ACTIONS
from remediations.kubernetes.container import SetEnv, SetResources
from remediations.kubernetes.pods import DeletePod
from remediations.kubernetes.restart import RolloutRestart
from remediations.kubernetes.rollback import RolloutUndo
from remediations.kubernetes.scale import Scale
from remediations.registry import default_registry
from remediations.targets import Target
from tests.support.kube import ControlPlane
from tests.support.kube_actions import (
    deployment,
    make_ctx,
    make_revision_2,
    pod_names,
    snapshot,
    two_containers,
)
from tests.support.kube_clients import api_client_from_kubeconfig
from tests.support.kube_fixtures import MakeDeployment
from tests.support.polling import eventually

pytestmark = pytest.mark.kube


# --------------------------------------------------------------------------------------------
# dry run: the server validates, nothing changes, and it reports what run() would produce


async def _setup_for(
    action: Action, api_client: Any, ns: str, make_deployment: MakeDeployment
) -> tuple[Target, Any]:
    registry = default_registry()
    if isinstance(action, RolloutUndo):
        await make_revision_2(api_client, ns, make_deployment)
        return deployment(ns), registry.parse_params(action.name, {})
    if isinstance(action, DeletePod):
        await make_deployment("web")
        (victim,) = await eventually(
            lambda: pod_names(api_client, ns, "app=web"),
            lambda names: len(names) == 1,
        )
        return Target("Pod", ns, victim), registry.parse_params(action.name, {})
    await make_deployment("web", containers=two_containers())
    raw: dict[str, dict[str, Any]] = {
        "kubernetes.rollout_restart": {},
        "kubernetes.scale": {"replicas": 3, "max": 5},
        "kubernetes.set_resources": {"container": "app", "memory_limit": {"value": "1Gi"}},
        "kubernetes.set_env": {"container": "app", "name": "X", "value": "y"},
    }
    return deployment(ns), registry.parse_params(action.name, raw[action.name])


@pytest.mark.parametrize("action", ACTIONS, ids=lambda a: a.name)
async def test_dry_run_changes_nothing(
    action: Action, kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    ns = kube_namespace
    target, params = await _setup_for(action, kube_admin, ns, make_deployment)
    if target.kind == "Deployment":
        before: Any = await snapshot(kube_admin, ns)
    else:
        before = await pod_names(kube_admin, ns)

    ctx = make_ctx(kube_admin, dry_run=True)
    change = await action.preview(ctx, target, params)
    result = await action.run(ctx, target, params)

    assert result.outcome is Outcome.DRY_RUN
    assert result.before == change.before
    if action.name == "kubernetes.rollout_restart":
        assert set(result.after) == set(change.after)  # the timestamp is taken at write time
    else:
        assert result.after == change.after
    if target.kind == "Deployment":
        assert await snapshot(kube_admin, ns) == before
    else:
        assert await pod_names(kube_admin, ns) == before


# --------------------------------------------------------------------------------------------
# errors: missing target, forbidden, invalid params


@pytest.mark.parametrize(
    ("action", "raw"),
    [
        (RolloutRestart(), {}),
        (Scale(), {"replicas": 2, "max": 3}),
        (SetResources(), {"container": "app", "cpu_limit": {"value": "1"}}),
        (SetEnv(), {"container": "app", "name": "A", "value": "b"}),
        (RolloutUndo(), {}),
    ],
    ids=lambda v: getattr(v, "name", ""),
)
async def test_missing_target_is_refused(
    action: Action, raw: dict[str, Any], kube_admin: Any, kube_namespace: str
) -> None:
    params = action.Params.model_validate(raw)
    with pytest.raises(ActionRefused, match=f"^Deployment {kube_namespace}/ghost not found$"):
        await action.run(make_ctx(kube_admin), deployment(kube_namespace, "ghost"), params)


async def test_forbidden_names_verb_and_resource(
    control_plane: ControlPlane,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
    tmp_path: Path,
) -> None:
    ns = kube_namespace
    await make_deployment("web")
    token = await control_plane.service_account_token(ns, "nobody")
    kubeconfig = control_plane.write_kubeconfig_for_token(token, tmp_path / "kubeconfig")
    nobody = await api_client_from_kubeconfig(kubeconfig)
    try:
        with pytest.raises(ActionRefused) as excinfo:
            await RolloutRestart().run(make_ctx(nobody), deployment(ns), RolloutRestart.Params())
        message = excinfo.value.message
        assert message.startswith("forbidden: ")
        assert f"system:serviceaccount:{ns}:nobody" in message
        assert 'cannot get resource "deployments"' in message

        # scale reads (and patches) the Deployment itself: replicas and its record in one write.
        with pytest.raises(ActionRefused, match=r'cannot get resource "deployments" in API'):
            await Scale().run(make_ctx(nobody), deployment(ns), Scale.Params(replicas=2, max=3))
    finally:
        await nobody.close()
