"""``remediator pause``, ``resume`` and ``status``: the kill switch of a running server."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.table import Table

from receiver.cli.client import call_server, check_reason, url_option
from receiver.cli.common import console, shown, state
from receiver.durations import format_duration

__all__ = ["pause", "resume", "status"]


def _check_for(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--for``: a duration the server takes (1s to 7d), else a usage error naming the option,
    before anything is sent."""
    from receiver.http.filters import bounded_duration
    from receiver.http.guards import MAX_PAUSE_S

    if value is not None:
        try:
            bounded_duration(value, "a pause", MAX_PAUSE_S, "7d")
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return value


@click.command()
@url_option
@click.option(
    "--reason",
    required=True,
    callback=check_reason,
    help="Why; recorded in the audit log (at most 1000 characters).",
)
@click.option(
    "--for",
    "duration",
    default=None,
    callback=_check_for,
    help="1s to 7d, e.g. 30m or 2h (default: until resume).",
)
@click.pass_context
def pause(ctx: click.Context, url: str | None, reason: str, duration: str | None) -> None:
    """Stop every remediation, in every replica, until resume (or for a while).

    Alerts are still accepted and recorded; runs that would start are refused by the pause
    guard, with the reason."""
    settings = state(ctx).settings()
    body: dict[str, Any] = {"reason": reason}
    if duration is not None:
        body["for"] = duration
    data = call_server(
        settings,
        url,
        "/api/v1/pause",
        "PUT",
        body=body,
        answer=("paused", bool),
        check="`remediator status`",
    )
    until = data.get("until") if isinstance(data, dict) else None
    click.echo(f"automation paused until {until}" if until else "automation paused until resume")
    _unaudited(data, "pause")


@click.command()
@url_option
@click.pass_context
def resume(ctx: click.Context, url: str | None) -> None:
    """Lift a pause."""
    data = call_server(
        state(ctx).settings(),
        url,
        "/api/v1/pause",
        "DELETE",
        answer=("paused", bool),
        check="`remediator status`",
    )
    # An older server does not say whether there was a pause to lift.
    nothing = isinstance(data, dict) and data.get("was_paused") is False
    click.echo("nothing was paused: automation was running" if nothing else "automation resumed")
    _unaudited(data, "resume")


def _unaudited(data: Any, change: str) -> None:
    """The server made the ``change`` (pause, resume) but could not record it yet (its store
    is away): say so, that it stands, and whether the record waits to be written once the
    store is back (``audit_queued``) or is lost. The exit status stays 0: the kill switch
    worked."""
    if not isinstance(data, dict) or data.get("audited") is not False:
        return
    if data.get("audit_queued") is True:
        click.echo(
            f"warning: the {change} is in effect; the server's store is unavailable, so it is "
            "not in the audit log yet: it will be recorded there once the store is back",
            err=True,
        )
    else:
        click.echo(
            f"warning: the {change} is in effect but not recorded in the audit log "
            "(the server's store is unavailable)",
            err=True,
        )


@click.command()
@url_option
@click.option("--json", "as_json", is_flag=True, help="Print the server's JSON instead of tables.")
@click.pass_context
def status(ctx: click.Context, url: str | None, as_json: bool) -> None:
    """Show the guards: pause, budget used, circuit breakers."""
    data = call_server(state(ctx).settings(), url, "/api/v1/guards", answer=("paused", bool))
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    out = console()
    guards = Table(title="guards")
    guards.add_column("guard")
    guards.add_column("state", overflow="fold")
    guards.add_row("pause", shown(_pause_text(data)))
    guards.add_row("budget", _budget_text(data.get("budget")))
    found = data.get("breakers")
    breakers: dict[str, Any] = found if isinstance(found, dict) else {}
    opened = sum(1 for b in breakers.values() if isinstance(b, dict) and b.get("open"))
    guards.add_row("circuit breakers", f"{opened} open, {len(breakers)} with recent failures")
    out.print(guards)
    if breakers:
        table = Table(title="circuit breakers")
        for column in ("rule", "state", "recent failures", "open until"):
            table.add_column(column, overflow="fold")
        for rule, breaker in sorted(breakers.items()):
            b = breaker if isinstance(breaker, dict) else {}
            table.add_row(
                shown(rule),
                "OPEN" if b.get("open") else "closed",
                shown(b.get("failures", "")),
                shown(b.get("open_until") or "-"),
            )
        out.print(table)


def _pause_text(data: dict[str, Any]) -> str:
    pause = data.get("pause")
    if not data.get("paused") or not isinstance(pause, dict):
        return "off: remediation runs"
    until = pause.get("until") or "resume"
    since = f" since {pause['since']}" if pause.get("since") else ""
    by = f" by {pause['by']}" if pause.get("by") else ""
    return f"PAUSED{since}{by} until {until}: {pause.get('reason') or '(no reason)'}"


def _budget_text(budget: Any) -> str:
    if not isinstance(budget, dict):
        return "-"
    window = budget.get("window_s")
    within = f" in the last {format_duration(float(window))}" if window else ""
    used, limit = budget.get("used", "?"), budget.get("limit", "?")
    return f"{used} of {limit} disruptive actions used{within}"
