"""The ``remediator`` command: serve, lint, simulate, runs, migrate.

User errors (bad configuration, a missing file, invalid JSON, invalid rules) end with a one-line
message and a non-zero exit code, never a traceback: 2 for configuration and usage errors, 1 for
everything else that failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from receiver.config import ConfigError, Settings, load_settings

__all__ = ["main"]

EXIT_FAILURE = 1
EXIT_USAGE = 2


class UserError(click.ClickException):
    """A problem the user must fix; printed as ``error: ...`` without a traceback."""

    exit_code = EXIT_FAILURE

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class BadUsage(UserError):
    """Bad configuration or arguments: exit code 2, like click's own usage errors."""

    exit_code = EXIT_USAGE


@dataclasses.dataclass
class _State:
    config_file: Path | None
    _settings: Settings | None = None

    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings(self.config_file, os.environ)
            except ConfigError as exc:
                raise BadUsage(f"configuration: {exc.message}") from None
        return self._settings


def _state(ctx: click.Context) -> _State:
    state = ctx.find_object(_State)
    assert state is not None
    return state


def _console() -> Console:
    # Created per command so CliRunner's captured stdout is the one written to.
    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Piped or captured output: rich would fold the tables at 80 columns.
        console = Console(highlight=False, soft_wrap=False, width=160)
    return console


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
    ctx.obj = _State(config_file)


# -- serve ---------------------------------------------------------------------------------------


@main.command()
@click.option("--host", default=None, help="Listen address (default from settings: 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Listen port (default from settings: 9095).")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Run the webhook receiver and the workers until SIGINT/SIGTERM."""
    settings = _state(ctx).settings()
    update: dict[str, Any] = {}
    if host is not None:
        update["host"] = host
    if port is not None:
        if not 0 <= port <= 65535:
            raise BadUsage(f"--port: {port} is not a port number")
        update["port"] = port
    if update:
        settings = settings.model_copy(update=update)

    from receiver.telemetry import configure_logging

    configure_logging(settings.log_level, settings.log_format.value)

    # Imported here: the service pulls in asyncpg, redis and the Kubernetes client, which the
    # other commands do not need.
    from receiver.embedded import EmbeddedError
    from receiver.rules import RuleSetError
    from receiver.service import event_loop_factory, run_service

    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(run_service(settings))
    except RuleSetError as exc:
        for error in exc.errors:
            click.echo(str(error), err=True)
        raise UserError(f"{len(exc.errors)} error(s) in the rule files; not starting") from None
    except EmbeddedError as exc:
        raise UserError(str(exc)) from None
    except ConfigError as exc:
        raise BadUsage(f"configuration: {exc.message}") from None
    except KeyboardInterrupt:
        pass


# -- lint ----------------------------------------------------------------------------------------


@main.command()
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@click.pass_context
def lint(ctx: click.Context, directory: Path | None) -> None:
    """Check every rule file in DIRECTORY (default: the configured rules_dir)."""
    settings = _state(ctx).settings()
    from receiver.rules import lint as lint_rules
    from receiver.rules import load_rules
    from remediations.registry import default_registry

    directory = directory if directory is not None else settings.rules_dir
    registry = default_registry()
    policy = settings.namespace_policy()
    errors = lint_rules(directory, registry, policy)
    if errors:
        for error in errors:
            click.echo(str(error))
        click.echo(f"{len(errors)} error(s)", err=True)
        ctx.exit(EXIT_FAILURE)
    ruleset = load_rules(directory, registry, policy)
    files = len(ruleset.source)
    click.echo(f"{len(ruleset)} rules OK in {files} file{'s' if files != 1 else ''}")


# -- simulate ------------------------------------------------------------------------------------


def _read_notification(path: Path) -> Any:
    from receiver.alertmanager import PayloadError, parse_notification

    try:
        body = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from None
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
            f"[bold]{alert['alertname'] or '(no alertname)'}[/bold] {alert['status']} "
            f"fingerprint={alert['fingerprint']} startsAt={alert['startsAt']}"
        )
        if not record["runs"] and not record["resolves"]:
            console.print("  no action")
        if record["runs"] or record["resolves"]:
            table = Table(show_lines=True)
            for column in ("kind", "rule", "target", "steps", "approval"):
                table.add_column(column, overflow="fold")
            for run in record["runs"]:
                approvals = [s for s in run["steps"] if s["needs_approval"]]
                table.add_row(
                    "run",
                    run["rule"],
                    "{kind}/{namespace}/{name}".format(**run["target"]),
                    _format_steps(run["steps"]),
                    _approval_text(approvals),
                )
            for res in record["resolves"]:
                approvals = [s for s in res["steps"] if s["needs_approval"]]
                table.add_row(
                    "resolve",
                    res["rule"],
                    "{kind}/{namespace}/{name}".format(**res["target"]),
                    _format_steps(res["steps"]),
                    _approval_text(approvals),
                )
            console.print(table)
        for skip in record["skips"]:
            who = f"{skip['rule']}: " if skip["rule"] else ""
            console.print(f"  skipped: {who}{skip['reason']}")
        console.print()


def _approval_text(steps: Sequence[Mapping[str, Any]]) -> str:
    if not steps:
        return "none"
    return "required for " + ", ".join(f"step {s['index'] + 1}" for s in steps)


@main.command()
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
    settings = _state(ctx).settings()
    notification = _read_notification(payload)

    from receiver.engine import plan
    from receiver.intake import events_of
    from receiver.model import History
    from receiver.rules import RuleSetError, load_rules
    from remediations.registry import default_registry

    policy = settings.namespace_policy()
    directory = rules_dir if rules_dir is not None else settings.rules_dir
    try:
        ruleset = load_rules(directory, default_registry(), policy)
    except RuleSetError as exc:
        for error in exc.errors:
            click.echo(str(error), err=True)
        raise UserError(f"{len(exc.errors)} error(s) in the rule files") from None

    now = datetime.now(UTC)
    records = []
    # The same alert -> event mapping intake stores, numbered as if just stored.
    for index, (alert, new) in enumerate(zip(notification.alerts, events_of(notification),
                                             strict=True), start=1):
        event = new.as_event(index, now)
        records.append(_plan_record(alert, plan(event, ruleset, History(), policy, now=now)))

    if as_json:
        click.echo(json.dumps({"plans": records}, indent=2, default=str))
    else:
        _print_plans(_console(), records)


# -- runs ----------------------------------------------------------------------------------------


def _auth_headers(settings: Settings) -> dict[str, str]:
    if settings.webhook_token is not None:
        return {"Authorization": f"Bearer {settings.webhook_token.get_secret_value()}"}
    if settings.webhook_username is not None and settings.webhook_password is not None:
        import base64

        pair = f"{settings.webhook_username}:{settings.webhook_password.get_secret_value()}"
        return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}
    # The embedded default run generates a token and keeps it in the data directory.
    generated = settings.data_dir / "webhook-token"
    try:
        token = generated.read_text(encoding="utf-8").strip()
    except OSError:
        return {}
    return {"Authorization": f"Bearer {token}"} if token else {}


async def _request(
    method: str,
    url: str,
    headers: dict[str, str],
    *,
    params: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
) -> Any:
    """One call to a running server; a non-200 answer becomes a UserError with its detail."""
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=30)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.request(method, url, params=params, json=body, headers=headers) as response,
    ):
        try:
            data = await response.json(content_type=None)
        except (json.JSONDecodeError, aiohttp.ContentTypeError):
            data = None
        if response.status != 200:
            detail = data.get("error") if isinstance(data, dict) else None
            parameter = None
            if isinstance(data, dict):
                parameter = data.get("parameter") or data.get("field")
            where = f" ({parameter})" if parameter else ""
            raise UserError(
                f"{url}: HTTP {response.status}{where}: {detail or response.reason or ''}".rstrip()
            )
        return data


def _call_server(
    settings: Settings, url: str | None, path: str, method: str = "GET", **kwargs: Any
) -> Any:
    import aiohttp

    base = url or f"http://{_url_host(settings.host)}:{settings.port}"
    endpoint = base.rstrip("/") + path
    try:
        return asyncio.run(_request(method, endpoint, _auth_headers(settings), **kwargs))
    except aiohttp.ClientError as exc:
        raise UserError(f"{endpoint}: {exc}") from None
    except TimeoutError:
        raise UserError(f"{endpoint}: no answer within 30s") from None


@main.command()
@click.option("--url", default=None, help="Server base URL (default from settings host/port).")
@click.option("--alertname", default=None)
@click.option("--rule", default=None)
@click.option("--target", default=None, help="Kind/namespace/name.")
@click.option("--outcome", default=None)
@click.option("--since", default=None, help="RFC 3339 timestamp or a duration like 24h.")
@click.option("--limit", type=int, default=None, help="1..500, default 50.")
@click.option("--cursor", default=None, help="next_cursor of a previous page.")
@click.option("--json", "as_json", is_flag=True, help="Print the server's JSON.")
@click.pass_context
def runs(
    ctx: click.Context,
    url: str | None,
    alertname: str | None,
    rule: str | None,
    target: str | None,
    outcome: str | None,
    since: str | None,
    limit: int | None,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List remediation runs from a running server."""
    settings = _state(ctx).settings()
    params = {
        name: str(value)
        for name, value in (
            ("alertname", alertname),
            ("rule", rule),
            ("target", target),
            ("outcome", outcome),
            ("since", since),
            ("limit", limit),
            ("cursor", cursor),
        )
        if value is not None
    }
    data = _call_server(settings, url, "/api/v1/runs", params=params)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    rows = data.get("runs", []) if isinstance(data, dict) else []
    table = Table()
    columns = ("id", "created", "alertname", "rule", "target", "outcome")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row, column) for column in columns))
    console = _console()
    console.print(table)
    next_cursor = data.get("next_cursor") if isinstance(data, dict) else None
    if next_cursor:
        console.print(f"more: --cursor {next_cursor}")


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a listen address, mapped to loopback
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


_CELL_KEYS = {
    "id": ("id", "run_id"),
    "created": ("created_at", "created"),
    "alertname": ("alertname",),
    "rule": ("rule",),
    "target": ("target",),
    "outcome": ("outcome",),
}


def _cell(row: Any, column: str) -> str:
    if not isinstance(row, dict):
        return ""
    for key in _CELL_KEYS[column]:
        if key in row and row[key] is not None:
            value = row[key]
            if isinstance(value, dict) and {"kind", "namespace", "name"} <= value.keys():
                return "{kind}/{namespace}/{name}".format(**value)
            return str(value)
    return ""


# -- the kill switch -----------------------------------------------------------------------------

_URL_OPTION = click.option(
    "--url", default=None, help="Server base URL (default from settings host/port)."
)


@main.command()
@_URL_OPTION
@click.option("--reason", required=True, help="Why; recorded in the audit log.")
@click.option("--for", "duration", default=None, help="e.g. 30m or 2h (default: until resume).")
@click.pass_context
def pause(ctx: click.Context, url: str | None, reason: str, duration: str | None) -> None:
    """Stop every remediation, in every replica, until resume (or for a while).

    Alerts are still accepted and recorded; runs that would start are refused by the pause
    guard, with the reason."""
    settings = _state(ctx).settings()
    body: dict[str, Any] = {"reason": reason}
    if duration is not None:
        body["for"] = duration
    data = _call_server(settings, url, "/api/v1/pause", "PUT", body=body)
    until = data.get("until") if isinstance(data, dict) else None
    click.echo(f"automation paused until {until}" if until else "automation paused until resume")


@main.command()
@_URL_OPTION
@click.pass_context
def resume(ctx: click.Context, url: str | None) -> None:
    """Lift a pause."""
    _call_server(_state(ctx).settings(), url, "/api/v1/pause", "DELETE")
    click.echo("automation resumed")


@main.command()
@_URL_OPTION
@click.pass_context
def status(ctx: click.Context, url: str | None) -> None:
    """Show the guards: pause, budget used, open circuit breakers."""
    data = _call_server(_state(ctx).settings(), url, "/api/v1/guards")
    click.echo(json.dumps(data, indent=2, default=str))


# -- migrate -------------------------------------------------------------------------------------


@main.command()
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Apply the database migrations to REMEDIATOR_DATABASE_URL and exit.

    Without a database URL, the embedded PostgreSQL under data_dir is migrated.
    """
    settings = _state(ctx).settings()
    from receiver.store.migrate import MigrationError

    try:
        with _database(settings) as url:
            applied = asyncio.run(_migrate(url))
    except MigrationError as exc:
        raise UserError(f"migration failed: {exc}") from None
    if applied:
        click.echo("applied migrations " + ", ".join(f"{v:04d}" for v in applied))
    else:
        click.echo("database schema is up to date")


@contextlib.contextmanager
def _database(settings: Settings) -> Iterator[str]:
    """The configured database, or the embedded one under data_dir for as long as needed."""
    from receiver.embedded import EmbeddedError, EmbeddedServices

    try:
        if settings.database_url is not None:
            yield settings.database_url.get_secret_value()
            return
        with EmbeddedServices(settings.data_dir, redis=False) as embedded:
            assert embedded.database_url is not None
            yield embedded.database_url
    except EmbeddedError as exc:
        raise UserError(str(exc)) from None
    except (OSError, ConnectionError) as exc:
        raise UserError(f"cannot connect to the database: {exc}") from None


# -- audit ---------------------------------------------------------------------------------------


@main.group()
def audit() -> None:
    """The append-only audit log of every run."""


@audit.command("verify")
@click.pass_context
def audit_verify(ctx: click.Context) -> None:
    """Recompute the audit log's hash chain; exit 1 naming the first entry that was altered,
    inserted or removed."""
    settings = _state(ctx).settings()
    with _database(settings) as url:
        check = asyncio.run(_verify_audit(url))
    if not check.ok:
        raise UserError(
            f"audit log broken at entry {check.first_bad_id}: {check.reason or 'hash mismatch'}"
            f" ({check.checked} entries checked)"
        )
    click.echo(f"audit log intact: {check.checked} entries verified")


async def _verify_audit(url: str) -> Any:
    from receiver.store import Store, StoreUnavailable

    try:
        store = await Store.connect(url, min_size=1, max_size=1, run_migrations=False)
    except StoreUnavailable as exc:
        raise UserError(f"cannot connect to the database: {exc}") from None
    try:
        return await store.verify_audit()
    finally:
        await store.close()


async def _migrate(url: str) -> list[int]:
    import asyncpg

    from receiver.store.migrate import migrate as apply

    try:
        conn = await asyncpg.connect(url, timeout=10)
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise UserError(f"cannot connect to the database: {exc}") from None
    try:
        applied: list[int] = await apply(conn)
        return applied
    finally:
        await conn.close()


if __name__ == "__main__":  # pragma: no cover
    main()
