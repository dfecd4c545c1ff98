"""The kustomize base in deploy/, read as files: its paths, the names it uses, its YAML
documents, and module-scoped fixtures for the objects the manifest tests look at.

Shared by tests/unit/test_deploy_manifests.py, test_deploy_rbac_manifest.py and
test_deploy_pod.py; tests/integration/test_deploy_rbac.py takes EXPECTED_PERMISSIONS from here.
The fixtures (``base``, ``kustomization``, ``deployment``, ``pod_spec``, ``container``) are
taken up by a test module as ``base = deploy_manifests.base``, with those they depend on.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

__all__ = [
    "APP_NAMESPACE",
    "BASE",
    "CLUSTER_ROLE",
    "DEPLOY",
    "EXPECTED_PERMISSIONS",
    "EXTRA_NS",
    "PORT",
    "REPO",
    "RULES",
    "SECRET",
    "SERVICE_ACCOUNT",
    "UID",
    "Doc",
    "base",
    "container",
    "deployment",
    "kustomization",
    "pod_spec",
]


REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
BASE = DEPLOY / "base"
EXTRA_NS = DEPLOY / "examples" / "extra-namespace"
RULES = REPO / "rules"

APP_NAMESPACE = "alert-remediator"
SERVICE_ACCOUNT = "alert-remediator"
CLUSTER_ROLE = "alert-remediator-actions"
SECRET = "alert-remediator"
PORT = 9095
UID = 10001

# (API group, resource, verb): exactly what remediations/kubernetes/ needs (deploy/README.md §5).
EXPECTED_PERMISSIONS = frozenset(
    {
        *(
            ("apps", r, v)
            for r in ("deployments", "statefulsets", "daemonsets")
            for v in ("get", "patch")
        ),
        ("apps", "replicasets", "list"),
        ("autoscaling", "horizontalpodautoscalers", "list"),
        ("", "pods", "get"),
        ("", "pods", "list"),
        ("", "pods/eviction", "create"),
        ("policy", "poddisruptionbudgets", "list"),
    }
)

Doc = dict[str, Any]


def _docs(path: Path) -> Iterator[Doc]:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc is not None:
            assert isinstance(doc, dict), f"{path}: a YAML document that is not a mapping"
            yield doc


def _manifests(directory: Path) -> list[Doc]:
    return [
        doc
        for path in sorted(directory.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in _docs(path)
    ]


def _one(docs: list[Doc], kind: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def base() -> list[Doc]:
    return _manifests(BASE)


@pytest.fixture(scope="module")
def kustomization() -> Doc:
    return next(_docs(BASE / "kustomization.yaml"))


@pytest.fixture(scope="module")
def deployment(base: list[Doc]) -> Doc:
    return _one(base, "Deployment")


@pytest.fixture(scope="module")
def pod_spec(deployment: Doc) -> Doc:
    spec: Doc = deployment["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def container(pod_spec: Doc) -> Doc:
    assert len(pod_spec["containers"]) == 1
    c: Doc = pod_spec["containers"][0]
    return c


def _env(container: Doc) -> dict[str, Doc]:
    return {e["name"]: e for e in container.get("env", [])}


def _pod_labels(deployment: Doc) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())
