"""What every command shares: user errors and exit codes, the settings, the console."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from receiver.config import ConfigError, Settings, load_settings

__all__ = ["EXIT_FAILURE", "EXIT_USAGE", "BadUsage", "State", "UserError", "console", "state"]

EXIT_FAILURE = 1
EXIT_USAGE = 2


class UserError(click.ClickException):
    """A problem the user must fix; printed as ``error: ...`` without a traceback (exit 1)."""

    exit_code = EXIT_FAILURE

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class BadUsage(UserError):
    """Bad configuration or arguments: exit code 2, like click's own usage errors."""

    exit_code = EXIT_USAGE


@dataclasses.dataclass
class State:
    """The group's context object: the ``--config`` file, its settings loaded on first use."""

    config_file: Path | None
    _settings: Settings | None = None

    def settings(self) -> Settings:
        """The settings from the file and REMEDIATOR_* variables. Raises BadUsage if invalid."""
        if self._settings is None:
            try:
                self._settings = load_settings(self.config_file, os.environ)
            except ConfigError as exc:
                raise BadUsage(f"configuration: {exc.message}") from None
        return self._settings


def state(ctx: click.Context) -> State:
    """The ``State`` the ``remediator`` group put in the context."""
    found = ctx.find_object(State)
    assert found is not None
    return found


def console() -> Console:
    """A rich console for tables; 160 columns wide when the output is not a terminal."""
    # Created per command so CliRunner's captured stdout is the one written to.
    created = Console(highlight=False, soft_wrap=False)
    if not created.is_terminal and "COLUMNS" not in os.environ:
        # Piped or captured output: rich would fold the tables at 80 columns.
        created = Console(highlight=False, soft_wrap=False, width=160)
    return created
