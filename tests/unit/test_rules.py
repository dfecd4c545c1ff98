"""Rule files: durations, schema, every loader error with its exact file:line, reload."""

from __future__ import annotations

import hashlib
import re
import textwrap
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field

from receiver.durations import format_duration, parse_duration
from receiver.model import Approval, NamespacePolicy
from receiver.rules.compile import compile_files, lint_files
from receiver.rules.errors import RuleError, RuleSetError
from receiver.rules.loader import RuleHolder, lint, load_rules
from receiver.rules.model import RuleSet
from remediations.base import (
    ActionContext,
    Change,
    Outcome,
    Registry,
    Result,
    Risk,
    Target,
)

REPO = Path(__file__).resolve().parents[2]

# --------------------------------------------------------------------------------------------
# Tiny actions: the loader only needs names, params models, risks and target kinds.


class _Test:
    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]]
    risk: ClassVar[Risk]
    disruptive: ClassVar[bool] = False
    target_kinds: ClassVar[frozenset[str]] = frozenset({"Deployment", "StatefulSet"})

    def describe(self, target: Target, params: BaseModel) -> str:
        return f"{self.name} {target.key}"

    async def preview(self, ctx: ActionContext, target: Target, params: BaseModel) -> Change:
        return Change(summary=self.describe(target, params))

    async def run(self, ctx: ActionContext, target: Target, params: BaseModel) -> Result:
        return Result(Outcome.NOOP, "test action")


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScaleParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    delta: int | None = None
    restore: bool = False
    max: int = Field(ge=1)


class GrowParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    container: str
    factor: float = Field(gt=0)


class Restart(_Test):
    name = "test.restart"
    Params: ClassVar[type[BaseModel]] = NoParams
    risk = Risk.LOW


class Scale(_Test):
    name = "test.scale"
    Params: ClassVar[type[BaseModel]] = ScaleParams
    risk = Risk.LOW


class Grow(_Test):
    name = "test.grow"
    Params: ClassVar[type[BaseModel]] = GrowParams
    risk = Risk.HIGH


class Undo(_Test):
    name = "test.undo"
    Params: ClassVar[type[BaseModel]] = NoParams
    risk = Risk.HIGH
    target_kinds = frozenset({"Deployment"})


def registry() -> Registry:
    return Registry([Restart(), Scale(), Grow(), Undo()])


POLICY = NamespacePolicy()

GOOD = """\
rules:
  - name: restart-on-high-memory
    description: Restart, then grow.
    match: ['alertname="HighMemoryUsage"', 'severity=~"warning|critical"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: test.restart
      - action: test.grow
        when: {repeated: {times: 2, within: 1h}}
        params: {container: app, factor: 1.5}
        approval: required
    verify: {resolved_within: 10m}
    guards: {cooldown: 15m, max_runs: {count: 3, per: 1h}}
    on_resolved:
      - action: test.scale
        params: {restore: true, max: 5}
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def errors_of(files: dict[str, str], policy: NamespacePolicy = POLICY) -> list[str]:
    return [str(e) for e in lint_files(files, registry(), policy)]


def one_rule(body: str) -> str:
    """A file with one rule whose first lines are fixed: `body` starts at line 4."""
    return "rules:\n  - name: r\n    match: ['alertname=\"A\"']\n" + textwrap.indent(
        textwrap.dedent(body), "    "
    )


TARGET = 'target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.d }}"}\n'


# --------------------------------------------------------------------------------------------
# durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("15m", 900),
        ("1h", 3600),
        ("1h30m", 5400),
        ("2d", 172800),
        ("1w", 604800),
        ("500ms", 0.5),
        ("1m30s", 90),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", " ", "30", "1.5h", "1m1h", "h", "1s1s", "-1m", "1 h", "1H"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration; expected a duration like 30s"):
        parse_duration(text)


def test_parse_duration_rejects_a_bare_number() -> None:
    # YAML reads `cooldown: 60` as an int: seconds or minutes? Refuse rather than guess.
    with pytest.raises(ValueError, match="60 is not a duration"):
        parse_duration(60)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=10**9))
def test_format_duration_round_trips(millis: int) -> None:
    seconds = millis / 1000
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


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
    text = "rules:" + "".join(
        _RULE.format(i=i, match="[" + ", ".join(f"'{m}'" for m in ms) + "]")
        for i, ms in enumerate(matches)
    )
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
# every error kind, with its exact line


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            TARGET + "steps: [{action: test.restart}]\nstep: []\n",
            "a.yaml:6: rule 'r': unknown field 'step' (did you mean 'steps'?)",
            id="typo-top",
        ),
        pytest.param(
            TARGET + "steps:\n  - action: test.restart\n    parms: {}\n",
            "a.yaml:7: rule 'r': steps[0]: unknown field 'parms' (did you mean 'params'?)",
            id="typo-step",
        ),
        pytest.param(
            "steps: [{action: test.restart}]\n",
            "a.yaml:2: rule 'r': missing required field 'target'",
            id="missing-target",
        ),
        pytest.param(
            "target:\n  kind: Deployment\n  namespace: ns\nsteps: [{action: test.restart}]\n",
            "a.yaml:4: rule 'r': target: missing required field 'name'",
            id="missing-nested",
        ),
        pytest.param(
            TARGET + "steps:\n  - action: test.restart\n  - action: test.nope\n",
            "a.yaml:7: rule 'r': steps[1].action: unknown action 'test.nope'; "
            "known actions: test.grow, test.restart, test.scale, test.undo",
            id="unknown-action",
        ),
        pytest.param(
            TARGET + "steps:\n  - action: test.grow\n    params:\n      container: app\n"
            "      factor: -1\n",
            "a.yaml:9: rule 'r': invalid params for test.grow: factor: "
            "Input should be greater than 0",
            id="params-value",
        ),
        pytest.param(
            TARGET + "steps:\n  - action: test.grow\n    params: {factor: 2}\n",
            "a.yaml:7: rule 'r': invalid params for test.grow: container: Field required",
            id="params-missing",
        ),
        pytest.param(
            TARGET + "steps:\n  - action: test.restart\n    params: {force: true}\n",
            "a.yaml:7: rule 'r': invalid params for test.restart: force: "
            "Extra inputs are not permitted",
            id="params-extra",
        ),
        pytest.param(
            "target: {kind: DaemonSet, namespace: ns, name: x}\nsteps:\n  - action: test.restart\n",
            "a.yaml:6: rule 'r': test.restart cannot act on a DaemonSet "
            "(it acts on: Deployment, StatefulSet)",
            id="kind-unsupported",
        ),
        pytest.param(
            "target: {kind: StatefulSet, namespace: ns, name: x}\n"
            "steps: [{action: test.restart}]\n"
            "on_resolved:\n  - action: test.undo\n",
            "a.yaml:7: rule 'r': test.undo cannot act on a StatefulSet (it acts on: Deployment)",
            id="kind-unsupported-on-resolved",
        ),
        pytest.param(
            "target:\n  kind: Deployment\n  namespace: kube-system\n  name: x\n"
            "steps: [{action: test.restart}]\n",
            "a.yaml:6: rule 'r': target.namespace: namespace 'kube-system' is not allowed by "
            "policy (allow=[], deny=['kube-system', 'kube-public', 'kube-node-lease'])",
            id="literal-namespace-denied",
        ),
        pytest.param(
            "target:\n  kind: Deployment\n  namespace: '{{ labels.namespace }}'\n  name: Bad_Name\n"
            "steps: [{action: test.restart}]\n",
            "a.yaml:7: rule 'r': target.name: name 'Bad_Name' is not a DNS-1123 subdomain "
            "(a-z, 0-9, '-', '.', at most 253)",
            id="literal-name-invalid",
        ),
        pytest.param(
            "target:\n  kind: Deployment\n  namespace: '{{ label.namespace }}'\n  name: x\n"
            "steps: [{action: test.restart}]\n",
            "a.yaml:6: rule 'r': target.namespace: unknown root 'label' in 'label.namespace'; "
            "use labels or annotations in template '{{ label.namespace }}'",
            id="bad-template",
        ),
        pytest.param(
            TARGET + "steps: [{action: test.restart}]\nguards: {cooldown: 15}\n",
            "a.yaml:6: rule 'r': guards.cooldown: 15 is not a duration; expected a duration "
            "like 30s, 15m, 1h30m or 2d (units w, d, h, m, s, ms, largest first)",
            id="bad-duration",
        ),
        pytest.param(
            TARGET + "steps: [{action: test.restart}]\nverify: {resolved_within: 0s}\n",
            "a.yaml:6: rule 'r': verify.resolved_within: '0s' is not a positive duration",
            id="zero-duration",
        ),
        pytest.param(
            TARGET + "steps: [{action: test.restart, approval: maybe}]\n",
            "a.yaml:5: rule 'r': steps[0].approval: Input should be 'auto', 'required' or 'never'",
            id="bad-approval",
        ),
        pytest.param(
            TARGET + "steps:\n  - action: test.grow\n    params: {container: app, factor: 2}\n"
            "    when: {repeated: {times: 2, within: 1h}}\n",
            "a.yaml:5: rule 'r': every step waits for a repetition, so the first alert would do "
            "nothing and never count as one; add a step without `when`",
            id="all-steps-wait",
        ),
        pytest.param(
            TARGET + "steps:\n  - action: test.restart\n  - action: test.grow\n"
            "    params: {container: app, factor: 2}\n"
            "    when: {repeated: {times: 0, within: 1h}}\n",
            "a.yaml:9: rule 'r': steps[1].when.repeated.times: "
            "Input should be greater than or equal to 1",
            id="times-zero",
        ),
        pytest.param(
            TARGET + "steps: [{action: test.restart}]\non_resolved:\n"
            "  - action: test.restart\n    when: {repeated: {times: 2, within: 1h}}\n",
            "a.yaml:8: rule 'r': on_resolved steps take no `when`: they run whenever the alert "
            "resolves",
            id="when-on-resolved",
        ),
        pytest.param(
            TARGET + "steps: []\n",
            "a.yaml:5: rule 'r': steps must list at least one step",
            id="no-steps",
        ),
    ],
)
def test_rule_error_with_line(body: str, expected: str) -> None:
    assert errors_of({"a.yaml": one_rule(body)}) == [expected]


def test_empty_match_list() -> None:
    text = (
        "rules:\n  - name: r\n    match: []\n    "
        + TARGET
        + "    steps: [{action: test.restart}]\n"
    )
    assert errors_of({"a.yaml": text}) == [
        "a.yaml:3: rule 'r': match must list at least one matcher; an empty list would match "
        "every alert"
    ]


def test_invalid_matcher_points_at_the_item() -> None:
    text = (
        "rules:\n  - name: r\n    match:\n      - 'alertname=\"A\"'\n      - 'severity=~\"(x\"'\n"
        "    " + TARGET + "    steps: [{action: test.restart}]\n"
    )
    assert errors_of({"a.yaml": text}) == [
        "a.yaml:5: rule 'r': match[1]: invalid regular expression in severity=~\"(x\": "
        "missing closing )"
    ]


def test_bad_rule_name() -> None:
    text = "rules:\n  - name: Restart_It\n    match: ['a=\"b\"']\n    " + TARGET
    text += "    steps: [{action: test.restart}]\n"
    assert errors_of({"a.yaml": text}) == [
        "a.yaml:2: rule 'Restart_It': name: rule name 'Restart_It' must be lower-case letters, "
        "digits and '-', start and end with a letter or digit, at most 63 characters"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "rules:\n  - name: [\n",
            "a.yaml:3: invalid YAML: while parsing a flow node: "
            "expected the node content, but found '<stream end>'",
            id="bad-yaml",
        ),
        pytest.param(
            "rules: []\n---\nrules: []\n",
            "a.yaml:2: invalid YAML: expected a single document in the stream: "
            "but found another document",
            id="two-documents",
        ),
        pytest.param(
            "", "a.yaml:1: file is empty; expected a mapping with a `rules` list", id="empty"
        ),
        pytest.param(
            "- a\n",
            "a.yaml:1: expected a mapping with a `rules` list at the top of the file",
            id="top-list",
        ),
        pytest.param("rules: []\n", "a.yaml:1: `rules` must be a non-empty list", id="no-rules"),
        pytest.param(
            "rules:\n  - just a string\n",
            "a.yaml:2: each item of `rules` must be a mapping with name, match, target, steps",
            id="rule-not-mapping",
        ),
        pytest.param(
            "rules:\n  - name: r\n    name: s\n",
            "a.yaml:3: duplicate key 'name' (first at line 2)",
            id="duplicate-key",
        ),
        pytest.param(
            "rules:\n  - name: r\n    on: x\n",
            "a.yaml:3: keys must be strings, not True",
            id="yaml-1.1-boolean-key",
        ),
    ],
)
def test_file_level_errors(text: str, expected: str) -> None:
    assert errors_of({"a.yaml": text})[0] == expected


def test_unknown_top_level_key() -> None:
    assert errors_of({"a.yaml": "rule:\n  - x\n"}) == [
        "a.yaml:1: unknown top-level key 'rule' (did you mean 'rules'?); only `rules` is allowed",
        "a.yaml:1: missing `rules` list",
    ]


def test_duplicate_rule_names_across_files() -> None:
    second = "# another file\n" + GOOD
    assert errors_of({"a.yaml": GOOD, "b.yaml": second}) == [
        "b.yaml:3: duplicate rule name 'restart-on-high-memory'; first defined at a.yaml:2"
    ]


def test_duplicate_reported_even_when_the_duplicate_has_other_errors() -> None:
    second = GOOD.replace("test.restart", "test.nope")
    assert errors_of({"a.yaml": GOOD, "b.yaml": second}) == [
        "b.yaml:2: duplicate rule name 'restart-on-high-memory'; first defined at a.yaml:2",
        "b.yaml:7: rule 'restart-on-high-memory': steps[0].action: unknown action 'test.nope'; "
        "known actions: test.grow, test.restart, test.scale, test.undo",
    ]


def test_all_errors_of_all_files_are_collected_in_file_order() -> None:
    bad_b = one_rule(TARGET + "steps: [{action: test.nope}]\nguards: {cooldown: soon}\n")
    bad_c = "rules:\n  - name: [\n"
    errors = lint_files({"c.yaml": bad_c, "a.yaml": GOOD, "b.yaml": bad_b}, registry(), POLICY)
    assert [(e.file, e.line) for e in errors] == [("b.yaml", 5), ("b.yaml", 6), ("c.yaml", 3)]
    with pytest.raises(RuleSetError) as caught:
        compile_files({"c.yaml": bad_c, "a.yaml": GOOD, "b.yaml": bad_b}, registry(), POLICY)
    assert caught.value.errors == errors
    assert str(caught.value).splitlines() == [str(e) for e in errors]


def test_schema_errors_of_one_rule_do_not_hide_other_rules() -> None:
    text = GOOD + GOOD.removeprefix("rules:\n").replace("restart-on-high-memory", "second")
    text += "  - name: third\n    match: []\n"
    errors = errors_of({"a.yaml": text})
    # Only the third rule is reported; the two good ones above it still compile.
    assert errors == [
        "a.yaml:32: rule 'third': missing required field 'target'",
        "a.yaml:32: rule 'third': missing required field 'steps'",
        "a.yaml:33: rule 'third': match must list at least one matcher; an empty list would "
        "match every alert",
    ]


def test_rule_error_str() -> None:
    assert str(RuleError("rules/a.yaml", 3, "boom")) == "rules/a.yaml:3: boom"
    assert str(RuleError("rules", 0, "no files")) == "rules: no files"


# --------------------------------------------------------------------------------------------
# the loader and the directory


def test_load_reads_yaml_and_yml_sorted_and_ignores_the_rest(tmp_path: Path) -> None:
    write(tmp_path, "b.yml", GOOD.replace("restart-on-high-memory", "b-rule"))
    write(tmp_path, "a.yaml", GOOD.replace("restart-on-high-memory", "a-rule"))
    write(tmp_path, "README.md", "not rules")
    write(tmp_path, ".a.yaml", "editor leftovers: [")
    (tmp_path / "..data").mkdir()  # ConfigMap mounts hold such directories
    write(tmp_path / "..data", "a.yaml", GOOD)
    ruleset = load_rules(tmp_path, registry(), POLICY)
    assert [r.name for r in ruleset.rules] == ["a-rule", "b-rule"]
    assert sorted(ruleset.source) == [str(tmp_path / "a.yaml"), str(tmp_path / "b.yml")]
    assert lint(tmp_path, registry(), POLICY) == []


def test_load_reports_file_paths(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "rules: []\n")
    with pytest.raises(RuleSetError) as caught:
        load_rules(tmp_path, registry(), POLICY)
    assert [str(e) for e in caught.value.errors] == [
        f"{tmp_path / 'a.yaml'}:1: `rules` must be a non-empty list"
    ]


def test_missing_directory_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert lint(missing, registry(), POLICY) == [
        RuleError(str(missing), 0, "rules directory does not exist")
    ]


def test_directory_without_rule_files_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "notes.txt", "")
    assert lint(tmp_path, registry(), POLICY) == [
        RuleError(str(tmp_path), 0, "no *.yaml or *.yml rule files in directory")
    ]


def test_path_that_is_a_file_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", GOOD)
    assert lint(path, registry(), POLICY) == [
        RuleError(str(path), 0, "rules path is not a directory")
    ]


def test_non_utf8_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_bytes(b"rules: \xff\n")
    assert lint(tmp_path, registry(), POLICY) == [
        RuleError(str(tmp_path / "a.yaml"), 0, "not valid UTF-8 (byte 7)")
    ]


def test_compile_files_needs_files() -> None:
    with pytest.raises(RuleSetError, match="no rule files given"):
        compile_files({}, registry(), POLICY)


def test_namespace_policy_allow_list_applies_to_literal_namespaces() -> None:
    text = one_rule(
        "target: {kind: Deployment, namespace: shop, name: x}\nsteps: [{action: test.restart}]\n"
    )
    assert errors_of({"a.yaml": text}, NamespacePolicy(allow=("shop",))) == []
    (error,) = errors_of({"a.yaml": text}, NamespacePolicy(allow=("billing",)))
    assert error.startswith("a.yaml:4: rule 'r': target.namespace: namespace 'shop' is not allowed")


# --------------------------------------------------------------------------------------------
# reload


def test_reload_keeps_the_last_good_set_and_swaps_on_success(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", GOOD)
    holder = RuleHolder(tmp_path, registry(), POLICY)
    first = holder.current
    assert [r.name for r in first.rules] == ["restart-on-high-memory"]

    path.write_text(GOOD.replace("test.restart", "test.nope"))
    errors = holder.reload()
    assert [(e.line, e.message.split(":")[1].strip()) for e in errors] == [(7, "steps[0].action")]
    assert holder.current is first
    assert holder.last_errors == tuple(errors)

    path.write_text(GOOD.replace("restart-on-high-memory", "renamed"))
    assert holder.reload() == []
    assert holder.last_errors == ()
    assert [r.name for r in holder.current.rules] == ["renamed"]
    assert holder.current.source != first.source


def test_reload_keeps_the_set_when_the_directory_vanishes(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", GOOD)
    holder = RuleHolder(tmp_path, registry(), POLICY)
    first = holder.current
    path.unlink()
    assert holder.reload() == [
        RuleError(str(tmp_path), 0, "no *.yaml or *.yml rule files in directory")
    ]
    assert holder.current is first


def test_holder_refuses_to_start_on_bad_rules(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "rules: []\n")
    with pytest.raises(RuleSetError):
        RuleHolder(tmp_path, registry(), POLICY)


# --------------------------------------------------------------------------------------------
# the shipped rules and the format reference, against the real actions


def _default_registry() -> Registry:
    pytest.importorskip("remediations.kubernetes")  # TODO(lead): drop once kubernetes.py lands
    from remediations.registry import default_registry

    return default_registry()


def test_shipped_rules_load() -> None:
    ruleset = load_rules(REPO / "rules", _default_registry(), POLICY)
    by_alert = {
        alert: [
            r.name
            for r in ruleset.matching(
                {
                    "alertname": alert,
                    "severity": "critical",
                    "deployment": "web",
                    "namespace": "shop",
                }
            )
        ]
        for alert in ("HighErrorRate", "HighMemoryUsage", "QueueBacklog", "DatabaseConnectionsHigh")
    }
    assert all(len(names) == 1 for names in by_alert.values()), by_alert

    undo = ruleset.by_name(by_alert["HighErrorRate"][0])
    assert undo is not None
    assert [(s.action, s.needs_approval) for s in undo.steps] == [("kubernetes.rollout_undo", True)]

    memory = ruleset.by_name(by_alert["HighMemoryUsage"][0])
    assert memory is not None
    restart, grow = memory.steps
    assert (restart.action, restart.repeated) == ("kubernetes.rollout_restart", None)
    assert grow.action == "kubernetes.set_resources"
    assert grow.repeated is not None
    assert (grow.repeated.times, grow.repeated.within_s) == (2, 3600.0)
    assert grow.needs_approval

    queue = ruleset.by_name(by_alert["QueueBacklog"][0])
    assert queue is not None
    assert [s.action for s in queue.steps] == ["kubernetes.scale"]
    assert [(s.action, s.params["restore"]) for s in queue.on_resolved] == [
        ("kubernetes.scale", True)
    ]

    database = ruleset.by_name(by_alert["DatabaseConnectionsHigh"][0])
    assert database is not None
    assert [(s.action, s.params["name"], s.needs_approval) for s in database.steps] == [
        ("kubernetes.set_env", "DB_POOL_SIZE", True)
    ]


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
