"""A data directory that cannot be made (a file is in its place, or under it) stops every
command that would use it in one line naming the setting: ``serve`` printed a traceback
(``FileExistsError``), ``migrate`` and the audit commands "cannot connect to the database", as
if PostgreSQL had refused. Nothing starts: the directory is made before any server."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from receiver.cli import main

RULES = Path(__file__).resolve().parents[2] / "rules"


@pytest.mark.parametrize("command", [["serve"], ["migrate"], ["audit", "verify"]], ids=" ".join)
@pytest.mark.parametrize("under", [False, True], ids=["a file", "under a file"])
def test_a_data_dir_that_cannot_be_made_is_one_line_naming_the_setting(
    tmp_path: Path, command: list[str], under: bool
) -> None:
    file = tmp_path / "data"
    file.write_text("not a directory\n")
    data_dir = file / "sub" if under else file
    env = {"REMEDIATOR_DATA_DIR": str(data_dir), "REMEDIATOR_RULES_DIR": str(RULES)}
    result = CliRunner().invoke(main, command, env=env)
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: the data directory {data_dir} "), result.stderr
    assert "REMEDIATOR_DATA_DIR" in lines[-1], lines[-1]
    assert "Traceback" not in result.stderr
    assert "cannot connect to the database" not in result.stderr
    assert file.read_text() == "not a directory\n"
