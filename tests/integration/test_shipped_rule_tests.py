"""The shipped rules' tests pass, run exactly as a user's CI runs them: ``remediator test
rules/tests/*.yaml`` in a subprocess, on the embedded PostgreSQL and Redis it starts itself.
So a rule change that breaks a shipped test fails the suite, not only ``make test-rules``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from receiver.embedded.postgres_server import find_postgres_bin_dir
from receiver.embedded.redis_server import find_redis_server
from tests.support.servers import server_missing

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_rule_tests_pass() -> None:
    if find_postgres_bin_dir() is None or find_redis_server() is None:
        server_missing("the embedded PostgreSQL and Redis (the wheels)")
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "rules" / "tests").glob("*.yaml"))
    assert files
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}
    proc = subprocess.run(
        [sys.executable, "-m", "receiver.cli", "test", *files],
        cwd=ROOT,
        env=env | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert not [line for line in lines if "FAIL" in line]
    passed = [line for line in lines if line.startswith("  PASS  ")]
    assert len(passed) >= 20
    assert lines[-1].startswith(f"{len(passed)} test(s) in {len(files)} file(s): ")


@pytest.mark.parametrize("rule_file", sorted(p.name for p in (ROOT / "rules").glob("*.yaml")))
def test_every_shipped_rule_file_has_a_test_file(rule_file: str) -> None:
    test_file = ROOT / "rules" / "tests" / rule_file
    assert test_file.is_file(), f"rules/{rule_file} has no rules/tests/{rule_file}"
    assert f"../{rule_file}" in test_file.read_text()
