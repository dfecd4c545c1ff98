"""``kubernetes.set_resources`` and ``kubernetes.set_env`` on an init container (a native
sidecar, ``restartPolicy: Always``), against a real kube-apiserver + controller-manager, with
the pinned kubectl as the reference: ``kubectl set resources -c`` and ``kubectl set env -c``
select init containers by name as they do containers (kubectl ``pkg/cmd/set``). The actions
looked only at ``containers``, and refused a sidecar as "not found"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from remediations.base import Clients, Outcome
from remediations.kubernetes.container import SetEnv, SetResources
from remediations.kubernetes.probe import newest_rollout
from remediations.kubernetes.rollback import RolloutUndo
from remediations.targets import Target
from tests.support.kube import ControlPlane
from tests.support.kube_fixtures import (
    STRATEGIC_MERGE_PATCH,
    first_step_ctx,
    patch_deployment,
    wait_for_quiet,
    wait_for_revision,
)
from tests.support.kubectl import run_kubectl

pytestmark = pytest.mark.kube

MANIFEST = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: NAME}
spec:
  replicas: 1
  selector: {matchLabels: {app: NAME}}
  template:
    metadata: {labels: {app: NAME}}
    spec:
      initContainers:
        - name: proxy
          image: img/proxy:1
          restartPolicy: Always
          env: [{name: MODE, value: sidecar}]
          resources: {limits: {memory: 64Mi}, requests: {memory: 32Mi}}
      containers:
        - {name: app, image: img/app:1}
"""


async def proxy_of(kube: Any, ns: str, name: str) -> tuple[Any, list[tuple[str, str]]]:
    """The ``proxy`` init container's resources and env of Deployment ``name``."""
    dep = await k8s.AppsV1Api(kube).read_namespaced_deployment(name, ns)
    (proxy,) = dep.spec.template.spec.init_containers
    return proxy.resources.to_dict(), [(e.name, e.value) for e in proxy.env or []]


async def test_an_init_container_is_edited_as_kubectl_set_edits_it(
    kube_admin: Any, kube_namespace: str, control_plane: ControlPlane, kubectl: Path
) -> None:
    ns, config = kube_namespace, str(control_plane.admin_kubeconfig)
    for name in ("by-kubectl", "web"):
        run_kubectl(
            kubectl, "--kubeconfig", config, "-n", ns, "apply", "-f", "-",
            stdin=MANIFEST.replace("NAME", name),
        )  # fmt: skip
        await wait_for_revision(kube_admin, ns, name, 1)
    for args in (["resources", "--limits=memory=128Mi"], ["env", "LOG=debug"]):
        run_kubectl(
            kubectl, "--kubeconfig", config, "-n", ns, "set", args[0], "deploy/by-kubectl",
            "-c", "proxy", args[1],
        )  # fmt: skip

    target = Target("Deployment", ns, "web")
    resources = SetResources.Params.model_validate(
        {"container": "proxy", "memory_limit": {"value": "128Mi"}}
    )
    raised = await SetResources().run(first_step_ctx(kube_admin), target, resources)
    assert raised.outcome is Outcome.OK, raised.message
    assert raised.before == {"container": "proxy", "limits": {"memory": "64Mi"}}
    assert raised.after == {"container": "proxy", "limits": {"memory": "128Mi"}}
    await wait_for_revision(kube_admin, ns, "web", 2)
    env = SetEnv.Params(container="proxy", name="LOG", value="debug")
    logged = await SetEnv().run(first_step_ctx(kube_admin), target, env)
    assert logged.outcome is Outcome.OK, logged.message
    assert logged.after == {"container": "proxy", "name": "LOG", "value": "debug"}
    await wait_for_revision(kube_admin, ns, "web", 3)

    assert await proxy_of(kube_admin, ns, "web") == await proxy_of(kube_admin, ns, "by-kubectl")
    assert (await proxy_of(kube_admin, ns, "web"))[1] == [("MODE", "sidecar"), ("LOG", "debug")]
    # Remediator's own edits, not releases: the newest release is still the creation.
    state = await newest_rollout(Clients({"kubernetes": kube_admin}), target)
    assert state.revision == 1
    assert state.rollback_to is None


async def test_a_rollback_of_a_sidecar_release_shows_the_sidecar_images(
    kube_admin: Any, kube_namespace: str, control_plane: ControlPlane, kubectl: Path
) -> None:
    # A release that changed only the sidecar's image: the rollback's preview (what an
    # approver approves) named only the containers' images, the same before and after.
    ns, config = kube_namespace, str(control_plane.admin_kubeconfig)
    run_kubectl(
        kubectl, "--kubeconfig", config, "-n", ns, "apply", "-f", "-",
        stdin=MANIFEST.replace("NAME", "web"),
    )  # fmt: skip
    await wait_for_revision(kube_admin, ns, "web", 1)
    sidecar = {"spec": {"initContainers": [{"name": "proxy", "image": "img/proxy:2"}]}}
    body = {"spec": {"template": sidecar}}
    await patch_deployment(kube_admin, ns, "web", body, STRATEGIC_MERGE_PATCH)
    await wait_for_revision(kube_admin, ns, "web", 2)
    await wait_for_quiet(kube_admin, ns, "web")

    target = Target("Deployment", ns, "web")
    ctx = first_step_ctx(kube_admin)
    change = await RolloutUndo().preview(ctx, target, RolloutUndo.Params())
    assert change.before["images"] == {"app": "img/app:1", "proxy": "img/proxy:2"}
    assert change.after["images"] == {"app": "img/app:1", "proxy": "img/proxy:1"}
    result = await RolloutUndo().run(ctx, target, RolloutUndo.Params())
    assert result.outcome is Outcome.OK, result.message
    assert result.after["images"] == {"app": "img/app:1", "proxy": "img/proxy:1"}
