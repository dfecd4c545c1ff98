"""Every ``--help`` is plain text: click prints a command's docstring and an option's help as
written, so reST or Markdown markup in them (``double backticks``, `single`, :ref:, **bold**)
reached the terminal as punctuation (``remediator audit export --help`` said "ship with
``--after``", ``approvals reject`` that a run ends "``rejected``")."""

from __future__ import annotations

import re

import click
from click.testing import CliRunner

from receiver.cli import main

# reST roles and literals, Markdown code and emphasis.
MARKUP = re.compile(r"`|:(?:ref|func|class|meth|mod|attr|py|doc):|\*\*|\.\. [a-z]+::")


def _commands(command: click.Command, path: list[str]) -> list[list[str]]:
    found = [path]
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            found += _commands(sub, [*path, name])
    return found


def test_no_help_shows_markup() -> None:
    paths = _commands(main, [])
    assert len(paths) > 20  # every group and command, not just the top
    marked = []
    for path in paths:
        result = CliRunner().invoke(main, [*path, "--help"], terminal_width=200)
        assert result.exit_code == 0, (path, result.output)
        marked += [
            (" ".join(path), line) for line in result.output.splitlines() if MARKUP.search(line)
        ]
    assert marked == []
