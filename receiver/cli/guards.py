"""``remediator pause``, ``resume`` and ``status``: the kill switch of a running server."""

from __future__ import annotations

import json
from typing import Any

import click

from receiver.cli.client import call_server, url_option
from receiver.cli.common import state

__all__ = ["pause", "resume", "status"]


@click.command()
@url_option
@click.option("--reason", required=True, help="Why; recorded in the audit log.")
@click.option("--for", "duration", default=None, help="e.g. 30m or 2h (default: until resume).")
@click.pass_context
def pause(ctx: click.Context, url: str | None, reason: str, duration: str | None) -> None:
    """Stop every remediation, in every replica, until resume (or for a while).

    Alerts are still accepted and recorded; runs that would start are refused by the pause
    guard, with the reason."""
    settings = state(ctx).settings()
    body: dict[str, Any] = {"reason": reason}
    if duration is not None:
        body["for"] = duration
    data = call_server(settings, url, "/api/v1/pause", "PUT", body=body)
    until = data.get("until") if isinstance(data, dict) else None
    click.echo(f"automation paused until {until}" if until else "automation paused until resume")


@click.command()
@url_option
@click.pass_context
def resume(ctx: click.Context, url: str | None) -> None:
    """Lift a pause."""
    call_server(state(ctx).settings(), url, "/api/v1/pause", "DELETE")
    click.echo("automation resumed")


@click.command()
@url_option
@click.pass_context
def status(ctx: click.Context, url: str | None) -> None:
    """Show the guards: pause, budget used, open circuit breakers."""
    data = call_server(state(ctx).settings(), url, "/api/v1/guards")
    click.echo(json.dumps(data, indent=2, default=str))
