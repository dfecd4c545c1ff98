"""``remediator lint`` and ``remediator simulate``: the rule files, checked and tried out
without a server."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from receiver.cli.common import EXIT_FAILURE, UserError, console, counted, shown, state
from remediations.targets import Target

__all__ = ["lint", "simulate"]


@click.command()
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@click.option(
    "--strict",
    is_flag=True,
    help="Fail on warnings too (e.g. a matcher Alertmanager's utf8-strict-mode would refuse).",
)
@click.pass_context
def lint(ctx: click.Context, directory: Path | None, strict: bool) -> None:
    """Check every rule file in DIRECTORY (default: the configured rules_dir).

    Errors and warnings are printed as FILE:LINE: [warning: ]MESSAGE. Errors fail (exit 1);
    warnings do not, unless --strict. With a configuration (--config, REMEDIATOR_CONFIG or
    REMEDIATOR_NOTIFY_CHANNELS), the channels the rules notify must be among its
    notify.channels, as serve requires; without one they are not checked.
    """
    settings = state(ctx).settings()
    from receiver.rules.loader import check
    from remediations.registry import default_registry

    directory = directory if directory is not None else settings.rules_dir
    # Bare files have no channels to be checked against: every name would look unknown.
    configured = state(ctx).config_file is not None or bool(settings.notify_channels)
    channels = frozenset(settings.notify_channels) if configured else None
    ruleset, errors, warnings = check(
        directory, default_registry(), settings.namespace_policy(), channels=channels
    )
    for problem in sorted([*errors, *warnings], key=lambda e: (e.file, e.line, e.warning)):
        click.echo(str(problem))
    noted = f", {counted(len(warnings), 'warning')}" if warnings else ""
    if ruleset is None:
        click.echo(f"{counted(len(errors), 'error')}{noted}", err=True)
        ctx.exit(EXIT_FAILURE)
    rules, files = counted(len(ruleset), "rule"), counted(len(ruleset.source), "file")
    click.echo(f"{rules} OK in {files}{noted}")
    if strict and warnings:
        click.echo("--strict: warnings fail the check", err=True)
        ctx.exit(EXIT_FAILURE)


@click.command()
@click.argument("payload", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--rules",
    "rules_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Rules directory (default: the configured rules_dir).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the plans as JSON.")
@click.pass_context
def simulate(ctx: click.Context, payload: Path, rules_dir: Path | None, as_json: bool) -> None:
    """Show what the rules would do for the notification in PAYLOAD (a webhook JSON body).

    Nothing is stored or changed: every alert is planned with an empty history.
    """
    settings = state(ctx).settings()
    notification = _read_notification(payload, settings.max_body_bytes)

    from receiver.engine import plan
    from receiver.intake import events_of
    from receiver.model import History
    from receiver.rules.errors import RuleSetError
    from receiver.rules.loader import load_rules
    from remediations.registry import default_registry

    policy = settings.namespace_policy()
    directory = rules_dir if rules_dir is not None else settings.rules_dir
    try:
        ruleset = load_rules(directory, default_registry(), policy)
    except RuleSetError as exc:
        for error in exc.errors:
            click.echo(str(error), err=True)
        raise UserError(f"{counted(len(exc.errors), 'error')} in the rule files") from None

    now = datetime.now(UTC)
    records = []
    # The same alert -> event mapping intake stores, numbered as if just stored.
    for index, (alert, new) in enumerate(
        zip(notification.alerts, events_of(notification), strict=True), start=1
    ):
        event = new.as_event(index, now)
        records.append(_plan_record(alert, plan(event, ruleset, History(), policy, now=now)))

    if as_json:
        click.echo(json.dumps({"plans": records}, indent=2, default=str))
    else:
        _print_plans(console(), records)


def _read_notification(path: Path, max_body: int) -> Any:
    """The notification in ``path``, read as the webhook reads a body: at most ``max_body``
    bytes (``http.max_body_bytes``), as the service answers a larger body with 413. Unbounded,
    ``/dev/zero`` or a log named by mistake was read until memory ran out. Raises UserError
    naming the file and what is wrong (unreadable, too large, not a v4 notification)."""
    from receiver.alertmanager import PayloadError, parse_notification

    try:
        with path.open("rb") as file:
            body = file.read(max_body + 1)
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(body) > max_body:
        raise UserError(
            f"{path}: larger than {max_body} bytes (http.max_body_bytes, "
            "REMEDIATOR_MAX_BODY_BYTES): the service would refuse it with 413"
        )
    try:
        return parse_notification(body)
    except PayloadError as exc:
        raise UserError(f"{path}: {exc.field}: {exc.message}") from None


def _plan_record(alert: Any, plan: Any) -> dict[str, Any]:
    return {
        "alert": {
            "alertname": alert.labels.get("alertname", ""),
            "fingerprint": alert.fingerprint,
            "status": alert.status,
            "startsAt": alert.startsAt,
            "labels": dict(alert.labels),
        },
        "runs": [
            {
                "rule": run.rule,
                "target": run.target.as_dict(),
                "occurrence": run.occurrence,
                # Present only when the count stopped at the rule's highest times ("N or later").
                **({"occurrence_capped": True} if run.occurrence_capped else {}),
                "steps": [_step_record(step) for step in run.steps],
                "guards": dataclasses.asdict(run.guards),
                "verify_within_s": run.verify_within_s,
            }
            for run in plan.runs
        ],
        "resolves": [
            {
                "run_id": res.run_id,
                "rule": res.rule,
                "target": res.target.as_dict(),
                "steps": [_step_record(step) for step in res.steps],
            }
            for res in plan.resolves
        ],
        "skips": [{"rule": skip.rule, "reason": skip.reason} for skip in plan.skips],
    }


def _step_record(step: Any) -> dict[str, Any]:
    return {
        "index": step.index,
        "action": step.action,
        "params": _plain(step.params),
        "needs_approval": step.needs_approval,
    }


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _format_steps(steps: Sequence[Mapping[str, Any]]) -> str:
    lines = []
    for step in steps:
        params = step["params"]
        shown = f" {json.dumps(params, separators=(',', ':'))}" if params else ""
        lines.append(f"{step['index'] + 1}. {step['action']}{shown}")
    return "\n".join(lines) or "-"


def _print_plans(console: Console, records: list[dict[str, Any]]) -> None:
    for record in records:
        alert = record["alert"]
        console.print(
            Text.assemble(
                (shown(alert["alertname"] or "(no alertname)"), "bold"),
                shown(
                    f" {alert['status']} fingerprint={alert['fingerprint']}"
                    f" startsAt={alert['startsAt']}"
                ),
            )
        )
        if not record["runs"] and not record["resolves"]:
            console.print("  no action")
        if record["runs"] or record["resolves"]:
            table = Table(show_lines=True)
            for column in ("kind", "rule", "target", "steps", "approval"):
                table.add_column(column, overflow="fold")
            for kind, plans in (("run", record["runs"]), ("resolve", record["resolves"])):
                for plan in plans:
                    approvals = [s for s in plan["steps"] if s["needs_approval"]]
                    table.add_row(
                        kind,
                        shown(plan["rule"]),
                        # The key the run lists show and `runs --target` takes: `kind/name`
                        # for a kind with no namespace (not `HttpEndpoint//catcher`).
                        shown(Target(**plan["target"]).key),
                        _format_steps(plan["steps"]),
                        _approval_text(approvals),
                    )
            console.print(table)
        for skip in record["skips"]:
            who = f"{skip['rule']}: " if skip["rule"] else ""
            console.print(shown(f"  skipped: {who}{skip['reason']}"))
        console.print()


def _approval_text(steps: Sequence[Mapping[str, Any]]) -> str:
    if not steps:
        return "none"
    return "required for " + ", ".join(f"step {s['index'] + 1}" for s in steps)
