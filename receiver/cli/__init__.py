"""The ``remediator`` command.

Commands (one module per group):

- ``serve`` (``serve.py``): run the webhook receiver and the workers until SIGINT/SIGTERM.
- ``lint``, ``simulate`` (``rules.py``): check the rule files; show what they would do for a
  webhook payload, without storing or changing anything.
- ``test`` (``ruletest.py``): play rule test files (timelines of notifications on a simulated
  clock) through the real pipeline, guards and store, and check what they expect.
- ``runs`` (``runs.py``): list remediation runs from a running server.
- ``events``, ``jobs`` (``queues.py``): the work queues of a running server, listed (``--dead``
  for the dead letters); ``events show``, ``events retry``, ``events drop``, ``jobs show``,
  ``jobs retry``, ``jobs drop`` act on items by id.
- ``pause``, ``resume``, ``status`` (``guards.py``): the kill switch of a running server.
- ``migrate`` (``database.py``): apply the database migrations.
- ``audit verify``, ``audit export`` (``audit.py``): check the audit log's hash chain; write it
  as JSON lines for a SIEM.
- ``report`` (``report.py``): the post-incident report of a running server, Markdown or JSON.
- ``approvals list``, ``approvals approve``, ``approvals reject`` (``approvals.py``):
  approvals of risky steps, decided as the operator whose token is given.

Commands that call a running server share ``client.py``; errors, exit codes and settings are in
``common.py``. User errors (bad configuration, a missing file, invalid JSON, invalid rules) end
with a one-line message and a non-zero exit code, never a traceback: 2 for configuration and
usage errors, 3 for an audit log ``audit verify`` found changed, 1 for everything else that
failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from receiver.cli.approvals import approvals
from receiver.cli.audit import audit
from receiver.cli.common import State
from receiver.cli.database import migrate
from receiver.cli.guards import pause, resume, status
from receiver.cli.queues import events, jobs
from receiver.cli.report import report
from receiver.cli.rules import lint, simulate
from receiver.cli.ruletest import test
from receiver.cli.runs import runs
from receiver.cli.serve import serve
from receiver.log_setup import configure_logging

__all__ = ["main"]


class _Remediator(click.Group):
    """The top command. ``--config`` is its own option, given before the command: after it
    (``remediator serve --config FILE``, as many tools take it) click said only "No such option
    '--config'", as if there were none; now the usage error says where it goes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.NoSuchOption as exc:
            if exc.option_name != "--config" or exc.ctx is None:
                raise
            command = exc.ctx.command_path.removeprefix(ctx.command_path).strip()
            raise click.NoSuchOption(
                exc.option_name,
                f"No such option '--config' for {command!r}: it is {ctx.command_path}'s own,"
                f" given before the command: {ctx.command_path} --config FILE {command} ...",
                ctx=exc.ctx,
            ) from None


@click.group(cls=_Remediator, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="REMEDIATOR_CONFIG",
    default=None,
    help="YAML settings file; REMEDIATOR_* environment variables override it.",
)
@click.pass_context
def main(ctx: click.Context, config_file: Path | None) -> None:
    """Guarded, audited remediations for Prometheus Alertmanager alerts."""
    # Every command logs through structlog to stderr (warnings and worse); serve reconfigures
    # from its settings. Without this, structlog's default prints to stdout, into command output.
    configure_logging("warning", "console")
    ctx.obj = State(config_file)


for _command in (
    serve,
    lint,
    simulate,
    test,
    runs,
    events,
    jobs,
    pause,
    resume,
    status,
    migrate,
    audit,
    approvals,
    report,
):
    main.add_command(_command)
