from __future__ import annotations

import os
from pathlib import Path

from receiver.model import NamespacePolicy
from receiver.rules.errors import RuleError
from receiver.rules.loader import RuleHolder, RuleWatcher
from remediations.registry import default_registry

RULE = """
rules:
  - name: NAME
    match: ['alertname="X"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: kubernetes.rollout_restart
"""


def _write(path: Path, text: str, bump: int) -> None:
    path.write_text(text)
    st = path.stat()
    # Distinct mtimes even on a coarse clock, without sleeping.
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump * 1_000_000_000))


def test_a_changed_file_is_reloaded_and_a_bad_one_keeps_the_last_good_set(
    tmp_path: Path,
) -> None:
    rule_file = tmp_path / "a.yaml"
    _write(rule_file, RULE.replace("NAME", "first"), 0)
    holder = RuleHolder(tmp_path, default_registry(), NamespacePolicy())
    reloads: list[list[RuleError]] = []
    watcher = RuleWatcher(holder, tmp_path, reloads.append)

    assert watcher.check() is False  # nothing changed
    _write(rule_file, RULE.replace("NAME", "second"), 1)
    assert watcher.check() is True
    assert reloads == [[]]
    assert [r.name for r in holder.current.rules] == ["second"]

    _write(rule_file, "rules: [ {name: broken", 2)
    assert watcher.check() is True
    assert len(reloads[-1]) >= 1
    assert str(reloads[-1][0]).startswith(str(rule_file))
    assert [r.name for r in holder.current.rules] == ["second"]

    (tmp_path / "notes.txt").write_text("not a rule file")
    assert watcher.check() is False
    _write(tmp_path / "b.yml", RULE.replace("NAME", "third"), 3)
    _write(rule_file, RULE.replace("NAME", "second"), 4)
    assert watcher.check() is True
    assert sorted(r.name for r in holder.current.rules) == ["second", "third"]
