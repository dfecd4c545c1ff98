"""``remediator test`` end to end on real PostgreSQL and Redis (the ones the test session runs,
given as ``--database-url``/``--redis-url``): a passing file passes, and every kind of
expectation, when wrong, fails at the line that states it, saying what was expected and what
happened. The exit codes: 0 passed, 1 failed, 2 a bad test file."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from receiver.cli import main
from receiver.ruletest.files import TestFile
from receiver.ruletest.run import Report, load_files, play_files
from receiver.ruletest.world import Servers
from remediations.registry import default_registry
from tests.support.postgres import PostgresServer
from tests.support.redis import RedisServer

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

RULES = """\
rules:
  - name: scale-out
    match: ['alertname="Backlog"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: kubernetes.scale
        params: {delta: 2, max: 10}
      - action: kubernetes.set_env
        params: {container: app, name: WORKERS, value: "8"}
    verify: {resolved_within: 30m}
    guards: {cooldown: 10m}
    on_resolved:
      - action: kubernetes.scale
        params: {restore: true, max: 10}
  - name: other-rule
    match: ['alertname="Never"']
    target: {kind: Deployment, namespace: shop, name: never}
    steps:
      - action: kubernetes.rollout_restart
"""

PASSING = """\
rule_files: [rules.yaml]
tests:
  - name: scales out, asks for the env change, scales back
    alerts:
      q: {labels: {alertname: Backlog, namespace: shop, deployment: worker}}
      other: {labels: {alertname: Unrelated}}
    timeline:
      - {at: 0s, firing: q}
      - {at: 0s, firing: other}
      - {at: 2m, approve: {by: alice}}
      - {at: 5m, resolved: q}
      - {at: 6m, firing: q}
    expect:
      - at: 0s
        approvals: [{rule: scale-out, alert: q, action: kubernetes.set_env, state: pending}]
      - runs:
          - rule: scale-out
            target: Deployment/shop/worker
            alert: q
            outcome: verified
            steps:
              - {action: kubernetes.scale, outcome: simulated, message: by +2}
              - kubernetes.set_env: simulated
            on_resolved: [kubernetes.scale: simulated]
          - {alert: q, refused_by: cooldown, reason: in cooldown}
        approvals: [{state: approved, by: alice}]
        skips: [{alert: other, reason: no rule matches}]
"""


@pytest.fixture(scope="module")
async def servers(pg_server: PostgresServer, redis_server: RedisServer) -> AsyncIterator[Servers]:
    redis_server.ensure_running()
    async with Servers.start(
        database_url=pg_server.url("postgres"), redis_url=redis_server.url
    ) as started:
        yield started


async def play_file(servers: Servers, path: Path) -> tuple[Report, list[str]]:
    """Load the test file at ``path`` (it must load without errors) and play it: the report
    and the lines it printed."""
    registry = default_registry()
    files, errors = load_files([path], registry)
    assert errors == [], [str(e) for e in errors]
    lines: list[str] = []
    report = await play_files(files, servers, registry, lines.append)
    return report, lines


async def play(
    servers: Servers, tmp_path: Path, text: str, rules: tuple[str, str] = ("rules.yaml", RULES)
) -> tuple[Report, list[str]]:
    """Play the test file ``text`` next to the rule file ``rules`` (its name and text)."""
    name, rules_text = rules
    (tmp_path / name).write_text(rules_text)
    (tmp_path / "t.yaml").write_text(text)
    return await play_file(servers, tmp_path / "t.yaml")


def line_of(text: str, marker: str) -> int:
    [line] = [i for i, row in enumerate(text.splitlines(), 1) if marker in row]
    return line


async def test_a_passing_file_passes(servers: Servers, tmp_path: Path) -> None:
    report, lines = await play(servers, tmp_path, PASSING)
    assert report.exit_code == 0, "\n".join(lines)
    assert lines[1].startswith("  PASS  scales out, asks for the env change, scales back (")
    assert report.summary().startswith("1 test(s) in 1 file(s): 1 passed, 0 failed")


# (what to change, the line it fails at (a text on that line), what the failure says)
MUTATIONS = [
    pytest.param(
        ("          - {alert: q, refused_by: cooldown, reason: in cooldown}\n", ""),
        "      - runs:",
        "at the end: expected 1 run(s), found 2:\n    1. scale-out on Deployment/shop/worker, "
        "alert q, created at 0s: verified; steps: kubernetes.scale simulated",
        id="runs-count",
    ),
    pytest.param(
        ("          - rule: scale-out", "          - rule: other-rule"),
        "- rule: other-rule",
        "run 1 (scale-out on Deployment/shop/worker, alert q, created at 0s: verified; "
        "steps: kubernetes.scale simulated, kubernetes.set_env simulated, on_resolved "
        "kubernetes.scale simulated): rule: expected other-rule, got scale-out",
        id="rule",
    ),
    pytest.param(
        ("target: Deployment/shop/worker", "target: Deployment/shop/web"),
        "target: Deployment/shop/web",
        "target: expected Deployment/shop/web, got Deployment/shop/worker",
        id="target",
    ),
    pytest.param(
        ("            alert: q\n", "            alert: other\n"),
        "            alert: other",
        "alert: expected other, got q",
        id="alert",
    ),
    pytest.param(
        ("outcome: verified", "outcome: verifying"),
        "outcome: verifying",
        "outcome: expected verifying, got verified",
        id="outcome",
    ),
    pytest.param(
        ("refused_by: cooldown", "refused_by: rate"),
        "refused_by: rate",
        "run 2 (scale-out on Deployment/shop/worker, alert q, created at 6m: refused by "
        "cooldown (in cooldown after run",
        id="refused_by",
    ),
    pytest.param(
        ("reason: in cooldown}", "reason: maintenance}"),
        "reason: maintenance",
        "reason: expected it to say 'maintenance', it says 'in cooldown after run",
        id="reason",
    ),
    pytest.param(
        ("              - kubernetes.set_env: simulated\n", ""),
        "            steps:",
        "steps: expected 1 step(s), found 2:\n    1. kubernetes.scale simulated\n"
        "    2. kubernetes.set_env simulated",
        id="steps-count",
    ),
    pytest.param(
        ("- kubernetes.set_env: simulated", "- kubernetes.rollout_restart: simulated"),
        "- kubernetes.rollout_restart: simulated",
        "steps[1] (kubernetes.set_env simulated): expected action kubernetes.rollout_restart",
        id="step-action",
    ),
    pytest.param(
        ("- kubernetes.set_env: simulated", "- kubernetes.set_env: awaiting_approval"),
        "- kubernetes.set_env: awaiting_approval",
        "steps[1] (kubernetes.set_env simulated): expected outcome awaiting_approval",
        id="step-outcome",
    ),
    pytest.param(
        ("message: by +2}", "message: by 3}"),
        "message: by 3",
        "steps[0] (kubernetes.scale simulated): expected its message to say 'by 3', it says "
        "'simulated: scale Deployment shop/worker by +2",
        id="step-message",
    ),
    pytest.param(
        ("on_resolved: [kubernetes.scale: simulated]", "on_resolved: []"),
        "on_resolved: []",
        "on_resolved: expected 0 step(s), found 1:\n    1. on_resolved kubernetes.scale simulated",
        id="on-resolved",
    ),
    pytest.param(
        (
            "action: kubernetes.set_env, state: pending}]",
            "action: kubernetes.set_env, state: pending}, {state: pending}]",
        ),
        "        approvals: [{rule: scale-out",
        "at 0s: expected 2 approval(s), found 1:\n    1. kubernetes.set_env of scale-out on "
        "Deployment/shop/worker, alert q, asked at 0s: pending",
        id="approvals-count",
    ),
    pytest.param(
        ("state: approved, by: alice}", "state: approved, by: bob}"),
        "by: bob",
        "approval 1 (kubernetes.set_env of scale-out on Deployment/shop/worker, alert q, asked "
        "at 0s: approved by alice): by: expected bob, got alice",
        id="approval-by",
    ),
    pytest.param(
        ("state: approved, by: alice}", "state: rejected, by: alice}"),
        "state: rejected",
        "state: expected rejected, got approved",
        id="approval-state",
    ),
    pytest.param(
        ("approvals: [{rule: scale-out, alert: q,", "approvals: [{rule: other-rule, alert: q,"),
        "rule: other-rule",
        "rule: expected other-rule, got scale-out",
        id="approval-rule",
    ),
    pytest.param(
        ("rule: scale-out, alert: q, action", "rule: scale-out, alert: other, action"),
        "alert: other, action",
        "alert: expected other, got q",
        id="approval-alert",
    ),
    pytest.param(
        ("action: kubernetes.set_env, state", "action: kubernetes.scale, state"),
        "action: kubernetes.scale, state",
        "action: expected kubernetes.scale, got kubernetes.set_env",
        id="approval-action",
    ),
    pytest.param(
        ("reason: no rule matches}", "reason: invalid target}"),
        "reason: invalid target",
        "at the end: expected alert other skipped saying 'invalid target'; its skips:\n"
        "    1. every rule: no rule matches (event at 0s)",
        id="skips",
    ),
    pytest.param(
        ("    expect:\n", "    expect:\n      - {at: 1m, no_runs: true}\n"),
        "no_runs: true",
        "at 1m: expected no runs, found 1:\n    1. scale-out on Deployment/shop/worker",
        id="no-runs",
    ),
    pytest.param(
        ("approve: {by: alice}", "approve: {by: alice, fails: expired}"),
        "fails: expired",
        "approve: expected it to be refused ('expired'), it was taken",
        id="decision-fails",
    ),
    pytest.param(
        (
            "      - {at: 5m, resolved: q}",
            "      - {at: 3m, reject: {by: bob}}\n      - {at: 5m, resolved: q}",
        ),
        "reject: {by: bob}",
        "reject: refused: this step was already approved by alice",
        id="decision-refused",
    ),
    pytest.param(
        ("approve: {by: alice}", "approve: {by: alice, rule: other-rule}"),
        "rule: other-rule}",
        "approve: no approval was asked for (rule other-rule)",
        id="decision-nothing-to-decide",
    ),
]


@pytest.mark.parametrize(("change", "marker", "message"), MUTATIONS)
async def test_each_kind_of_expectation_fails_at_its_line_when_wrong(
    servers: Servers, tmp_path: Path, change: tuple[str, str], marker: str, message: str
) -> None:
    old, new = change
    assert old in PASSING
    text = PASSING.replace(old, new, 1)
    report, lines = await play(servers, tmp_path, text)
    assert report.exit_code == 1
    [result] = report.results
    assert not result.passed
    expected_line = line_of(text, marker)
    failures = [str(f) for f in result.failures]
    where = f"{tmp_path / 't.yaml'}:{expected_line}: "
    assert any(f.startswith(where) and message in f for f in failures), (where, failures)
    assert "  FAIL  scales out, asks for the env change, scales back" in lines[1]


async def test_a_decision_with_nothing_to_decide_fails_and_the_test_goes_on(
    servers: Servers, tmp_path: Path
) -> None:
    """An ``approve`` that finds no pending approval is a failure at its line; the timeline
    and the expectations after it are still played and checked (here: the approval is never
    approved, and the resolution cancels it, which the end-of-test expectation catches)."""
    text = PASSING.replace("approve: {by: alice}", "approve: {by: alice, rule: other-rule}")
    report, _ = await play(servers, tmp_path, text)
    [result] = report.results
    failures = [str(f) for f in result.failures]
    t_yaml = tmp_path / "t.yaml"
    decision = f"{t_yaml}:{line_of(text, 'rule: other-rule}')}: approve: no approval was asked for"
    assert any(f.startswith(decision) for f in failures), failures
    at_end = f"{t_yaml}:{line_of(text, 'state: approved, by: alice}')}: "
    assert any(
        f.startswith(at_end) and "state: expected approved, got cancelled" in f for f in failures
    ), failures


# -- the command ---------------------------------------------------------------------------


def _invoke(
    tmp_path: Path, pg_server: PostgresServer, redis_server: RedisServer, *files: str
) -> tuple[int, str]:
    result = CliRunner().invoke(
        main,
        [
            "test",
            *files,
            "--database-url",
            pg_server.url("postgres"),
            "--redis-url",
            redis_server.url,
        ],
    )
    return result.exit_code, result.output


def test_the_command_exits_0_when_every_test_passes_and_1_when_one_fails(
    tmp_path: Path, pg_server: PostgresServer, redis_server: RedisServer
) -> None:
    redis_server.ensure_running()
    (tmp_path / "rules.yaml").write_text(RULES)
    (tmp_path / "good.yaml").write_text(PASSING)
    (tmp_path / "bad.yaml").write_text(PASSING.replace("outcome: verified", "outcome: failed"))
    code, output = _invoke(tmp_path, pg_server, redis_server, str(tmp_path / "good.yaml"))
    assert code == 0, output
    assert output.splitlines()[-1].startswith("1 test(s) in 1 file(s): 1 passed, 0 failed")
    code, output = _invoke(
        tmp_path, pg_server, redis_server, str(tmp_path / "good.yaml"), str(tmp_path / "bad.yaml")
    )
    assert code == 1, output
    line = line_of(PASSING, "outcome: verified")
    assert f"{tmp_path / 'bad.yaml'}:{line}: at the end: run 1 (" in output
    assert output.splitlines()[-1].startswith("2 test(s) in 2 file(s): 1 passed, 1 failed")


def test_a_bad_test_file_is_exit_2_naming_file_and_line_and_nothing_runs(
    tmp_path: Path, pg_server: PostgresServer, redis_server: RedisServer
) -> None:
    (tmp_path / "rules.yaml").write_text(RULES)
    (tmp_path / "good.yaml").write_text(PASSING)
    (tmp_path / "bad.yaml").write_text(PASSING.replace("firing: other}", "fireing: other}"))
    code, output = _invoke(
        tmp_path, pg_server, redis_server, str(tmp_path / "good.yaml"), str(tmp_path / "bad.yaml")
    )
    assert code == 2, output
    line = line_of(PASSING, "firing: other}")
    assert (
        f"{tmp_path / 'bad.yaml'}:{line}: tests[0].timeline[1]: unknown field 'fireing'" in output
    )
    assert "PASS" not in output
    assert "1 error(s) in the test files; no test was run" in output


async def test_loading_keeps_the_rules_of_each_test(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(RULES)
    (tmp_path / "t.yaml").write_text(PASSING)
    [loaded], errors = load_files([tmp_path / "t.yaml"], default_registry())
    assert errors == []
    assert isinstance(loaded, TestFile)
    assert [r.name for r in loaded.rulesets[0].rules] == ["scale-out", "other-rule"]


async def test_the_readme_example_passes_against_the_shipped_rule(
    servers: Servers, tmp_path: Path
) -> None:
    root = Path(__file__).resolve().parents[2]
    readme = (root / "rules" / "README.md").read_text()
    [example] = [
        b for b in re.findall(r"```yaml\n(.*?)```", readme, re.DOTALL) if "rule_files:" in b
    ]
    (tmp_path / "rules" / "tests").mkdir(parents=True)
    shutil.copy(root / "rules" / "queue-backlog.yaml", tmp_path / "rules")
    (tmp_path / "rules" / "tests" / "example.yaml").write_text(example)
    report, lines = await play_file(servers, tmp_path / "rules" / "tests" / "example.yaml")
    assert report.exit_code == 0, "\n".join(lines)


# -- live conditions, verification, escalation and announcements -----------------------------

LIVE_RULES = """\
rules:
  - name: rollback-or-scale
    match: ['alertname="Errors"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: kubernetes.rollout_undo
        when: {rolled_out_within: 30m}
        approval: never
      - action: kubernetes.scale
        when: {not_rolled_out_within: 30m}
        params: {delta: 2, max: 10}
    verify: {resolved_within: 10m, settle: 30m}
    on_failed:
      - action: kubernetes.rollout_restart
    notify: {channel: oncall, events: [started, finished, verification_failed]}
"""

LIVE = """\
rule_files: [live.yaml]
tests:
  - name: the rollout fixture decides; a recurrence escalates
    alerts:
      web: {labels: {alertname: Errors, namespace: shop, deployment: web}}
      api: {labels: {alertname: Errors, namespace: shop, deployment: api}}
      db: {labels: {alertname: Errors, namespace: shop, deployment: db}}
    fixtures:
      - {target: Deployment/shop/web, facts: {rollout: {revision: 7, created_at: -10m}}}
      - {target: Deployment/shop/api, facts: {rollout: {revision: 3, created_at: -2h}}}
      - {target: Deployment/shop/db, facts: {rollout: {error: deployments.apps db not found}}}
    timeline:
      - {at: 0s, firing: web}
      - {at: 1m, firing: api}
      - {at: 2m, firing: db}
      - {at: 5m, resolved: web}
      - {at: 6m, resolved: api}
      - {at: 20m, refire: api}
    expect:
      - at: 34m59s
        runs:
          - {alert: web, outcome: verifying}
          - {alert: api, outcome: failed}
          - {alert: api, outcome: failed}
      - at: 40m
        runs:
          - alert: web
            outcome: verified
            verify_result: verified
            steps: [kubernetes.rollout_undo: simulated]
            announced: [started, finished]
          - alert: api
            outcome: failed
            verify_result: recurred
            steps: [kubernetes.scale: simulated]
            on_failed: [kubernetes.rollout_restart: simulated]
            announced: [started, finished, verification_failed]
          - {alert: api, verify_result: not_resolved, reason: did not resolve within 600s}
        skips: [{alert: db, reason: "rolled_out_within 30m: cannot tell (deployments.apps db"}]
"""


async def play_live(servers: Servers, tmp_path: Path, text: str) -> tuple[Report, list[str]]:
    return await play(servers, tmp_path, text, ("live.yaml", LIVE_RULES))


async def test_fixtures_answer_live_conditions_and_escalation_is_checked(
    servers: Servers, tmp_path: Path
) -> None:
    report, lines = await play_live(servers, tmp_path, LIVE)
    assert report.exit_code == 0, "\n".join(lines)


@pytest.mark.parametrize(
    ("change", "marker", "message"),
    [
        pytest.param(
            ("created_at: -10m}", "created_at: -40m}"),
            "steps: [kubernetes.rollout_undo: simulated]",
            "steps[0] (kubernetes.scale simulated): expected action kubernetes.rollout_undo",
            id="fact-decides",
        ),
        pytest.param(
            ("verify_result: recurred", "verify_result: verified"),
            "verify_result: verified\n            steps: [kubernetes.scale",
            "verify_result: expected verified, got recurred",
            id="verify-result",
        ),
        pytest.param(
            ("on_failed: [kubernetes.rollout_restart: simulated]", "on_failed: []"),
            "on_failed: []",
            "on_failed: expected 0 step(s), found 1:\n    1. on_failed kubernetes.rollout_restart",
            id="on-failed",
        ),
        pytest.param(
            ("announced: [started, finished]\n", "announced: [started]\n"),
            "announced: [started]",
            "announced: expected ['started'], got ['started', 'finished']",
            id="announced",
        ),
    ],
)
async def test_the_expectations_of_verification_and_announcements_fail_at_their_line(
    servers: Servers, tmp_path: Path, change: tuple[str, str], marker: str, message: str
) -> None:
    old, new = change
    assert old in LIVE
    text = LIVE.replace(old, new, 1)
    report, _ = await play_live(servers, tmp_path, text)
    [result] = report.results
    first_line = marker.split("\n")[0]
    expected_line = line_of(text, first_line) if text.count(first_line) == 1 else None
    failures = [str(f) for f in result.failures]
    assert any(message in f for f in failures), failures
    if expected_line is not None:
        where = f"{tmp_path / 't.yaml'}:{expected_line}: "
        assert any(f.startswith(where) and message in f for f in failures), (where, failures)


HTTP_RULES = """\
rules:
  - name: per-worker
    match: ['alertname="Split"']
    target: {kind: HttpEndpoint, name: sink}
    steps:
      - action: http.call
        params: {body: {share: "{{ 100 // (labels.workers | int) }}"}}
        approval: never
"""

REFUSED_BY_TEMPLATE = """\
rule_files: [http.yaml]
tests:
  - name: an alert whose values break a template is refused before its guards
    alerts:
      good: {labels: {alertname: Split, workers: "4"}}
      bad: {labels: {alertname: Split, workers: "0"}}
    timeline:
      - {at: 0s, firing: bad}
      - {at: 1s, firing: good}
    expect:
      - runs:
          - {alert: bad, refused_by: template, reason: cannot be rendered over this alert}
          - {alert: good, outcome: succeeded}
"""


async def test_a_test_can_expect_a_run_refused_by_its_template(
    servers: Servers, tmp_path: Path
) -> None:
    """Rule tests render http.call's templates as production does, before the guards: a
    division by a label that is 0 refuses that alert's run by ``template``."""
    report, lines = await play(
        servers, tmp_path, REFUSED_BY_TEMPLATE, rules=("http.yaml", HTTP_RULES)
    )
    assert report.exit_code == 0, "\n".join(lines)


def test_a_database_url_asyncpg_cannot_read_is_a_usage_error_without_its_password(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    # The scheme is right (the option's check passes); asyncpg refuses sslmode when it connects.
    redis_server.ensure_running()
    (tmp_path / "rules.yaml").write_text(RULES)
    (tmp_path / "good.yaml").write_text(PASSING)
    url = "postgresql://u:s3cr%40t-pw@127.0.0.1:1/db?sslmode=bogus"
    result = CliRunner().invoke(
        main,
        [
            "test",
            str(tmp_path / "good.yaml"),
            "--database-url",
            url,
            "--redis-url",
            redis_server.url,
        ],
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: --database-url: not a PostgreSQL URL: `sslmode`")
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "s3cr" not in result.output
