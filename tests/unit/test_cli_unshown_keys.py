"""A rule file or a rule test file given a file that is no such file (a line of /etc/shadow, a
DSN written where a key goes) names a key only when it looks like one, as the settings file
and the approvers file do (README, "Configuration"): ``lint`` printed ``unknown top-level key
'postgresql://u:SuperSecret2@db/x'`` and ``test`` ``unknown field 'root:$6$...'``, secrets
copied into a terminal, a CI log, or, for the rules ``serve`` loads, the service's log."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from receiver.cli import main

SECRET = "SuperSecret2"
NOT_KEYS = (
    f"postgresql://u:{SECRET}@db/x: 1\n",
    f"root:$6${SECRET}:19000:0:99999:7:::\n",
    # Inside the file's list: a rule's, a test's.
    f"{{top}}:\n  - name: x\n    {SECRET}0123456789abcdef: 1\n",
)


@pytest.mark.parametrize("text", NOT_KEYS)
@pytest.mark.parametrize("command", [["lint"], ["test"]], ids=" ".join)
def test_a_key_that_is_no_keys_name_is_not_shown(
    tmp_path: Path, text: str, command: list[str]
) -> None:
    text = text.replace("{top}", "rules" if command == ["lint"] else "tests")
    (tmp_path / "x.yaml").write_text(text)
    target = tmp_path if command == ["lint"] else tmp_path / "x.yaml"
    result = CliRunner().invoke(main, [*command, str(target)])
    assert result.exit_code in (1, 2), result.output
    assert SECRET not in result.output
    assert "not shown" in result.output


def test_a_key_that_looks_like_one_is_still_named(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("rulez: []\n")
    linted = CliRunner().invoke(main, ["lint", str(tmp_path)])
    assert "unknown top-level key 'rulez'" in linted.output
    result = CliRunner().invoke(main, ["test", str(tmp_path / "x.yaml")])
    assert "unknown field 'rulez'" in result.output
