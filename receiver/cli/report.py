"""``remediator report``: the post-incident report of a running server (``GET /api/v1/report``),
as Markdown ready to paste into a postmortem, or as the server's JSON."""

from __future__ import annotations

import json
from pathlib import Path

import click

from receiver.cli.client import call_server, url_option
from receiver.cli.common import Choice, UserError, output_option, state, written_whole
from receiver.review.markdown import render_markdown

__all__ = ["report"]


@click.command()
@url_option
@click.option(
    "--since", default="24h", show_default=True, help="RFC 3339 timestamp or a duration (ago)."
)
@click.option("--until", default=None, help="RFC 3339 timestamp or a duration (ago); default now.")
@click.option(
    "--gap",
    default=None,
    help="Runs of one alert group less than this apart are one incident (default: the"
    " server's REMEDIATOR_INCIDENT_GAP, 30m).",
)
@click.option(
    "--window",
    "by_window",
    is_flag=True,
    help="Report the whole window as one incident, whatever the alert groups.",
)
@click.option(
    "--format",
    "fmt",
    type=Choice(["markdown", "json"]),
    default="markdown",
    show_default=True,
    help="Markdown for a postmortem, or the server's JSON.",
)
@output_option
@click.pass_context
def report(
    ctx: click.Context,
    url: str | None,
    since: str,
    until: str | None,
    gap: str | None,
    by_window: bool,
    fmt: str,
    output: Path | None,
) -> None:
    """Per incident: the alerts, actions, approvals, refusals, what was not done and why, and
    the outcomes with times to resolve; then effectiveness per rule."""
    settings = state(ctx).settings()
    params = {"from": since, "group_by": "window" if by_window else "gap", "format": "json"}
    if until is not None:
        params["to"] = until
    if gap is not None:
        params["gap"] = gap
    flags = {"from": "--since", "to": "--until", "group_by": "--window"}
    data = call_server(
        settings, url, "/api/v1/report", params=params, flags=flags, answer=("incidents", list)
    )
    text = json.dumps(data, indent=2) + "\n" if fmt == "json" else render_markdown(data)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        with written_whole(output) as out:
            out.write(text)
    except OSError as exc:
        raise UserError(f"{output}: {exc.strerror or exc}") from None
