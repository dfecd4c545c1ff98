"""deploy/examples/approvals (and approvals-slack) rendered by the pinned kubectl: the overlays
set only settings the service knows, every file a setting names lies in a read-only mount, the
hardening of the base is untouched, and the service's own configuration loader accepts what they
set (with the documented approvers file), so the shipped rules' approval steps can be decided.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from receiver.approvals.policy import ApproverPolicy
from receiver.approvals.tokens import KeyRing
from receiver.config.approvals import ApproversFile, load_approvals
from receiver.config.sources import KEYS, load_settings
from receiver.model import NamespacePolicy
from receiver.rules.loader import load_rules
from remediations.registry import default_registry
from tests.support.kubectl import REPO, Doc, one, parse, render

OVERLAYS = ("deploy/examples/approvals", "deploy/examples/approvals-slack")
KNOWN_ENV = {k.env for k in KEYS}
# Settings whose value is a path the service reads (or, for the data dir, writes).
PATH_ENV = {k.env for k in KEYS if k.field.endswith(("_file", "_dir")) or k.field == "kubeconfig"}
# Named connections: JSON maps whose entries name files (url_file, dsn_file, header_files).
MAP_ENV = {k.env for k in KEYS if k.yaml.split(".")[0] in ("postgres", "redis", "http", "notify")}
APPROVAL_ENV = {
    "REMEDIATOR_EXTERNAL_URL",
    "REMEDIATOR_APPROVAL_KEYS_DIR",
    "REMEDIATOR_APPROVERS_FILE",
    "REMEDIATOR_NOTIFY_CHANNELS",
    "REMEDIATOR_APPROVAL_NOTIFY_CHANNEL",
}


@pytest.fixture(scope="module")
def base_container(kubectl: Path) -> Doc:
    return _container(parse(render(kubectl, "deploy/")))


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest, kubectl: Path) -> list[Doc]:
    return parse(render(kubectl, request.param))


def _pod(docs: list[Doc]) -> Doc:
    pod: Doc = one(docs, "Deployment")["spec"]["template"]["spec"]
    return pod


def _container(docs: list[Doc]) -> Doc:
    (container,) = _pod(docs)["containers"]
    found: Doc = container
    return found


def _env(container: Doc) -> dict[str, Doc]:
    return {e["name"]: e for e in container["env"]}


def _files_in_map(value: Any) -> Iterator[str]:
    """The paths a connection map names: every ``*_file`` value and ``header_files``' values."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "header_files" and isinstance(item, dict):
                yield from (str(v) for v in item.values())
            elif key.endswith("_file") and isinstance(item, str):
                yield item
            else:
                yield from _files_in_map(item)


def _values(container: Doc) -> dict[str, str]:
    return {name: e["value"] for name, e in _env(container).items() if "value" in e}


def _paths(environ: dict[str, str]) -> dict[str, str]:
    """Where each setting that names a file or directory points: variable (with the map entry
    for connection maps) -> path."""
    found: dict[str, str] = {}
    for name, value in environ.items():
        if name in PATH_ENV:
            found[name] = value
        elif name in MAP_ENV:
            for i, path in enumerate(_files_in_map(json.loads(value))):
                found[f"{name}[{i}]"] = path
    return found


def test_overlays_render_the_base_plus_the_ingress_policy(
    overlay: list[Doc], kubectl: Path
) -> None:
    base = parse(render(kubectl, "deploy/"))
    assert sorted(d["kind"] for d in overlay) == sorted(
        [d["kind"] for d in base] + ["NetworkPolicy"]
    )
    # The Secrets are created by hand (deploy/README.md, section 10), never committed.
    assert not [d for d in overlay if d["kind"] == "Secret"]
    added = [
        d
        for d in overlay
        if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] != "alert-remediator"
    ]
    (policy,) = added
    assert policy["metadata"]["namespace"] == "alert-remediator"
    labels = one(overlay, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]


def test_overlays_keep_the_hardening(overlay: list[Doc], kubectl: Path) -> None:
    base = parse(render(kubectl, "deploy/"))
    pod, base_pod = _pod(overlay), _pod(base)
    assert pod["securityContext"] == base_pod["securityContext"]
    assert _container(overlay)["securityContext"] == _container(base)["securityContext"]
    assert _container(overlay)["securityContext"]["readOnlyRootFilesystem"] is True
    # What the base sets is still set, to the same values.
    assert _env(_container(base)).items() <= _env(_container(overlay)).items()


def test_overlays_set_only_settings_the_service_knows(
    overlay: list[Doc], base_container: Doc
) -> None:
    env = _env(_container(overlay))
    unknown = sorted(n for n in env if n not in KNOWN_ENV)
    assert not unknown, f"not a setting of receiver.config.sources.KEYS: {unknown}"
    added = set(env) - set(_env(base_container))
    assert added >= APPROVAL_ENV
    assert added <= APPROVAL_ENV | {"REMEDIATOR_SLACK_SIGNING_SECRET_FILE"}


def test_every_file_a_setting_names_lies_in_a_read_only_mount(overlay: list[Doc]) -> None:
    pod, container = _pod(overlay), _container(overlay)
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {PurePosixPath(m["mountPath"]): m for m in container["volumeMounts"]}
    paths = _paths(_values(container))
    assert {"REMEDIATOR_APPROVAL_KEYS_DIR", "REMEDIATOR_APPROVERS_FILE"} <= paths.keys()
    assert any(p.startswith("REMEDIATOR_NOTIFY_CHANNELS[") for p in paths)
    for setting, value in paths.items():
        path = PurePosixPath(value)
        assert path.is_absolute(), f"{setting}={value}: not an absolute path"
        under = [m for m in mounts if path == m or m in path.parents]
        assert under, f"{setting}={value} lies in no volume mount: {sorted(map(str, mounts))}"
        mount = mounts[max(under, key=lambda m: len(m.parts))]
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:
            continue  # the data dir: the one writable place
        assert mount.get("readOnly") is True, f"{setting}: mount {mount['mountPath']} is writable"
        items = (volume.get("secret") or volume.get("configMap") or {}).get("items")
        if items is not None:  # only the listed keys exist in the mount
            relative = str(path.relative_to(mount["mountPath"]))
            assert relative in [i["path"] for i in items], f"{setting}: no item {relative}"
    # Every Secret mount is read-only, and the approval Secrets are required: a pod with half
    # of approvals set up does not start.
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "secret" in volume or "configMap" in volume:
            assert mount.get("readOnly") is True, mount["mountPath"]
        if "secret" in volume and volume["secret"]["secretName"] != "alert-remediator-operators":
            assert not volume["secret"].get("optional"), volume["name"]


def test_external_url_is_a_placeholder_the_docs_say_to_change(overlay: list[Doc]) -> None:
    url = _env(_container(overlay))["REMEDIATOR_EXTERNAL_URL"]["value"]
    assert url == "https://remediator.example.com"
    patch = (REPO / "deploy/examples/approvals/deployment-patch.yaml").read_text()
    assert "CHANGE ME" in patch
    readme = _approvals_section()
    assert url in readme
    assert "placeholder" in readme


def _approvals_section() -> str:
    text = (REPO / "deploy" / "README.md").read_text()
    match = re.search(r"^## 10\. Approvals\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, "deploy/README.md has no section '## 10. Approvals'"
    return str(match.group(1))


def _documented_approvers() -> str:
    blocks: list[str] = re.findall(r"```yaml\n(.*?)```", _approvals_section(), re.S)
    (approvers,) = [b for b in blocks if "by_rule:" in b]
    return approvers


def _fill(container: Doc, root: Path) -> dict[str, str]:
    """The container's environment with every mounted path moved under ``root``, and the files
    the Secrets would hold written there (made-up values)."""
    environ = {
        "REMEDIATOR_DATABASE_URL": "postgresql://remediator:pw@postgres.db:5432/remediator",
        "REMEDIATOR_REDIS_URL": "redis://:pw@redis.cache:6379/0",
    }
    moved = [m["mountPath"] for m in container["volumeMounts"] if m["mountPath"] != "/tmp"]
    for name, value in _values(container).items():
        for mount in moved:
            value = value.replace(mount + "/", f"{root}{mount}/").replace(
                f'"{mount}"', f'"{root}{mount}"'
            )
            if value == mount:
                value = f"{root}{mount}"
        environ[name] = value
    contents = {
        "REMEDIATOR_WEBHOOK_TOKEN_FILE": "webhook-token-0123456789abcdef",
        "REMEDIATOR_APPROVERS_FILE": _documented_approvers(),
        "REMEDIATOR_SLACK_SIGNING_SECRET_FILE": "8f742231b10e8888abcd99yyyzzz85a5",
    }
    for setting, path in _paths(environ).items():
        if "REMEDIATOR_NOTIFY_CHANNELS" in setting:
            _write(Path(path), "https://hooks.slack.com/services/T000/B000/XXXX\n")
        elif setting in contents:
            _write(Path(path), contents[setting] + "\n")
    directories = {
        "REMEDIATOR_APPROVAL_KEYS_DIR": {"2025-06-01": "ab" * 32},
        "REMEDIATOR_OPERATOR_TOKENS_DIR": {"alice": "alice-token-0123456789", "bob": "b" * 24},
    }
    for setting, files in directories.items():
        for name, content in files.items():
            _write(Path(environ[setting]) / name, content + "\n")
    return environ


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_service_accepts_what_the_overlays_set(overlay: list[Doc], tmp_path: Path) -> None:
    """The overlay's settings through the service's own loaders, with the files the README's
    commands would put in the Secrets: links are on, notices go to a configured channel, and
    every shipped step that needs approval has someone who may decide it."""
    container = _container(overlay)
    environ = _fill(container, tmp_path)
    settings = load_settings(None, environ)
    files = load_approvals(settings)
    assert settings.external_url
    assert KeyRing({k: v.get_secret_value().encode() for k, v in files.keys.items()})
    assert settings.approval_notify_channel in settings.notify_channels
    assert settings.notify_channels[settings.approval_notify_channel].url is not None
    if "REMEDIATOR_SLACK_SIGNING_SECRET_FILE" in environ:
        assert files.slack_signing_secret is not None
    policy = ApproverPolicy.of(
        by_rule=files.approvers.by_rule,
        by_risk=files.approvers.by_risk,
        default=files.approvers.default,
    )
    registry = default_registry()
    ruleset = load_rules(REPO / "rules", registry, NamespacePolicy())
    waiting = [
        (rule.name, registry.get(step.action).risk)
        for rule in ruleset.rules
        for step in rule.steps
        if step.needs_approval
    ]
    assert waiting, "no shipped step needs approval: this test checks nothing"
    for rule_name, risk in waiting:
        assert policy.approvers(rule_name, risk), f"nobody may decide {rule_name} ({risk})"
    # The documented approvers are operators whose tokens the example Secret holds.
    named = set(files.approvers.default).union(*files.approvers.by_rule.values())
    named |= set().union(*files.approvers.by_risk.values())
    assert named <= set(settings.operator_tokens)


def test_the_documented_approvers_file_names_shipped_rules() -> None:
    approvers = ApproversFile.model_validate(yaml.safe_load(_documented_approvers()))
    shipped = set(re.findall(r"^  - name: (\S+)$", _rules_text(), re.M))
    assert set(approvers.by_rule) <= shipped


def _rules_text() -> str:
    return "".join(p.read_text() for p in sorted((REPO / "rules").glob("*.yaml")))
