"""The kustomize base in deploy/ and the Dockerfile, read as files: hardening, RBAC scope, wiring.

No kubectl and no API server here: tests/unit/test_deploy_render.py renders the base with
kubectl, tests/integration/test_deploy_rbac*.py check its RBAC against a real kube-apiserver.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from receiver.config import Settings
from receiver.config.settings import WRITTEN
from receiver.config.sources import KEYS
from receiver.stop_budget import stop_budget

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


# -- RBAC ------------------------------------------------------------------------------------------


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


# -- Deployment ------------------------------------------------------------------------------------


def test_deployment_replicas_probes_and_resources(deployment: Doc, container: Doc) -> None:
    assert deployment["spec"]["replicas"] == 2
    assert _selects(deployment["spec"]["selector"]["matchLabels"], _pod_labels(deployment))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": PORT}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}
    assert container["args"] == ["serve", "--host", "0.0.0.0"]  # noqa: S104
    assert container["image"] == "alert-remediator"  # tag set by kustomization `images:`


# Beyond serve's longest stop: the interpreter's exit after it, and the kubelet's own delay.
STOP_MARGIN_S = 10.0


def _manifest_settings(container: Doc) -> Settings:
    """The settings the Deployment's literal environment gives (the others at their
    defaults); variables that name a file or a Secret are left out, they change no bound."""
    fields = {key.env: key.field for key in KEYS}
    given = {
        fields[name]: entry["value"]
        for name, entry in _env(container).items()
        if "value" in entry and name in fields and not name.endswith(("_FILE", "_DIR"))
    }
    return Settings.model_validate(given, context=WRITTEN)


def test_the_pods_grace_period_outlasts_the_longest_stop(pod_spec: Doc, container: Doc) -> None:
    # Past terminationGracePeriodSeconds the kubelet kills serve: a step still acting is cut
    # off and its run fails. The budget is what serve's stop takes at most under the settings
    # the Deployment gives (receiver/stop_budget.py); deploy/README.md shows the sum.
    budget = stop_budget(_manifest_settings(container))
    grace = pod_spec["terminationGracePeriodSeconds"]
    assert grace >= budget.total_s + STOP_MARGIN_S, (
        f"terminationGracePeriodSeconds {grace} does not outlast serve's stop "
        f"({budget.total_s:g} s: {budget}) by {STOP_MARGIN_S:g} s"
    )
    readme = (DEPLOY / "README.md").read_text()
    assert f"`terminationGracePeriodSeconds: {grace}`" in readme
    assert f"= {budget.total_s:g} s." in readme


def test_the_stop_budget_follows_the_shutdown_grace() -> None:
    # What deploy/README.md tells an operator who raises the grace: twice as much on the pod.
    base = stop_budget(Settings()).total_s
    longer = Settings.model_validate({"worker_shutdown_grace_seconds": "50s"}, context=WRITTEN)
    assert stop_budget(longer).total_s == base + 2 * 30


def test_pod_and_container_are_hardened(pod_spec: Doc, container: Doc) -> None:
    pod_sc = pod_spec["securityContext"]
    assert pod_sc["runAsNonRoot"] is True
    assert pod_sc["runAsUser"] == UID
    assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == UID
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc.get("privileged", False) is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod_spec.get(field, False)
    assert pod_spec["serviceAccountName"] == SERVICE_ACCOUNT
    assert pod_spec["automountServiceAccountToken"] is True


def test_tmp_is_an_emptydir_and_data_dir_lives_under_it(pod_spec: Doc, container: Doc) -> None:
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert _env(container)["REMEDIATOR_DATA_DIR"]["value"].startswith("/tmp/")


def test_secrets_come_from_the_secret_and_the_token_from_a_file(
    pod_spec: Doc, container: Doc
) -> None:
    env = _env(container)
    for var, key in (
        ("REMEDIATOR_DATABASE_URL", "database-url"),
        ("REMEDIATOR_REDIS_URL", "redis-url"),
    ):
        assert env[var]["valueFrom"]["secretKeyRef"] == {"name": SECRET, "key": key}
    assert "REMEDIATOR_WEBHOOK_TOKEN" not in env, "the token must not be in the environment"
    token_file = Path(env["REMEDIATOR_WEBHOOK_TOKEN_FILE"]["value"])
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    (mount,) = [m for m in container["volumeMounts"] if token_file.parent == Path(m["mountPath"])]
    assert mount["readOnly"] is True
    secret = volumes[mount["name"]]["secret"]
    assert secret["secretName"] == SECRET
    assert {"key": "webhook-token", "path": token_file.name} in secret["items"]
    # Every other value is a literal: no secret material in the manifest itself.
    for name, e in env.items():
        if "valueFrom" not in e:
            assert "://" not in e["value"], name


def test_operator_tokens_come_from_an_optional_secret_volume(pod_spec: Doc, container: Doc) -> None:
    env = _env(container)
    assert "REMEDIATOR_OPERATOR_TOKEN" not in env
    assert "REMEDIATOR_OPERATOR_TOKEN_FILE" not in env
    directory = env["REMEDIATOR_OPERATOR_TOKENS_DIR"]["value"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == directory]
    assert mount["readOnly"] is True
    secret = {v["name"]: v for v in pod_spec["volumes"]}[mount["name"]]["secret"]
    assert secret["secretName"] == "alert-remediator-operators"
    assert secret["optional"] is True  # no operators yet: the pod still starts
    assert "items" not in secret  # every key is an operator


def test_rules_configmap_is_mounted_as_the_rules_dir(pod_spec: Doc, container: Doc) -> None:
    rules_dir = _env(container)["REMEDIATOR_RULES_DIR"]["value"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == rules_dir]
    assert mount["readOnly"] is True
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    assert volumes[mount["name"]]["configMap"]["name"] == "alert-remediator-rules"


def test_service_account_does_not_automount(base: list[Doc]) -> None:
    sa = _one(base, "ServiceAccount")
    assert sa["metadata"]["name"] == SERVICE_ACCOUNT
    assert sa["automountServiceAccountToken"] is False


def test_namespace_enforces_restricted_pod_security(base: list[Doc]) -> None:
    ns = _one(base, "Namespace")
    assert ns["metadata"]["name"] == APP_NAMESPACE
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


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


# -- Dockerfile ------------------------------------------------------------------------------------


def _dockerfile_stages() -> list[list[str]]:
    lines = (REPO / "Dockerfile").read_text().splitlines()
    logical: list[str] = []
    buf = ""
    for line in lines:
        if line.lstrip().startswith("#") and not buf:
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append((buf + line).strip())
        buf = ""
    stages: list[list[str]] = [[]]
    for instr in filter(None, logical):
        if instr.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(instr)
    return stages


def test_dockerfile_is_multistage_non_root_without_build_tools() -> None:
    preamble, builder, runtime = _dockerfile_stages()
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in preamble
    assert builder[0] == "FROM ${PYTHON_IMAGE} AS builder"
    assert any("pip wheel" in i for i in builder)
    assert runtime[0].startswith("FROM ${PYTHON_IMAGE}")
    text = "\n".join(runtime)
    assert "--no-index" in text, "runtime installs only the builder's wheels"
    assert not re.search(r"apt-get|gcc|build-essential", text)
    assert f"USER {UID}:{UID}" in runtime
    entry = [i for i in runtime if i.startswith("ENTRYPOINT ")]
    cmd = [i for i in runtime if i.startswith("CMD ")]
    # Exec form (a JSON list): the Python process itself gets the stop signal, SIGTERM.
    assert [json.loads(e.split(" ", 1)[1]) for e in entry] == [["remediator"]]
    assert [i for i in runtime if i.startswith("STOPSIGNAL")] == ["STOPSIGNAL SIGTERM"]
    assert [json.loads(c.split(" ", 1)[1]) for c in cmd] == [["serve", "--host", "0.0.0.0"]]  # noqa: S104
    assert f"EXPOSE {PORT}" in runtime


def test_dockerignore_is_an_allow_list() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    included = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert included == {"pyproject.toml", "README.md", "receiver", "remediations", "rules"}
    copied = re.findall(
        r"^COPY (?!--from)(?:--\S+ )*(.+) \S+$", (REPO / "Dockerfile").read_text(), re.M
    )
    sources = {s for c in copied for s in c.split()}
    assert sources <= included, (
        f"Dockerfile COPYs what .dockerignore leaves out: {sources - included}"
    )
