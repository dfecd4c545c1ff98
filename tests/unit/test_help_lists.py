"""Help and README lists of fixed values name every value the code takes: `jobs --kind` listed
two of the three job kinds (not `resume_resolve`, the undo retries an operator most needs to
find), and the README's `log.level` row left out `critical`, which the setting accepts."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from receiver.cli import main
from receiver.config.settings import _LOG_LEVELS
from receiver.store import JobKind

ROOT = Path(__file__).resolve().parents[2]


def test_jobs_kind_help_names_every_job_kind() -> None:
    result = CliRunner().invoke(main, ["jobs", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    help_text = " ".join(result.output.split())
    listed = re.search(r"--kind TEXT Only jobs of this kind: ([a-z_, ]+)\.", help_text)
    assert listed is not None, help_text
    assert listed.group(1).split(", ") == [kind.value for kind in JobKind]


def test_the_readme_lists_every_log_level() -> None:
    readme = (ROOT / "README.md").read_text()
    [row] = [line for line in readme.splitlines() if line.startswith("| `REMEDIATOR_LOG_LEVEL`")]
    meaning = row.split("|")[4]
    assert re.findall(r"`([a-z]+)`", meaning) == list(_LOG_LEVELS)
