"""``remediator serve`` killed (SIGKILL) while an approved Kubernetes step writes, on the real
kube-apiserver: its PATCH reached the API server and was applied, and the service dies before
the answer comes back (a fault proxy between them forwards the write, then kills the service,
then drops the answer). Started again, the run is taken up and the step acts once: the
Deployment's replicas go up by the approved delta once, not twice (README, "A retry never
changes what is done": the write carries its record, which the retry finds), and the run ends
once, ``succeeded``. The approval is the one decided before the crash; none is asked again.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from tests.support.approval_crash import (
    LinkClient,
    desk,
    fresh_session,
    running_peer,
)
from tests.support.fault_proxy import LOST, FaultProxy, deployment_path, proxy
from tests.support.kube import ControlPlane
from tests.support.kube_clients import write_kubeconfig
from tests.support.kube_fixtures import MakeDeployment
from tests.support.polling import eventually

__all__ = ["proxy"]  # the fixture, used here by name

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.redis]

RULE = """\
rules:
  - name: crash-approval-kube
    match: ['alertname="CrashApprovalKube"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: kubernetes.scale
        params: {delta: 2, max: 20}
        approval: required
"""


def _alert(namespace: str, deployment: str) -> dict[str, Any]:
    labels = {"alertname": "CrashApprovalKube", "namespace": namespace, "deployment": deployment}
    return {
        "version": "4",
        "status": "firing",
        "receiver": "remediator",
        "groupKey": '{}:{alertname="CrashApprovalKube"}',
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": "crash while a scale writes"},
                "startsAt": "2026-12-05T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": "c4a5c4a5c4a5c4a6",
            }
        ],
    }


async def _admin_token(control_plane: ControlPlane, kube_admin: Any) -> tuple[str, str]:
    """A token of a new ServiceAccount bound to cluster-admin, and the binding's name."""
    sa_ns, sa_name = "remediator-tests", f"crash-{uuid.uuid4().hex[:6]}"
    token = await control_plane.service_account_token(sa_ns, sa_name)
    binding = f"{sa_name}-cluster-admin"
    await k8s.RbacAuthorizationV1Api(kube_admin).create_cluster_role_binding(
        k8s.V1ClusterRoleBinding(
            metadata=k8s.V1ObjectMeta(name=binding),
            role_ref=k8s.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="cluster-admin"
            ),
            subjects=[k8s.RbacV1Subject(kind="ServiceAccount", name=sa_name, namespace=sa_ns)],
        )
    )
    return token, binding


async def _replicas(kube_admin: Any, namespace: str, name: str) -> int:
    dep = await k8s.AppsV1Api(kube_admin).read_namespaced_deployment(name, namespace)
    return int(dep.spec.replicas)


async def test_killed_while_the_approved_scale_writes_it_scales_once_after_the_restart(
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    control_plane: ControlPlane,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
    proxy: FaultProxy,
) -> None:
    await make_deployment("web", replicas=1)
    token, binding = await _admin_token(control_plane, kube_admin)
    kubeconfig = write_kubeconfig(
        tmp_path / "kubeconfig",
        proxy.url,
        control_plane.ca_file.read_bytes(),
        "crash",
        {"token": token},
    )
    try:
        async with (
            running_peer() as peer,
            desk(
                tmp_path / "service",
                database_url=database_url,
                redis_url=redis_url,
                peer=peer,
                rule=RULE,
                env={"REMEDIATOR_KUBECONFIG": str(kubeconfig)},
            ) as served,
            fresh_session() as session,
        ):
            await served.start()
            await served.post_alert(session, _alert(kube_namespace, "web"))
            browser = LinkClient(session, await peer.request_link(), served.url)
            await eventually(
                lambda: served.only_run(session),
                lambda run: run["outcome"] == "awaiting_approval",
                what="the run parked awaiting approval",
            )
            killed = asyncio.Event()

            async def kill_before_the_answer() -> None:
                await asyncio.to_thread(served.kill)
                killed.set()

            # The next PATCH of the Deployment is the approved step's write: it is applied,
            # then the service is killed before its answer comes back.
            proxy.on_lost = kill_before_the_answer
            proxy.inject("PATCH", deployment_path(kube_namespace, "web"), LOST)
            status, html = await browser.approve(await browser.csrf(), served.operator_token)
            assert status == 200, html
            await asyncio.wait_for(killed.wait(), 120)
            assert await _replicas(kube_admin, kube_namespace, "web") == 3, "the write landed"

            await served.start()
            run = await served.run_ended(session)
            approvals = list((await served.api(session, "/api/v1/approvals"))["approvals"])
            await served.audit_verified()
    finally:
        await k8s.RbacAuthorizationV1Api(kube_admin).delete_cluster_role_binding(binding)
    assert await _replicas(kube_admin, kube_namespace, "web") == 3, "scaled twice"
    steps = [(s["idx"], s["outcome"]) for s in run["steps"] if s["phase"] == "run"]
    assert run["outcome"] == "succeeded", served.log()
    assert steps == [(0, "ok")], run["steps"]
    assert "already applied by this run before a restart" in run["steps"][0]["message"]
    assert proxy.attempts[("PATCH", deployment_path(kube_namespace, "web"))] == 1
    endings = [
        r["data"]["outcome"]
        for r in run["audit"]
        if r["kind"] == "run.outcome"
        and r["data"]["outcome"] not in ("running", "awaiting_approval")
    ]
    assert endings == ["succeeded"], run["audit"]
    assert [(a["state"], a["decided_by"]) for a in approvals] == [("approved", "alice")]
