"""The pod the kustomize base in deploy/ runs and the image it runs, read as files: replicas,
probes and resources, a grace period that outlasts the longest stop, hardening, secrets and
tokens from files, the rules mounted; the Dockerfile multi-stage and non-root, .dockerignore an
allow-list.

No kubectl and no API server here: tests/unit/test_deploy_render.py renders the base with
kubectl.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from receiver.config import Settings
from receiver.config.settings import WRITTEN
from receiver.config.sources import KEYS
from receiver.stop_budget import stop_budget
from tests.support import deploy_manifests
from tests.support.deploy_manifests import (
    APP_NAMESPACE,
    DEPLOY,
    PORT,
    REPO,
    SECRET,
    SERVICE_ACCOUNT,
    UID,
    Doc,
    _env,
    _one,
    _pod_labels,
    _selects,
)

# The base's objects, read once per module (fixtures: tests take them by name).
base = deploy_manifests.base
deployment = deploy_manifests.deployment
pod_spec = deploy_manifests.pod_spec
container = deploy_manifests.container


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
