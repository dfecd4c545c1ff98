"""Rule test files, pure: the schema, every kind of mistake reported at its line with a message
that says what to fix, the settings' layering, and the notifications a timeline sends."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from receiver.alertmanager import ZERO_TIME
from receiver.facts import FactKind, Rollout
from receiver.fingerprints import fingerprint
from receiver.rules.errors import RuleError
from receiver.ruletest.files import TestFile, load_test_file, settings_of
from receiver.ruletest.notifications import AlertTrack, PlayError, notification_for
from receiver.ruletest.parse import parse_test_file
from receiver.ruletest.sim import FixtureFacts
from receiver.ruletest.spec import (
    DEFAULT_START,
    AlertSpec,
    EntrySpec,
    FactsSpec,
    FixtureSpec,
    SettingsSpec,
    offset_seconds,
)
from remediations.base import ActionError
from remediations.registry import default_registry
from remediations.targets import Target

ROOT = Path(__file__).resolve().parents[2]

VALID = """\
rule_files: [rules.yaml]
settings:
  start: 2026-03-02T09:00:00Z
tests:
  - name: restarts
    alerts:
      mem: {labels: {alertname: Mem, namespace: shop, deployment: api}}
    fixtures:
      - target: Deployment/shop/api
        facts: {rollout: {revision: 7, created_at: -10m}}
        steps: {kubernetes.rollout_restart: {outcome: failed, message: boom}}
    timeline:
      - {at: 0, firing: mem}
      - {at: 30s, ha_duplicate: mem}
      - {at: 1m, repeat: mem}
      - {at: 5m, resolved: mem, ends_at: 4m}
      - {at: 6m, ha_duplicate: mem, of: firing}
      - {at: 20m, refire: mem}
      - {at: 21m, pause: {reason: freeze, for: 1h}}
      - {at: 22m, resume: true}
      - {at: 23m, approve: {rule: restart, by: alice}}
      - {at: 24m, reject: }
      - at: 25m
        fixtures: [{target: Deployment/shop/api, facts: {rollout: {error: gone}}}]
    expect:
      - at: 0s
        runs:
          - rule: restart
            target: Deployment/shop/api
            alert: mem
            outcome: failed
            steps: [kubernetes.rollout_restart: failed, {action: kubernetes.scale}]
            on_resolved: []
        approvals: [{rule: restart, state: pending, by: alice}]
        skips: [{alert: mem, reason: late}]
      - no_runs: true
"""

RULES = """\
rules:
  - name: restart
    match: ['alertname="Mem"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: kubernetes.rollout_restart
"""


def errors_of(text: str) -> list[str]:
    spec, located = parse_test_file("t.yaml", textwrap.dedent(text))
    assert (spec is None) == bool(located.errors)
    return [str(e) for e in located.errors]


def test_a_valid_file_parses_into_its_spec() -> None:
    spec, located = parse_test_file("t.yaml", VALID)
    assert located.errors == []
    assert spec is not None
    [test] = spec.tests
    assert [e.kind for e in test.timeline] == [
        "firing",
        "ha_duplicate",
        "repeat",
        "resolved",
        "ha_duplicate",
        "refire",
        "pause",
        "resume",
        "approve",
        "reject",
        "fixtures",
    ]
    assert [e.at for e in test.timeline][:4] == [0.0, 30.0, 60.0, 300.0]
    assert test.timeline[3].ends_at == 240.0
    assert test.timeline[6].pause is not None
    assert test.timeline[6].pause.for_ == 3600.0
    assert test.timeline[9].reject is not None
    assert test.timeline[9].reject.by == "tester"
    runs = test.expect[0].runs
    assert runs is not None
    assert runs[0].steps is not None
    [step, other] = runs[0].steps
    assert (step.action, step.outcome, other.action, other.outcome) == (
        "kubernetes.rollout_restart",
        "failed",
        "kubernetes.scale",
        None,
    )
    assert test.expect[1].at is None
    assert spec.settings is not None
    assert spec.settings.start == datetime(2026, 3, 2, 9, tzinfo=UTC)
    # Every key has its line, for failures found when the test is played.
    assert located.line_of(("tests", 0, "expect", 0, "runs", 0, "outcome")) == 31
    assert located.line_of(("tests", 0, "timeline", 3)) == 16


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rule_files: [a.yaml]\ntests: []\n", "t.yaml:2: tests: List should have at least 1 item"),
        ("tests: []\n", "t.yaml:1: missing required field 'rule_files'"),
        ("- a\n", "t.yaml:1: a rule test file is a mapping with `rule_files` and `tests`"),
        ("rule_files: [a.yaml\n", "t.yaml:2: invalid YAML"),
        (
            "rule_files: [a.yaml]\nrule_files: [b.yaml]\ntests: []\n",
            "t.yaml:2: duplicate key 'rule_files' (first at line 1)",
        ),
        (
            "rule_files: [a.yaml]\ntest: []\n",
            "t.yaml:2: unknown field 'test' (did you mean 'tests'?)",
        ),
    ],
)
def test_file_level_mistakes(text: str, expected: str) -> None:
    assert any(e.startswith(expected) for e in errors_of(text)), errors_of(text)


@pytest.mark.parametrize(
    ("text", "unknown", "hint"),
    [
        # A field of a test (or of a notification) is no hint at the top, least of all for
        # itself: a webhook payload given as a test file named `alerts` after `alerts`.
        ("rule_files: [r.yaml]\ntests: []\nalerts: []\n", "alerts", None),
        ("rule_files: [r.yaml]\ntests: []\nalert: x\n", "alert", None),
        ("rule_files: [r.yaml]\ntests:\n  - name: t\n    alert: {}\n", "alert", "alerts"),
        ("rule_files: [r.yaml]\ntests:\n  - name: t\n    timline: []\n", "timline", "timeline"),
    ],
)
def test_a_hint_is_a_field_of_the_mapping_the_key_is_in(
    text: str, unknown: str, hint: str | None
) -> None:
    [message] = [e for e in errors_of(text) if f"unknown field {unknown!r}" in e]
    if hint is None:
        assert "did you mean" not in message, message
    else:
        assert message.endswith(f"(did you mean {hint!r}?)"), message


def _one_test(body: str) -> str:
    return "rule_files: [r.yaml]\ntests:\n  - name: t\n" + textwrap.indent(
        textwrap.dedent(body), "    "
    )


ALERTS = "alerts: {a: {labels: {alertname: X}}}\n"


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        (
            ALERTS + "timeline: [{at: 1m, firing: a, resolved: a}]\nexpect: [{no_runs: true}]\n",
            5,
            "tests[0].timeline[0]: give exactly one of firing, resolved, repeat, ha_duplicate, "
            "refire, pause, resume, approve, reject, fixtures (found firing, resolved)",
        ),
        (
            ALERTS + "timeline: [{at: 1m}]\nexpect: [{no_runs: true}]\n",
            5,
            "tests[0].timeline[0]: give exactly one of",
        ),
        (
            ALERTS + "timeline: [{at: 60, firing: a}]\nexpect: [{no_runs: true}]\n",
            5,
            "tests[0].timeline[0].at: 60 is not a duration: a number needs a unit, e.g. 60s",
        ),
        (
            ALERTS + "timeline: [{at: 1m, firing: a, frob: 1}]\nexpect: [{no_runs: true}]\n",
            5,
            "tests[0].timeline[0]: unknown field 'frob'",
        ),
        (
            ALERTS + "timeline: [{at: 1m, pause: {reason: x}, starts_at: 1m}]\n"
            "expect: [{no_runs: true}]\n",
            5,
            "starts_at and ends_at belong to notifications",
        ),
        (
            ALERTS + "timeline: [{at: 1m, repeat: a, of: firing}]\nexpect: [{no_runs: true}]\n",
            5,
            "`of` belongs to ha_duplicate",
        ),
        (
            ALERTS + "timeline: [{at: 1m, firing: a}]\nexpect: [{}]\n",
            6,
            "tests[0].expect[0]: expect what? give runs, no_runs, approvals or skips",
        ),
        (
            ALERTS + "timeline: [{at: 1m, firing: a}]\nexpect: [{runs: [{outcome: verifyin}]}]\n",
            6,
            "tests[0].expect[0].runs[0].outcome: unknown run outcome 'verifyin' "
            "(did you mean 'verifying'?)",
        ),
        (
            ALERTS + "timeline: [{at: 1m, firing: a}]\nexpect: [{runs: [{refused_by: cooldwn}]}]\n",
            6,
            "unknown guard 'cooldwn' (did you mean 'cooldown'?)",
        ),
        (
            ALERTS + "timeline: [{at: 1m, firing: a}]\n"
            "expect: [{runs: [{steps: [{action: x, outcome: don}]}]}]\n",
            6,
            "tests[0].expect[0].runs[0].steps[0].outcome: unknown step outcome 'don'",
        ),
        (
            ALERTS + "timeline: [{at: 1m, firing: a}]\n"
            "expect: [{runs: [{target: Deployment/shop}]}]\n",
            6,
            "tests[0].expect[0].runs[0].target: key 'Deployment/shop'",
        ),
        (
            ALERTS + "timeline: [{at: 1m, firing: a}]\nexpect: [{approvals: [{state: aproved}]}]\n",
            6,
            "unknown approval state 'aproved' (did you mean 'approved'?)",
        ),
        (
            ALERTS + "settings: {start: '2026-01-01T00:00:00'}\n"
            "timeline: [{at: 1m, firing: a}]\nexpect: [{no_runs: true}]\n",
            5,
            "start: give a time zone, e.g. 2026-01-01T09:00:00Z",
        ),
        # The simulated clock ran past year 9999: the test failed with "the service raised
        # OverflowError" where the file was at fault.
        (
            ALERTS + "settings: {start: '9999-12-31T23:00:00Z'}\n"
            "timeline: [{at: 2h, firing: a}]\nexpect: [{no_runs: true}]\n",
            5,
            "start: give a time from 1970 to before 9000",
        ),
        (
            ALERTS + "timeline: [{at: 99999999999999999999d, firing: a}]\n"
            "expect: [{no_runs: true}]\n",
            5,
            "at: '99999999999999999999d' is too long: an offset in a rule test is at most ten "
            "years (3650d)",
        ),
        # Intake refuses an alert's label without a name (receiver.alertmanager.Alert); the
        # test failed at its timeline with "the service raised PayloadError" where the file
        # was at fault.
        (
            'alerts: {a: {labels: {alertname: X, "": web-1}}}\n'
            "timeline: [{at: 1m, firing: a}]\nexpect: [{no_runs: true}]\n",
            4,
            "tests[0].alerts.a.labels: a label has an empty name (value 'web-1'); every label "
            "needs a name",
        ),
        (
            ALERTS + "settings: {approval_ttl: 53w}\n"
            "timeline: [{at: 1m, firing: a}]\nexpect: [{no_runs: true}]\n",
            5,
            "approval_ttl: '53w' is too long: a setting's duration is at most a year (365d)",
        ),
    ],
)
def test_schema_mistakes_are_reported_at_their_line(body: str, line: int, message: str) -> None:
    errors = errors_of(_one_test(body))
    assert any(e.startswith(f"t.yaml:{line}: ") and message in e for e in errors), errors


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        (
            ALERTS + "timeline:\n  - {at: 5m, firing: a}\n  - {at: 1m, resolved: a}\n"
            "expect: [{no_runs: true}]\n",
            7,
            "timeline entries must be in time order: this one is earlier than the one before",
        ),
        (
            ALERTS + "timeline: [{at: 1m, firing: b}]\nexpect: [{no_runs: true}]\n",
            5,
            "no alert 'b' under alerts",
        ),
        (
            ALERTS + "timeline: [{at: 1m, resolved: a}]\nexpect: [{no_runs: true}]\n",
            5,
            "resolved: alert 'a' has not fired yet",
        ),
        (
            ALERTS + "timeline: [{at: 1m, refire: a}]\nexpect: [{no_runs: true}]\n",
            5,
            "refire: alert 'a' has not fired yet",
        ),
        (
            "alerts: {backlog: {labels: {alertname: X}}}\ntimeline: [{at: 1m, firing: backlog}]\n"
            "expect:\n  - runs:\n      - alert: backlg\n",
            8,
            "no alert 'backlg' under alerts (did you mean 'backlog'?)",
        ),
        (
            ALERTS + "timeline: [{at: 1m, firing: a}]\n"
            "expect: [{runs: [{refused_by: cooldown, outcome: failed}]}]\n",
            6,
            "a run refused by a guard has the outcome `refused`",
        ),
        (
            ALERTS + "timeline: [{at: 1m, approve: {alert: z}}]\nexpect: [{no_runs: true}]\n",
            5,
            "no alert 'z' under alerts",
        ),
    ],
)
def test_what_the_schema_cannot_see_is_reported_at_its_line(
    body: str, line: int, message: str
) -> None:
    errors = errors_of(_one_test(body))
    assert f"t.yaml:{line}: {message}" in errors, errors


def _load(tmp_path: Path, text: str, rules: str | None = RULES) -> TestFile | list[RuleError]:
    if rules is not None:
        (tmp_path / "r.yaml").write_text(rules)
    (tmp_path / "t.yaml").write_text(text)
    return load_test_file(tmp_path / "t.yaml", default_registry())


def test_rule_and_action_names_must_exist(tmp_path: Path) -> None:
    body = (
        ALERTS
        + "fixtures: [{target: Deployment/a/b, steps: {kubernetes.scal: {outcome: failed}}}]\n"
        "timeline: [{at: 1m, approve: {rule: restrat}}]\n"
        "expect: [{runs: [{rule: restart, steps: [kubernetes.rollout_restar: simulated]}]}]\n"
    )
    loaded = _load(tmp_path, _one_test(body))
    assert isinstance(loaded, list)
    errors = [str(e) for e in loaded]
    prefix = str(tmp_path / "t.yaml")
    assert errors == [
        f"{prefix}:5: no action 'kubernetes.scal' registered (did you mean 'kubernetes.scale'?)",
        f"{prefix}:6: no rule 'restrat' in rule_files (did you mean 'restart'?)",
        f"{prefix}:7: no action 'kubernetes.rollout_restar' registered "
        "(did you mean 'kubernetes.rollout_restart'?)",
    ]


def test_rule_files_are_read_relative_to_the_test_file_and_their_errors_named(
    tmp_path: Path,
) -> None:
    body = ALERTS + "timeline: [{at: 1m, firing: a}]\nexpect: [{no_runs: true}]\n"
    missing = _load(tmp_path, _one_test(body).replace("r.yaml", "nope.yaml"), rules=None)
    assert isinstance(missing, list)
    [error] = missing
    assert str(error).startswith(f"{tmp_path / 't.yaml'}:1: cannot read {tmp_path / 'nope.yaml'}")
    broken = _load(tmp_path, _one_test(body), rules=RULES.replace("steps:", "stepz:"))
    assert isinstance(broken, list)
    assert any(str(e).startswith(f"{tmp_path / 'r.yaml'}:") for e in broken), broken
    loaded = _load(tmp_path, _one_test(body))
    assert isinstance(loaded, TestFile)
    assert [r.name for r in loaded.rulesets[0].rules] == ["restart"]


@pytest.mark.parametrize(("first", "second"), [("r.yaml", "r.yaml"), ("./r.yaml", "r.yaml")])
def test_a_rule_file_listed_twice_is_an_error_at_its_second_line(
    tmp_path: Path, first: str, second: str
) -> None:
    """Once a file that named one rule file twice loaded as no tests and no errors: `remediator
    test` ran nothing and exited 0."""
    body = ALERTS + "timeline: [{at: 1m, firing: a}]\nexpect: [{no_runs: true}]\n"
    text = _one_test(body).replace(
        "rule_files: [r.yaml]", f"rule_files:\n  - {first}\n  - {second}"
    )
    loaded = _load(tmp_path, text)
    assert isinstance(loaded, list)
    assert [str(e) for e in loaded] == [
        f"{tmp_path / 't.yaml'}:3: {tmp_path / 'r.yaml'} is listed twice in rule_files "
        "(first at line 2): list each rule file once"
    ]


def test_a_file_that_cannot_be_read_is_an_error_naming_it(tmp_path: Path) -> None:
    [error] = load_test_file(tmp_path / "absent.yaml", default_registry())  # type: ignore[misc]
    assert str(error).startswith(f"{tmp_path / 'absent.yaml'}: cannot read")
    (tmp_path / "bin.yaml").write_bytes(b"rule_files: [\xff]\n")
    [error] = load_test_file(tmp_path / "bin.yaml", default_registry())  # type: ignore[misc]
    assert "not valid UTF-8" in str(error)


def test_every_shipped_test_file_loads() -> None:
    files = sorted((ROOT / "rules" / "tests").glob("*.yaml"))
    assert files
    for path in files:
        loaded = load_test_file(path, default_registry())
        assert isinstance(loaded, TestFile), loaded


def test_settings_layer_test_over_file_over_the_service_defaults() -> None:
    defaults = settings_of(None, None)
    assert defaults.start == DEFAULT_START
    assert defaults.guards.budget_count == 10
    assert defaults.guards.lock_ttl_s == 600
    assert defaults.approval_ttl_s == 1800
    assert defaults.late_delivery_window_s == 330
    assert defaults.policy.deny == ("kube-system", "kube-public", "kube-node-lease")
    file = SettingsSpec.model_validate(
        {"budget": {"count": 2}, "lock_ttl": "1m", "namespaces": {"allow": ["shop"]}}
    )
    test = SettingsSpec.model_validate({"budget": {"count": 5, "window": "2h"}})
    layered = settings_of(file, test)
    assert (layered.guards.budget_count, layered.guards.budget_window_s) == (5, 7200)
    assert layered.guards.lock_ttl_s == 60
    assert layered.policy.allow == ("shop",)
    assert layered.at(90) == DEFAULT_START + timedelta(seconds=90)


def test_offsets() -> None:
    assert offset_seconds(0) == 0
    assert offset_seconds("1h30m") == 5400
    assert offset_seconds("-10m", signed=True) == -600
    with pytest.raises(ValueError, match="not a duration"):
        offset_seconds("-10m")
    with pytest.raises(ValueError, match="not a duration"):
        offset_seconds(90)


# -- notifications ---------------------------------------------------------------------------

START = datetime(2026, 1, 1, tzinfo=UTC)
SPEC = AlertSpec(labels={"alertname": "Mem", "pod": "p"}, annotations={"summary": "s"})


def entry(kind: str, **extra: object) -> EntrySpec:
    return EntrySpec.model_validate({"at": 0, kind: "mem", **extra})


def test_each_kind_of_notification_is_what_alertmanager_would_send() -> None:
    track = AlertTrack.of("mem", SPEC)
    assert track.fingerprint == fingerprint(SPEC.labels)
    first = track.next_alert("firing", entry("firing"), START + timedelta(minutes=1), START)
    assert (first["status"], first["startsAt"], first["endsAt"]) == (
        "firing",
        "2026-01-01T00:01:00Z",
        ZERO_TIME,
    )
    assert track.next_alert("repeat", entry("repeat"), START, START) == first
    resolved = track.next_alert("resolved", entry("resolved"), START + timedelta(minutes=9), START)
    assert (resolved["status"], resolved["startsAt"], resolved["endsAt"]) == (
        "resolved",
        "2026-01-01T00:01:00Z",
        "2026-01-01T00:09:00Z",
    )
    assert track.next_alert("ha_duplicate", entry("ha_duplicate"), START, START) == resolved
    late = track.next_alert("ha_duplicate", entry("ha_duplicate", of="firing"), START, START)
    assert late == first
    # A re-fire keeps the episode's startsAt: the same bytes as the first firing.
    assert track.next_alert("refire", entry("refire"), START, START) == first
    # A new firing is a new episode.
    again = track.next_alert("firing", entry("firing"), START + timedelta(hours=1), START)
    assert again["startsAt"] == "2026-01-01T01:00:00Z"
    raw = track.next_alert(
        "firing", entry("firing", starts_at="2025-12-31T23:00:00.5Z"), START, START
    )
    assert raw["startsAt"] == "2025-12-31T23:00:00.5Z"


def test_a_copy_of_nothing_is_a_play_error() -> None:
    track = AlertTrack.of("mem", SPEC)
    with pytest.raises(PlayError, match="nothing was sent for alert 'mem' to copy"):
        track.next_alert("repeat", entry("repeat"), START, START)
    with pytest.raises(PlayError, match="has not fired yet"):
        track.next_alert("resolved", entry("resolved"), START, START)


def test_one_notification_holds_the_alerts_and_their_common_labels() -> None:
    a = AlertTrack.of("a", AlertSpec(labels={"alertname": "Q", "d": "a"}))
    b = AlertTrack.of("b", AlertSpec(labels={"alertname": "Q", "d": "b"}))
    sent = [t.next_alert("firing", entry("firing"), START, START) for t in (a, b)]
    parsed = notification_for(sent)
    assert [x.labels["d"] for x in parsed.alerts] == ["a", "b"]
    assert parsed.commonLabels == {"alertname": "Q"}
    assert parsed.status == "firing"


async def test_fixture_facts_answer_by_kind_and_target_as_the_probes_would() -> None:
    facts = FixtureFacts(START)
    api = Target("Deployment", "shop", "api")
    web = Target("Deployment", "shop", "web")
    facts.apply(
        [
            FixtureSpec.model_validate(
                {
                    "target": "Deployment/shop/api",
                    "facts": {"rollout": {"revision": 7, "created_at": "-10m"}},
                    "steps": {"kubernetes.scale": {"outcome": "refused", "message": "HPA"}},
                }
            ),
            FixtureSpec.model_validate(
                {"target": "Deployment/shop/web", "facts": {"rollout": {"error": "not found"}}}
            ),
        ]
    )
    assert await facts.get("rollout", api) == Rollout(7, "api-7", START - timedelta(minutes=10))
    assert await facts.get("step_outcome:kubernetes.scale", api) == {
        "outcome": "refused",
        "message": "HPA",
    }
    with pytest.raises(ActionError, match="not found"):
        await facts.get("rollout", web)
    assert await facts.get("rollout", Target("Deployment", "shop", "cart")) is None
    later = {"revision": 8, "replicaset": "api-x", "created_at": "2026-01-01T02:00:00Z"}
    facts.apply(
        [FixtureSpec.model_validate({"target": "Deployment/shop/api", "facts": {"rollout": later}})]
    )
    assert await facts.get("rollout", api) == Rollout(8, "api-x", START + timedelta(hours=2))
    pruned = {"revision": 4, "created_at": "-5m", "known": False, "bounded": False}
    facts.apply(
        [
            FixtureSpec.model_validate(
                {"target": "Deployment/shop/api", "facts": {"rollout": pruned}}
            )
        ]
    )
    assert await facts.get("rollout", api) == Rollout(
        4, "api-4", START - timedelta(minutes=5), known=False, bounded=False
    )
    # A new Deployment has nothing to roll back to, implied; another reason is stated.
    new = {"revision": 1, "created_at": "-5m"}
    same = {"revision": 3, "created_at": "-5m", "nothing_to_roll_back": "it runs revision 2"}
    for fact in (new, same):
        facts.apply(
            [
                FixtureSpec.model_validate(
                    {"target": "Deployment/shop/api", "facts": {"rollout": fact}}
                )
            ]
        )
        got = await facts.get("rollout", api)
        assert isinstance(got, Rollout)
        assert got.no_rollback.endswith(
            "revision 1 is its creation, its first release" if fact is new else "revision 2"
        )


def test_every_kind_of_fact_has_its_fixture() -> None:
    assert set(FactsSpec.model_fields) == {str(kind) for kind in FactKind}


@pytest.mark.parametrize(
    ("rollout", "message"),
    [
        ({"revision": 3}, "give revision and created_at, or the error the probe met"),
        ({"error": "x", "revision": 3}, "a fact that could not be read has an error and nothing"),
        ({"revision": 0, "created_at": "1m"}, "greater than or equal to 1"),
        ({"revision": 1, "created_at": "yesterday"}, "is not a duration"),
        ({"error": "x", "known": False}, "a fact that could not be read has an error and nothing"),
        ({"revision": 2, "created_at": "-1m", "bounded": False}, "bounded: false only describes"),
        ({"revision": 2, "created_at": "-1m", "known": "no"}, "is text, not a boolean"),
    ],
)
def test_a_fact_fixture_says_what_is_wrong_with_it(
    rollout: dict[str, object], message: str
) -> None:
    body = (
        ALERTS
        + "fixtures: [{target: Deployment/a/b, facts: {rollout: "
        + json.dumps(rollout)
        + "}}]\ntimeline: [{at: 1m, firing: a}]\nexpect: [{no_runs: true}]\n"
    )
    errors = errors_of(_one_test(body))
    assert any(
        e.startswith("t.yaml:5: tests[0].fixtures[0].facts.rollout") and message in e
        for e in errors
    ), errors
    typo = errors_of(_one_test(body.replace("rollout:", "rolout:")))
    assert any("unknown field 'rolout' (did you mean 'rollout'?)" in e for e in typo), typo


# Independent mistakes, one of each stage that used to hide the next: a schema error (test 1),
# `start` without a zone, the second pass (test 2: time order, an unknown alert), a rule file
# that cannot be read.
MANY_MISTAKES = """\
rule_files: [r.yaml, missing.yaml]
settings: {start: '2026-01-01T09:00:00'}
tests:
  - name: first
    alerts: {a: {labels: {alertname: X}}}
    timeline: [{at: 1m, firing: a}]
    expect: [{no_runz: true}]
  - name: second
    alerts: {a: {labels: {alertname: X}}}
    timeline:
      - {at: 2m, firing: a}
      - {at: 1m, firing: b}
    expect: [{no_runs: true}]
"""


def test_every_independent_error_of_a_file_is_reported_in_one_run(tmp_path: Path) -> None:
    loaded = _load(tmp_path, MANY_MISTAKES)
    assert isinstance(loaded, list)
    prefix = str(tmp_path / "t.yaml")
    errors = [str(e).removeprefix(prefix) for e in loaded]
    assert errors == [
        f":1: cannot read {tmp_path / 'missing.yaml'}: No such file or directory",
        ":2: settings.start: give a time zone, e.g. 2026-01-01T09:00:00Z",
        ":7: tests[0].expect[0]: unknown field 'no_runz' (did you mean 'no_runs'?)",
        ":12: timeline entries must be in time order: this one is earlier than the one before",
        ":12: no alert 'b' under alerts",
    ], errors


def test_rule_and_action_names_are_checked_alongside_the_timeline(tmp_path: Path) -> None:
    body = (
        ALERTS + "timeline: [{at: 2m, firing: a}, {at: 1m, approve: {rule: restrat}}]\n"
        "expect: [{no_runs: true}]\n"
    )
    loaded = _load(tmp_path, _one_test(body))
    assert isinstance(loaded, list)
    messages = [str(e).split(": ", 1)[1] for e in loaded]
    assert any(m.startswith("timeline entries must be in time order") for m in messages)
    assert "no rule 'restrat' in rule_files (did you mean 'restart'?)" in messages


def test_two_tests_of_one_name_are_refused_at_the_second() -> None:
    # A report names a test by its name: two of one name could not be told apart.
    one = "  - name: {name}\n    alerts: {{a: {{labels: {{alertname: X}}}}}}\n" + (
        "    timeline: [{{at: 1m, firing: a}}]\n    expect: [{{no_runs: true}}]\n"
    )
    text = "rule_files: [r.yaml]\ntests:\n" + "".join(
        one.format(name=name) for name in ("first", "again", "again")
    )
    assert errors_of(text) == [
        "t.yaml:11: test name 'again' is used by tests[1] too: give each test a name of its own"
    ]
    # Also when another test of the file is invalid (reported in the same pass).
    broken = text + "  - name: first\n    alerts: {}\n"
    errors = errors_of(broken)
    assert "t.yaml:11: test name 'again' is used by tests[1] too: give each test a name" in (
        " ".join(errors)
    )
