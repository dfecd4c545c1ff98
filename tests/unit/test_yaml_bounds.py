"""YAML that would expand without bound: nested aliases (a "billion laughs") and deep nesting, in
rule files and in the files the configuration reads. Refused with the file and line, quickly;
legitimate anchors and merge keys keep working (tests/unit/test_rules.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from receiver.config import ConfigError, Settings, load_settings
from receiver.config.approvals import load_approvals
from receiver.rules.compile import lint_files
from receiver.rules.loader import check
from receiver.rules.yaml_lines import MAX_NODES, TooManyNodes, safe_load
from tests.support.rules import POLICY, registry


def _bomb(levels: int, indent: str = "") -> str:
    """``levels`` anchors, each a list of ten aliases of the one before: 10**(levels+1) leaves
    in a few hundred bytes. Anchor ``a<n>`` is on the text's line ``n + 1``."""
    lines = [f"{indent}a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for n in range(1, levels + 1):
        lines.append(f"{indent}a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def _first_line_over(limit: int = MAX_NODES) -> int:
    """The 1-based line (in ``_bomb(6)``) of the first anchor whose expansion exceeds ``limit``:
    a<n> expands to 1 + 10 + ... + 10**(n+1) nodes."""
    n = 0
    while sum(10**k for k in range(n + 2)) <= limit:
        n += 1
    return n + 1


def test_a_rules_file_alias_bomb_is_an_error_on_its_line_and_quick() -> None:
    text = "rules:\n  - name: bomb\n" + _bomb(6, indent="    ")
    assert len(text) < 800
    started = time.thread_time()
    errors = lint_files({"rules/bomb.yaml": text}, registry(), POLICY)
    elapsed = time.thread_time() - started
    assert [(e.file, e.line) for e in errors] == [("rules/bomb.yaml", 2 + _first_line_over())]
    assert errors[0].message.startswith("too many YAML nodes (alias expansion)")
    assert elapsed < 5, f"took {elapsed:.1f} s"


def test_lint_reports_the_alias_bomb_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "bomb.yaml").write_text("rules:\n  - name: bomb\n" + _bomb(6, indent="    "))
    _, errors, _ = check(tmp_path, registry(), POLICY)
    (error,) = errors
    assert error.file.endswith("bomb.yaml")
    assert "too many YAML nodes (alias expansion)" in error.message
    assert error.line == 2 + _first_line_over(MAX_NODES)


def test_deep_nesting_is_an_error_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "deep.yaml").write_text("rules: " + "[" * 5000 + "]" * 5000 + "\n")
    _, errors, _ = check(tmp_path, registry(), POLICY)
    (error,) = errors
    assert "nested too deeply" in error.message


def test_deep_nesting_is_said_at_its_line_not_the_files_first(tmp_path: Path) -> None:
    # It was always line 1, whichever rule of a long file held the brackets.
    deep = "[" * 3000 + "]" * 3000
    (tmp_path / "deep.yaml").write_text(
        f"rules:\n  - name: ok\n    match: ['alertname=X']\n    description: {deep}\n"
    )
    _, errors, _ = check(tmp_path, registry(), POLICY)
    assert [(e.line, e.message) for e in errors] == [
        (
            4,
            "invalid YAML: nested too deeply (hundreds of levels within each other): flatten it",
        )
    ]


def test_aliases_below_the_bound_are_expanded() -> None:
    data = safe_load(_bomb(3))
    assert len(data["a3"]) == 10
    assert data["a3"][0][0][0] == ["x"] * 10


def test_safe_load_refuses_the_bomb_naming_the_line() -> None:
    with pytest.raises(TooManyNodes) as caught:
        safe_load(_bomb(6))
    assert caught.value.line == _first_line_over(MAX_NODES)


def test_a_recursive_alias_is_refused_not_followed() -> None:
    # PyYAML would build a self-referencing list, which every reader of the settings walked
    # until the stack ran out (a traceback): the bound refuses it at its anchor, without
    # looping on it.
    with pytest.raises(yaml.MarkedYAMLError, match="recursive YAML alias") as caught:
        safe_load("b: 1\na: &a [1, *a]\n")
    assert caught.value.problem_mark is not None
    assert caught.value.problem_mark.line + 1 == 2


def test_a_settings_file_alias_bomb_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    # The bomb is a setting's value: validation, and the error quoting the value, would walk
    # every expanded node.
    config.write_text("http:\n  port:\n" + _bomb(6, indent="    "))
    started = time.thread_time()
    with pytest.raises(ConfigError) as caught:
        load_settings(config, {})
    assert time.thread_time() - started < 5
    assert "too many YAML nodes (alias expansion)" in caught.value.message
    assert str(config) in caught.value.message


def test_an_approvers_file_alias_bomb_is_a_config_error(tmp_path: Path) -> None:
    approvers = tmp_path / "approvers.yaml"
    approvers.write_text(_bomb(6) + "default: *a6\n")
    with pytest.raises(ConfigError) as caught:
        load_approvals(Settings(approvers_file=approvers))
    assert "too many YAML nodes (alias expansion)" in caught.value.message


def test_a_settings_file_nested_too_deeply_is_said_at_its_line(tmp_path: Path) -> None:
    # Its twin of the rules' line fix: the settings and approvers files said only the file.
    config = tmp_path / "config.yaml"
    config.write_text("http:\n  port: 9095\nrules:\n  dir: " + "[" * 3000 + "]" * 3000 + "\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, {})
    assert caught.value.message == (
        f"{config}:4: invalid YAML: nested too deeply (hundreds of levels within each other):"
        " flatten it"
    )
