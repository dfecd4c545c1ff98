"""deploy/ rendered by the pinned kubectl (kustomize, as Argo CD and Flux render it): the
objects, the hardening, the namespaces. No API server; tests/integration/test_deploy_rbac*.py
apply the same manifests to a real kube-apiserver and exercise their RBAC."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.kubectl import REPO, one, parse, render, run_kubectl

APP_NS = "alert-remediator"
SA = "alert-remediator"
TARGET_NS = "apps"  # the example target namespace bound in deploy/base/rbac.yaml
EXTRA_NS = "payments"  # added by deploy/examples/extra-namespace


@pytest.fixture(scope="module")
def rendered(kubectl: Path) -> str:
    return render(kubectl, "deploy/")


def test_kustomize_renders_the_base(rendered: str, kubectl: Path) -> None:
    docs = parse(rendered)
    assert sorted(d["kind"] for d in docs) == sorted(
        [
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "RoleBinding",
            "ConfigMap",
            "Deployment",
            "Service",
            "NetworkPolicy",
            "PodDisruptionBudget",
        ]
    )
    assert not [d for d in docs if d["kind"] in ("Secret", "ClusterRoleBinding")]
    # deploy/ and deploy/base render the same objects.
    assert render(kubectl, "deploy/base") == rendered


def test_rules_configmap_holds_the_shipped_rule_files(rendered: str) -> None:
    docs = parse(rendered)
    cm = one(docs, "ConfigMap")
    assert cm["metadata"]["namespace"] == APP_NS
    assert cm["metadata"]["name"].startswith("alert-remediator-rules-")  # content hash suffix
    shipped = {p.name: p.read_text() for p in sorted((REPO / "rules").glob("*.yaml"))}
    assert shipped
    assert cm["data"] == shipped
    # The Deployment mounts that exact (hashed) ConfigMap as REMEDIATOR_RULES_DIR.
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    (rules_volume,) = [v for v in pod["volumes"] if "configMap" in v]
    assert rules_volume["configMap"]["name"] == cm["metadata"]["name"]


def test_rendered_deployment_is_hardened(rendered: str) -> None:
    dep = one(parse(rendered), "Deployment")
    assert dep["metadata"]["namespace"] == APP_NS
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert container["image"] == "alert-remediator:0.1.0"


def test_rolebinding_keeps_its_target_namespace(rendered: str) -> None:
    rb = one(parse(rendered), "RoleBinding")
    assert rb["metadata"]["namespace"] == TARGET_NS
    assert rb["subjects"] == [{"kind": "ServiceAccount", "name": SA, "namespace": APP_NS}]


def test_deploy_holds_everything_it_reads(rendered: str, kubectl: Path, tmp_path: Path) -> None:
    """deploy/ copied out of the repository alone (as a GitOps tool that fetches only that
    path would have it) renders the same objects, with the default load restrictor."""
    copy = tmp_path / "deploy"
    shutil.copytree(REPO / "deploy", copy)
    assert render(kubectl, str(copy)) == rendered
    for example in ("extra-namespace", "approvals", "approvals-slack"):
        assert render(kubectl, str(copy / "examples" / example)) == render(
            kubectl, f"deploy/examples/{example}"
        ), example


def test_extra_namespace_example_renders(kubectl: Path) -> None:
    docs = parse(render(kubectl, "deploy/examples/extra-namespace"))
    bound = sorted(d["metadata"]["namespace"] for d in docs if d["kind"] == "RoleBinding")
    assert bound == [TARGET_NS, EXTRA_NS]
    (container,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["REMEDIATOR_NAMESPACE_ALLOW"] == f"{TARGET_NS},{EXTRA_NS}"


def test_kubectl_is_the_pinned_version(kubectl: Path) -> None:
    out = run_kubectl(kubectl, "version", "--client").stdout
    assert "Client Version: v1.36.3" in out
