"""Help and README lists of fixed values name every value the code takes: `jobs --kind` listed
two of the three job kinds (not `resume_resolve`, the undo retries an operator most needs to
find), and the README's `log.level` row left out `critical`, which the setting accepts. The
README's CLI synopsis names every option of a command it shows whole."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import click
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


def _readme_cli_entries() -> dict[tuple[str, ...], str]:
    """Each command of the README's CLI block: its words (``("approvals", "list")``) and its
    entry, the synopsis line with the description lines under it."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("\n## CLI\n", 1)[1].split("```", 2)[1]
    entries: dict[tuple[str, ...], str] = {}
    current: tuple[str, ...] | None = None
    for line in block.splitlines():
        if line.startswith("remediator "):
            # The synopsis ends where the description column begins (two spaces or more).
            words = re.split(r"\s{2,}", line, maxsplit=1)[0].split()[1:]
            current = tuple(itertools.takewhile(re.compile("[a-z]+").fullmatch, words))
            entries[current] = line
        elif current is not None and line.startswith(" "):
            entries[current] += " " + line.strip()
    return entries


def test_the_readme_synopsis_names_every_option_of_a_command_it_shows_whole() -> None:
    """A synopsis without an ellipsis reads as the whole command: `simulate` left out its
    `--rules`, `report` its `-o`, `approvals list` its `--run`, `--limit` and `--json`.
    `--url` is said once for every command that calls a server, under the block."""
    entries = _readme_cli_entries()
    assert ("simulate",) in entries
    assert ("approvals", "list") in entries
    missing: list[str] = []
    for words, entry in entries.items():
        if "…" in entry:
            continue
        command: click.Command = main
        for word in words:
            assert isinstance(command, click.Group), words
            command = command.commands[word]
        named = set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", entry))
        for param in command.params:
            if not isinstance(param, click.Option):
                continue
            names = [*param.opts, *param.secondary_opts]
            if {"--help", "--url"} & set(names) or named & set(names):
                continue
            missing.append(f"remediator {' '.join(words)}: {names[-1]}")
    assert missing == [], missing
