"""The RBAC of the kustomize base in deploy/, read as files: the ClusterRole holds exactly the
verbs deploy/README.md documents, bound per namespace to the service account, and the
namespaces bound are the ones the service is allowed to act in.

No API server here: tests/integration/test_deploy_rbac.py checks the same RBAC against a real
kube-apiserver.
"""

from __future__ import annotations

import re

import yaml

from tests.support import deploy_manifests
from tests.support.deploy_manifests import (
    APP_NAMESPACE,
    BASE,
    CLUSTER_ROLE,
    DEPLOY,
    EXPECTED_PERMISSIONS,
    EXTRA_NS,
    SERVICE_ACCOUNT,
    Doc,
    _docs,
    _env,
    _manifests,
    _one,
)

# The base's objects, read once per module (fixtures: tests take them by name).
base = deploy_manifests.base
deployment = deploy_manifests.deployment
pod_spec = deploy_manifests.pod_spec
container = deploy_manifests.container


def _permissions(role: Doc) -> set[tuple[str, str, str]]:
    out: set[tuple[str, str, str]] = set()
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, (
            f"unexpected rule fields (resourceNames/nonResourceURLs?): {rule}"
        )
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    out.add((group, resource, verb))
    return out


def test_cluster_role_holds_exactly_the_documented_verbs(base: list[Doc]) -> None:
    role = _one(base, "ClusterRole")
    assert role["metadata"]["name"] == CLUSTER_ROLE
    assert "aggregationRule" not in role
    assert not any(
        k.startswith("rbac.authorization.k8s.io/aggregate-to") for k in role["metadata"]["labels"]
    )
    perms = _permissions(role)
    assert all("*" not in part for p in perms for part in p), "wildcards in the ClusterRole"
    resources = {r for _, r, _ in perms}
    assert not resources & {"secrets", "configmaps", "nodes", "namespaces", "pods/exec"}
    assert perms == EXPECTED_PERMISSIONS


def test_readme_documents_each_verb(base: list[Doc]) -> None:
    text = (DEPLOY / "README.md").read_text()
    section = text.split("## 5. What each RBAC verb is for", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([^`]*)`[^|]*\| `([^`]+)` \| `([^`]+)` \| (.+) \|$", section, re.M)
    documented = {(g, r, v) for g, r, v, _ in rows}
    assert len(rows) == len(documented), "a permission is documented twice"
    assert documented == _permissions(_one(base, "ClusterRole"))


def _is_binding_to_actions(doc: Doc) -> bool:
    return doc["kind"] in ("RoleBinding", "ClusterRoleBinding")


def test_bindings_are_per_namespace_rolebindings_for_the_service_account() -> None:
    everything = [
        doc
        for path in sorted(DEPLOY.rglob("*.yaml"))
        if path.name != "kustomization.yaml" and path.parent != BASE / "rules"
        for doc in _docs(path)
    ]
    bindings = [d for d in everything if _is_binding_to_actions(d)]
    assert bindings
    for b in bindings:
        assert b["kind"] == "RoleBinding", (
            "the actions' ClusterRole must never be bound cluster-wide"
        )
        assert b["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": CLUSTER_ROLE,
        }
        assert b["subjects"] == [
            {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": APP_NAMESPACE}
        ]
        assert b["metadata"]["namespace"] not in (APP_NAMESPACE, "kube-system")
    # No Role/binding in the remediator's own namespace: it needs nothing there.
    assert not [d for d in everything if d["kind"] == "Role"]


def _allow_list(container: Doc) -> set[str]:
    value = _env(container)["REMEDIATOR_NAMESPACE_ALLOW"]["value"]
    return {part.strip() for part in value.split(",") if part.strip()}


def test_namespace_allow_list_matches_the_rolebindings(base: list[Doc], container: Doc) -> None:
    bound = {d["metadata"]["namespace"] for d in base if d["kind"] == "RoleBinding"}
    assert bound == {"apps"}
    assert _allow_list(container) == bound


def test_extra_namespace_example_adds_binding_and_allow_list_together(container: Doc) -> None:
    kust = next(_docs(EXTRA_NS / "kustomization.yaml"))
    assert "../../base" in kust["resources"]
    added = {d["metadata"]["namespace"] for d in _manifests(EXTRA_NS) if d["kind"] == "RoleBinding"}
    assert added == {"payments"}
    (patch,) = kust["patches"]
    patched = yaml.safe_load(patch["patch"])
    (patched_container,) = patched["spec"]["template"]["spec"]["containers"]
    assert patched_container["name"] == container["name"]
    assert _allow_list(patched_container) == _allow_list(container) | added
