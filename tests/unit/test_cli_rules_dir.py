"""A rules directory that is not there says where it was looked for and, from ``serve``, which
setting names it. ``remediator serve`` started away from the clone (the default ``rules`` is
relative) said ``rules: rules directory does not exist`` and ``1 error(s) in the rule files;
not starting``: neither the directory it looked in nor how to give another, as if a rule were
wrong. Nothing starts: the rules are read before any server."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from receiver.cli import main
from receiver.rules.errors import RuleError
from receiver.rules.loader import lint
from tests.support.rules import GOOD, POLICY, registry, write


def _data_file(tmp_path: Path) -> dict[str, str]:
    # The data directory is a file: a start that got past the rules fails there, also exit 1,
    # but naming the data directory.
    data = tmp_path / "data"
    data.write_text("")
    return {"REMEDIATOR_DATA_DIR": str(data)}


def test_a_relative_directory_that_is_not_there_names_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert lint(Path("rules"), registry(), POLICY) == [
        RuleError(
            "rules",
            0,
            f"rules directory does not exist (looked for in the working directory, {tmp_path})",
        )
    ]


def test_serve_away_from_the_rules_names_the_setting_and_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["serve"], env=_data_file(tmp_path))
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines() == [
        f"rules: rules directory does not exist (looked for in the working directory, {tmp_path})",
        "error: no rules directory: rules_dir (REMEDIATOR_RULES_DIR) is 'rules'; not starting",
    ]


def test_serve_on_a_rules_path_that_is_a_file_names_the_setting(tmp_path: Path) -> None:
    file = write(tmp_path, "a.yaml", GOOD)
    env = {**_data_file(tmp_path), "REMEDIATOR_RULES_DIR": str(file)}
    result = CliRunner().invoke(main, ["serve"], env=env)
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines()[-1] == (
        f"error: no rules directory: rules_dir (REMEDIATOR_RULES_DIR) is '{file}'; not starting"
    )


def test_serve_on_a_wrong_rule_still_counts_the_errors(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    write(rules, "a.yaml", "rules: []\n")
    env = {**_data_file(tmp_path), "REMEDIATOR_RULES_DIR": str(rules)}
    result = CliRunner().invoke(main, ["serve"], env=env)
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines()[-1] == "error: 1 error(s) in the rule files; not starting"
