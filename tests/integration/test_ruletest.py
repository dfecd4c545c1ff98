"""``remediator test`` end to end on real PostgreSQL and Redis (the ones the test session runs,
given as ``--database-url``/``--redis-url``): a passing file passes, a file's rules are kept
as loaded, the rules README's example passes, and a run refused by its template can be
expected. Each kind of expectation failing is test_ruletest_expectations.py, the command and
its exit codes test_ruletest_command.py, live conditions and escalation test_ruletest_live.py."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from receiver.ruletest.files import TestFile
from receiver.ruletest.run import load_files
from receiver.ruletest.world import Servers
from remediations.registry import default_registry
from tests.support.ruletest import PASSING, RULES, play, play_file, servers

__all__ = ["servers"]

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


async def test_a_passing_file_passes(servers: Servers, tmp_path: Path) -> None:
    report, lines = await play(servers, tmp_path, PASSING)
    assert report.exit_code == 0, "\n".join(lines)
    assert lines[1].startswith("  PASS  scales out, asks for the env change, scales back (")
    assert report.summary().startswith("1 test(s) in 1 file(s): 1 passed, 0 failed")


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
