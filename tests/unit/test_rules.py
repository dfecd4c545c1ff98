"""Rule files that compile: what the engine gets, matching, and the shipped rules."""

from __future__ import annotations

import hashlib
import re
import textwrap
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from receiver.facts import FactKind
from receiver.model import Approval
from receiver.rules.compile import compile_files, lint_files
from receiver.rules.loader import load_rules
from receiver.rules.model import LiveCondition, RollbackCondition, RuleSet
from remediations.base import Registry
from remediations.registry import default_registry
from remediations.targets import Target
from tests.support.rules import GOOD, POLICY, TARGET, errors_of, one_rule, registry

REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------------------------
# a valid file


def test_good_rule_compiles_to_what_the_engine_needs() -> None:
    ruleset = compile_files({"rules/a.yaml": GOOD}, registry(), POLICY)
    (rule,) = ruleset.rules
    assert rule.name == "restart-on-high-memory"
    assert rule.description == "Restart, then grow."
    assert (rule.file, rule.line) == ("rules/a.yaml", 2)
    assert [str(m) for m in rule.matchers] == [
        'alertname="HighMemoryUsage"',
        'severity=~"warning|critical"',
    ]
    assert rule.target_kind == "Deployment"
    assert rule.target_namespace.source == "{{ labels.namespace }}"
    assert [s.action for s in rule.steps] == ["test.restart", "test.grow"]
    restart, grow = rule.steps
    assert restart.repeated is None
    assert grow.repeated is not None
    assert (grow.repeated.times, grow.repeated.within_s) == (2, 3600.0)
    assert grow.params == {"container": "app", "factor": 1.5}
    assert rule.verify_within_s == 600.0
    assert (rule.cooldown_s, rule.max_runs, rule.max_runs_per_s) == (900.0, 3, 3600.0)
    assert rule.widest_window_s == 3600.0
    (restore,) = rule.on_resolved
    # Defaults of the params model are filled in: the executor sees the complete params.
    assert restore.params == {"delta": None, "restore": True, "max": 5}
    assert ruleset.source == {"rules/a.yaml": hashlib.sha256(GOOD.encode()).hexdigest()}


@pytest.mark.parametrize(
    ("approval", "action", "needs"),
    [
        ("auto", "test.restart", False),  # low risk
        ("auto", "test.undo", True),  # high risk
        ("required", "test.restart", True),
        ("never", "test.undo", False),
    ],
)
def test_approval_resolution(approval: str, action: str, needs: bool) -> None:
    text = one_rule(TARGET + f"steps: [{{action: {action}, approval: {approval}}}]\n")
    (rule,) = compile_files({"a.yaml": text}, registry(), POLICY).rules
    assert rule.steps[0].approval is Approval(approval)
    assert rule.steps[0].needs_approval is needs
    assert rule.steps[0].to_plan().needs_approval is needs


def test_approval_defaults_to_auto() -> None:
    text = one_rule(TARGET + "steps: [{action: test.undo}]\n")
    (rule,) = compile_files({"a.yaml": text}, registry(), POLICY).rules
    assert rule.steps[0].approval is Approval.AUTO
    assert rule.steps[0].needs_approval is True


def test_step_plans_do_not_share_params_with_the_rule() -> None:
    (rule,) = compile_files({"a.yaml": GOOD}, registry(), POLICY).rules
    step = rule.steps[1].to_plan()
    step.params["factor"] = 100  # type: ignore[index]
    assert rule.steps[1].params["factor"] == 1.5


_MATCHERS = [
    'alertname="A"',
    'alertname="B"',
    'alertname=""',
    'alertname!="A"',
    'alertname=~"A|C"',
    'alertname!~"B"',
    'severity="critical"',
    'severity=~"warn.*"',
    'team!=""',
]
_RULE = """
  - name: r{i}
    match: {match}
    target: {{kind: Deployment, namespace: shop, name: web}}
    steps:
      - action: test.restart
"""


@given(
    st.lists(st.lists(st.sampled_from(_MATCHERS), min_size=1, max_size=3), min_size=1, max_size=6),
    st.dictionaries(
        st.sampled_from(["alertname", "severity", "team"]),
        st.sampled_from(["", "A", "B", "C", "critical", "warning"]),
    ),
)
def test_matching_by_alertname_index_is_matching_every_rule(
    matches: list[list[str]], labels: dict[str, str]
) -> None:
    # The index by alertname is only a shortcut: same rules, same (file) order as brute force.
    # A rule whose matchers no alert passes (alertname="A" with alertname="B") is a load error
    # (receiver.rules.reach), so it is left out of the file.
    rules = [
        _RULE.format(i=i, match="[" + ", ".join(f"'{m}'" for m in ms) + "]")
        for i, ms in enumerate(matches)
    ]
    text = "rules:" + "".join(r for r in rules if not errors_of({"a.yaml": "rules:" + r}))
    assume(text != "rules:")
    ruleset = compile_files({"a.yaml": text}, registry(), POLICY)
    expected = [rule for rule in ruleset.rules if rule.matches(labels)]
    assert ruleset.matching(labels) == expected
    assert ruleset.matches_any(labels) == bool(expected)


def test_ruleset_matching_by_name_and_immutability() -> None:
    second = GOOD.replace("restart-on-high-memory", "other").replace("HighMemoryUsage", "Other")
    ruleset = compile_files({"a.yaml": GOOD, "b.yaml": second}, registry(), POLICY)
    labels = {"alertname": "HighMemoryUsage", "severity": "critical"}
    assert [r.name for r in ruleset.matching(labels)] == ["restart-on-high-memory"]
    assert ruleset.matching({"alertname": "HighMemoryUsage", "severity": "info"}) == []
    assert ruleset.by_name("other") is ruleset.rules[1]
    assert ruleset.by_name("missing") is None
    ruleset.source["a.yaml"] = "tampered"
    assert ruleset.source["a.yaml"] != "tampered"
    assert isinstance(ruleset.rules, tuple)
    with pytest.raises(ValueError, match="duplicate rule name"):
        RuleSet([ruleset.rules[0], ruleset.rules[0]], {})


def test_digest_follows_content() -> None:
    a = compile_files({"a.yaml": GOOD}, registry(), POLICY)
    b = compile_files({"a.yaml": GOOD + "\n"}, registry(), POLICY)
    assert a.digest == compile_files({"a.yaml": GOOD}, registry(), POLICY).digest
    assert a.digest != b.digest


def test_yaml_anchors_and_merge_keys_work() -> None:
    text = """\
    rules:
      - name: a
        match: ['alertname="A"']
        target: &target {kind: Deployment, namespace: "{{ labels.namespace }}", name: x}
        steps: [{action: test.restart}]
      - name: b
        match: ['alertname="B"']
        target: {<<: *target, name: y}
        steps: [{action: test.restart}]
    """
    ruleset = compile_files({"a.yaml": textwrap.dedent(text)}, registry(), POLICY)
    assert [r.target_name.source for r in ruleset.rules] == ["x", "y"]


# --------------------------------------------------------------------------------------------
# the shipped rules and the format reference, against the real actions


def _default_registry() -> Registry:
    return default_registry()


def test_shipped_rules_load() -> None:
    """The runbooks of docs/playbooks/, rule by rule: which rules each alert reaches (the labels
    alertmanager/prometheus-rules.yml gives it), what they do, when, with which guards."""
    ruleset = load_rules(REPO / "rules", _default_registry(), POLICY)
    labels = {"severity": "critical", "deployment": "web", "namespace": "shop"}
    extra = {"QueueBacklog": {"queue": "emails"}, "DatabaseConnectionsHigh": {"database": "shop"}}
    by_alert = {
        alert: [
            r.name for r in ruleset.matching({"alertname": alert, **labels, **extra.get(alert, {})})
        ]
        for alert in ("HighErrorRate", "HighMemoryUsage", "QueueBacklog", "DatabaseConnectionsHigh")
    }
    assert by_alert == {
        "HighErrorRate": ["rollback-or-scale-on-high-error-rate"],
        "HighMemoryUsage": ["restart-on-high-memory"],
        "QueueBacklog": ["scale-workers-on-queue-backlog", "requeue-dead-letters-on-queue-backlog"],
        "DatabaseConnectionsHigh": [
            "end-idle-transactions-on-database-connections",
            "shrink-pool-on-database-connections",
        ],
    }
    rules = {r.name: r for r in ruleset.rules}
    assert set(rules) == {name for names in by_alert.values() for name in names}
    for rule in rules.values():  # every runbook: guards, verification, on-call told
        assert None not in (rule.cooldown_s, rule.max_runs, rule.verify_within_s), rule.name
        assert rule.announce is not None, rule.name
        assert rule.announce.channel == "oncall", rule.name

    errors = rules["rollback-or-scale-on-high-error-rate"]
    undo, scale = errors.steps
    assert (undo.action, undo.needs_approval, undo.repeated) == (
        "kubernetes.rollout_undo",
        True,
        None,
    )
    assert (scale.action, scale.needs_approval) == ("kubernetes.scale", False)
    # Exactly one applies: a recent release with a revision before it -> roll back; otherwise
    # -> scale out, also when the kept revisions cannot tell when the release was, or there is
    # nothing to roll back to (a new Deployment).
    ((recent, able), (old,)) = undo.conditions, scale.conditions
    assert recent == LiveCondition(FactKind.ROLLOUT, 1800.0)
    assert able == RollbackCondition(FactKind.ROLLOUT, wanted=True)
    assert old == LiveCondition(
        FactKind.ROLLOUT, 1800.0, negate=True, or_unknown=True, or_no_rollback=True
    )
    assert (scale.params["factor"], scale.params["min"], scale.params["max"]) == (1.5, 2, 10)
    assert errors.on_resolved == ()  # the added pods stay: the cause is not known

    memory = rules["restart-on-high-memory"]
    restart, grow = memory.steps
    assert (restart.action, restart.repeated) == ("kubernetes.rollout_restart", None)
    assert grow.action == "kubernetes.set_resources"
    assert grow.repeated is not None
    assert (grow.repeated.times, grow.repeated.within_s) == (2, 3600.0)
    assert grow.needs_approval
    assert grow.params["memory_limit"] == {"factor": 1.5, "max": "4Gi", "value": None}
    # A real recurrence needs the alert's `for: 10m` again: the cooldown never refuses it.
    assert memory.cooldown_s == 600.0
    assert memory.settle_s == 1800.0

    workers = rules["scale-workers-on-queue-backlog"]
    assert [s.action for s in workers.steps] == ["kubernetes.scale"]
    assert [(s.action, s.params["restore"]) for s in workers.on_resolved] == [
        ("kubernetes.scale", True)
    ]
    dead = rules["requeue-dead-letters-on-queue-backlog"]
    assert (dead.target_kind, dead.target_name.source) == ("RedisQueue", "jobs/{{ labels.queue }}")
    assert [(s.action, s.params["max_messages"]) for s in dead.steps] == [
        ("redis.requeue_dead_letters", 100)
    ]

    idle = rules["end-idle-transactions-on-database-connections"]
    assert (idle.target_kind, idle.target_name.source) == (
        "PostgresDatabase",
        "{{ labels.database }}",
    )
    (terminate,) = idle.steps
    assert terminate.action == "postgres.terminate_idle"
    assert (terminate.params["roles"], terminate.params["max_sessions"]) == (["app"], 10)
    assert terminate.params["states"] == ["idle in transaction", "idle in transaction (aborted)"]
    pool = rules["shrink-pool-on-database-connections"]
    tell, env = pool.steps
    assert (tell.action, tell.repeated, tell.needs_approval) == ("notify", None, False)
    assert (env.action, env.params["name"], env.params["value"], env.needs_approval) == (
        "kubernetes.set_env",
        "DB_POOL_SIZE",
        "5",
        True,
    )
    assert env.repeated is not None
    assert (env.repeated.times, env.repeated.within_s) == (2, 3600.0)


def _readme_rule_files() -> list[tuple[int, str]]:
    text = (REPO / "rules" / "README.md").read_text()
    blocks = []
    for found in re.finditer(r"```yaml\n(.*?)```", text, re.DOTALL):
        if found[1].startswith("rules:"):
            blocks.append((text.count("\n", 0, found.start()) + 1, found[1]))
    return blocks


def test_readme_examples_load() -> None:
    reg = _default_registry()
    blocks = _readme_rule_files()
    assert len(blocks) >= 3
    for line, block in blocks:
        assert lint_files({f"README.md@{line}": block}, reg, POLICY) == [], block


@pytest.mark.parametrize(
    ("target", "error"),
    [
        (
            'target: {kind: PostgresDatabase, namespace: db, name: "{{ labels.database }}"}',
            "4: rule 'r': target: a PostgresDatabase has no namespace; remove it",
        ),
        (
            'target: {kind: Deployment, name: "{{ labels.deployment }}"}',
            "4: rule 'r': target: a Deployment needs a namespace",
        ),
        (
            "target: {kind: Gadget, namespace: a, name: b}",
            "4: rule 'r': target.kind: kind 'Gadget' is not a known target kind",
        ),
        (
            "target: {kind: PostgresDatabase, name: Orders-DB}",
            "4: rule 'r': target.name: name 'Orders-DB' is not a PostgreSQL connection name",
        ),
    ],
)
def test_a_target_takes_a_namespace_exactly_when_its_kind_lives_in_one(
    target: str, error: str
) -> None:
    found = errors_of({"f.yaml": one_rule(f"{target}\nsteps: [{{action: test.vacuum}}]\n")})
    assert any(line.startswith(f"f.yaml:{error}") for line in found), found


def test_a_target_outside_kubernetes_compiles_and_renders_without_a_namespace() -> None:
    text = one_rule(
        'target: {kind: PostgresDatabase, name: "{{ labels.database }}"}\n'
        "steps: [{action: test.vacuum}]\n"
    )
    ruleset = compile_files({"f.yaml": text}, registry(), POLICY)
    [rule] = ruleset.rules
    target = rule.render_target({"alertname": "A", "database": "orders"}, {}, POLICY)
    assert target == Target("PostgresDatabase", "", "orders")
    assert target.key == "PostgresDatabase/orders"


def test_a_field_of_another_part_of_a_rule_is_not_its_own_did_you_mean() -> None:
    # `action` one indentation level too far out said "unknown field 'action' (did you mean
    # 'action'?)".
    text = (
        "rules:\n  - name: r\n    match: ['alertname=\"A\"']\n"
        "    target: {kind: Deployment, namespace: shop, name: web}\n"
        "    action: kubernetes.rollout_restart\n"
        "    steps: [{action: kubernetes.rollout_restart}]\n"
    )
    [error] = lint_files({"r.yaml": text}, default_registry(), POLICY)
    assert "unknown field 'action'" in str(error)
    assert "did you mean" not in str(error)
    assert "check its indentation" in str(error)
