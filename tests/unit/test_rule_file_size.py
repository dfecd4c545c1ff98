"""A rule file (or rule test file) too large for anyone to have written is refused before it is
parsed, naming the file and what to do: a 10 MB rule file took `remediator lint` (and each
reload of `serve`'s rules watcher) 40 s and 450 MB of PyYAML composition, to be refused for
"too many YAML nodes (alias expansion)" though it held no alias."""

from __future__ import annotations

import time
from pathlib import Path

from receiver.rules.loader import MAX_FILE_BYTES, check, read_rule_bytes
from receiver.ruletest.files import load_test_file
from tests.support.rules import POLICY, registry

RULE = """\
  - name: restart-{n}
    match: ['alertname="HighMemoryUsage"']
    target: {{kind: Deployment, namespace: shop, name: cart}}
    steps:
      - action: test.restart
"""
WHAT_TO_DO = f"larger than {MAX_FILE_BYTES // 2**20} MiB: split its rules over several files"
TOO_LARGE = f"cannot read: {WHAT_TO_DO}"


def _rules_over(limit: int) -> str:
    """Valid rules, more than ``limit`` bytes of them (each rule a few lines)."""
    text, n = "rules:\n", 0
    while len(text) <= limit:
        text += "".join(RULE.format(n=n + i) for i in range(1000))
        n += 1000
    return text


def test_a_rule_file_over_the_limit_is_refused_without_parsing_it(tmp_path: Path) -> None:
    (tmp_path / "big.yaml").write_text(_rules_over(MAX_FILE_BYTES))
    (tmp_path / "small.yaml").write_text("rules:\n" + RULE.format(n="small"))
    started = time.thread_time()
    _, errors, _ = check(tmp_path, registry(), POLICY)
    assert time.thread_time() - started < 2
    assert [(e.file, e.line) for e in errors] == [(str(tmp_path / "big.yaml"), 0)]
    assert errors[0].message.startswith(TOO_LARGE)


def test_a_rule_file_at_the_limit_is_read_whole(tmp_path: Path) -> None:
    text = ("rules:\n" + RULE.format(n=0)).encode()
    padded = text + b"#" * (MAX_FILE_BYTES - len(text) - 1) + b"\n"
    (tmp_path / "padded.yaml").write_bytes(padded)
    assert read_rule_bytes(tmp_path / "padded.yaml") == padded


def test_a_rule_test_file_and_the_rule_files_it_names_are_bounded_alike(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(_rules_over(MAX_FILE_BYTES))
    test_file = tmp_path / "big-test.yaml"
    test_file.write_text("rule_files: [big.yaml]\ntests: []\n")
    errors = load_test_file(test_file, registry())
    assert isinstance(errors, list)
    # (and the empty `tests`, the test file's own error, found in the same pass)
    assert (1, f"cannot read {big}: {WHAT_TO_DO}") in [(e.line, e.message) for e in errors]
    huge_test = tmp_path / "huge-test.yaml"
    huge_test.write_text("#" * (MAX_FILE_BYTES + 1))
    errors = load_test_file(huge_test, registry())
    assert isinstance(errors, list)
    assert [(e.line, e.message) for e in errors] == [(0, TOO_LARGE)]
