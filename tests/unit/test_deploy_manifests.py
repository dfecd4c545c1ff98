"""The kustomize base in deploy/, read as files: the kustomization (every manifest listed, the
rules ConfigMap generated from copies kept in step with rules/, namespaces) and the Service, PDB
and NetworkPolicy that select the pods.

No kubectl and no API server here: tests/unit/test_deploy_render.py renders the base with
kubectl, tests/integration/test_deploy_rbac*.py check its RBAC against a real kube-apiserver.
the RBAC is read in test_deploy_rbac_manifest.py, the pod and the image in test_deploy_pod.py.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support import deploy_manifests
from tests.support.deploy_manifests import (
    APP_NAMESPACE,
    BASE,
    DEPLOY,
    PORT,
    REPO,
    RULES,
    Doc,
    _docs,
    _one,
    _pod_labels,
    _selects,
)

# The base's objects, read once per module (fixtures: tests take them by name).
base = deploy_manifests.base
kustomization = deploy_manifests.kustomization
deployment = deploy_manifests.deployment


# -- kustomization ---------------------------------------------------------------------------------
def test_kustomization_lists_every_manifest_in_base(kustomization: Doc) -> None:
    files = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)
    top = next(_docs(DEPLOY / "kustomization.yaml"))
    assert top["resources"] == ["base"]


def test_rules_configmap_is_generated_from_copies_inside_the_base(kustomization: Doc) -> None:
    """kustomize refuses files outside the kustomization's directory by default (kubectl
    apply -k, Argo CD, Flux), so the base lists copies under base/rules/, kept in step with
    rules/ by hack/sync-deploy-rules.py."""
    generators = {g["name"]: g for g in kustomization["configMapGenerator"]}
    listed = generators["alert-remediator-rules"]["files"]
    shipped = sorted(p.name for p in RULES.glob("*.yaml"))
    assert shipped, "rules/ ships no *.yaml"
    assert listed == [f"rules/{name}" for name in shipped]
    for name in shipped:
        assert (BASE / "rules" / name).read_bytes() == (RULES / name).read_bytes(), name
    assert generators["alert-remediator-rules"]["namespace"] == APP_NAMESPACE
    # Nothing in the base or the examples reaches outside deploy/ for a file.
    for path in DEPLOY.rglob("kustomization.yaml"):
        for entry in _file_references(next(_docs(path))):
            resolved = (path.parent / entry).resolve()
            assert resolved.is_relative_to(DEPLOY.resolve()), f"{path}: {entry}"


def _file_references(kustomization: Doc) -> list[str]:
    """Every path a kustomization reads: generator files, patch files, and resources and
    components (files or kustomization directories, e.g. an overlay's ../../base)."""
    files = [f for g in kustomization.get("configMapGenerator", []) for f in g.get("files", [])]
    files += [p["path"] for p in kustomization.get("patches", []) if "path" in p]
    files += kustomization.get("resources", []) + kustomization.get("components", [])
    return files


def test_the_rule_copies_are_in_step_with_rules() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "hack" / "sync-deploy-rules.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_the_sync_check_names_a_stale_copy(tmp_path: Path) -> None:
    """The check above can fail: on a copy of the tree whose rules/ has changed."""
    tree = tmp_path / "repo"
    for part in ("hack", "rules", "deploy"):
        shutil.copytree(REPO / part, tree / part)
    script = tree / "hack" / "sync-deploy-rules.py"
    changed = tree / "rules" / "high-memory.yaml"
    changed.write_text(changed.read_text() + "# changed\n")
    (tree / "rules" / "new-rule.yaml").write_text("rules: []\n")
    check = [sys.executable, str(script), "--check"]
    proc = subprocess.run(check, capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert "deploy/base/rules/high-memory.yaml differs" in proc.stderr
    assert "does not list every rule file" in proc.stderr
    assert "run: python3 hack/sync-deploy-rules.py" in proc.stderr
    subprocess.run([sys.executable, str(script)], check=True)
    assert subprocess.run(check, check=False).returncode == 0
    kust = next(_docs(tree / "deploy" / "base" / "kustomization.yaml"))
    assert "rules/new-rule.yaml" in kust["configMapGenerator"][0]["files"]


def test_namespace_transformer_leaves_target_namespace_bindings_alone(kustomization: Doc) -> None:
    # A plain `namespace:` field would move the RoleBinding out of the target namespace.
    assert "namespace" not in kustomization
    (transformer,) = [yaml.safe_load(t) for t in kustomization["transformers"]]
    assert transformer["kind"] == "NamespaceTransformer"
    assert transformer["metadata"]["namespace"] == APP_NAMESPACE
    assert transformer["unsetOnly"] is True


def test_every_namespaced_object_names_its_namespace(base: list[Doc]) -> None:
    cluster_scoped = {"Namespace", "ClusterRole"}
    for doc in base:
        if doc["kind"] in cluster_scoped:
            assert "namespace" not in doc["metadata"]
        elif doc["kind"] == "RoleBinding":
            assert doc["metadata"]["namespace"] != APP_NAMESPACE
        else:
            assert doc["metadata"]["namespace"] == APP_NAMESPACE, doc["kind"]


# -- Service, PDB, NetworkPolicy -------------------------------------------------------------------
def test_service_pdb_and_networkpolicy_select_the_pods(base: list[Doc], deployment: Doc) -> None:
    labels = _pod_labels(deployment)
    svc = _one(base, "Service")
    assert _selects(svc["spec"]["selector"], labels)
    assert svc["spec"]["ports"] == [
        {"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}
    ]
    pdb = _one(base, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["minAvailable"] == 1
    assert _selects(pdb["spec"]["selector"]["matchLabels"], labels)
    netpol = _one(base, "NetworkPolicy")
    assert _selects(netpol["spec"]["podSelector"]["matchLabels"], labels)


def _ports(rules: list[Doc]) -> set[tuple[str, int]]:
    return {(p["protocol"], p["port"]) for r in rules for p in r["ports"]}


def test_networkpolicy_allows_only_the_needed_traffic(base: list[Doc]) -> None:
    spec = _one(base, "NetworkPolicy")["spec"]
    assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]
    assert _ports(spec["ingress"]) == {("TCP", PORT)}
    for rule in spec["ingress"]:
        assert rule["from"], "ingress from anywhere"
        for peer in rule["from"]:
            assert "namespaceSelector" in peer
            assert "ipBlock" not in peer
    assert _ports(spec["egress"]) == {
        ("UDP", 53),
        ("TCP", 53),
        ("TCP", 5432),
        ("TCP", 6379),
        ("TCP", 443),
        ("TCP", 6443),
    }
    (dns,) = [r for r in spec["egress"] if ("UDP", 53) in _ports([r])]
    assert dns["to"], "DNS egress must be limited to the cluster DNS pods"
