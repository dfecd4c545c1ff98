"""Rule test files, pure: the schema, and every kind of mistake the parse finds reported at
its line with a message that says what to fix."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from receiver.ruletest.parse import parse_test_file
from tests.support.ruletest_texts import ALERTS, _one_test, errors_of

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
        # A part written as another kind of value: what it takes, not pydantic's "Input
        # should be a valid dictionary or instance of EntrySpec", a class of ours.
        (
            ALERTS + "timeline: ['firing a at 0s']\nexpect: [{no_runs: true}]\n",
            5,
            "tests[0].timeline[0]: expected a map of at, firing, resolved, repeat, ha_duplicate,"
            " refire, pause, resume, approve, reject, fixtures, starts_at, ends_at, of, not text",
        ),
        (
            "alerts: {a: HighMemoryUsage}\ntimeline: [{at: 0s, firing: a}]\n"
            "expect: [{no_runs: true}]\n",
            4,
            "tests[0].alerts.a: expected a map of labels, annotations, generator_url, not text",
        ),
        (
            ALERTS + "timeline: [{at: 0s, firing: a}]\nexpect: [{runs: restart}]\n",
            6,
            "tests[0].expect[0].runs: expected a list (`[...]`, or one `- ` line per item), not"
            " text",
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


def test_a_lone_surrogate_in_an_alert_is_refused_at_its_line() -> None:
    """An alert's label written with a "\\ud800" escape: its fingerprint (a hash of the
    labels' UTF-8) could not be computed, and the test failed as "the simulation failed:
    UnicodeEncodeError". Refused at its line, as "\\0" is, before any test runs."""
    body = 'alerts: {a: {labels: {alertname: X, pod: "web\\ud800"}}}\n'
    body += "timeline: [{at: 0s, firing: a}]\nexpect: [{no_runs: true}]\n"
    errors = errors_of(_one_test(body))
    assert len(errors) == 1
    assert errors[0].startswith("t.yaml:4: contains a lone surrogate")
