"""``remediator test``: rule tests with a simulated clock, in the spirit of
``promtool test rules`` (``receiver.ruletest`` does the work)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from receiver.cli.common import BadUsage, Choice, UserError

__all__ = ["test"]


def _check_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--database-url``, ``--redis-url``: a URL the settings of the same name would take,
    else a usage error naming the option (the message never quotes the URL: a password)."""
    import pydantic

    from receiver.config import Settings

    if value is None:
        return None
    field = "database_url" if param.name == "database_url" else "redis_url"
    try:
        Settings.model_validate({field: value})
    except pydantic.ValidationError as exc:
        messages = [e["msg"].removeprefix("Value error, ") for e in exc.errors()]
        raise click.BadParameter("; ".join(messages)) from None
    return value


@click.command("test")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--database-url",
    default=None,
    callback=_check_url,
    help="A PostgreSQL server to test on (its role needs CREATEDB: every test gets a database "
    "of its own, dropped afterwards). Default: an embedded one, for this run only.",
)
@click.option(
    "--redis-url",
    default=None,
    callback=_check_url,
    help="A Redis server to test on (keys under a prefix of this run, deleted afterwards). "
    "Default: an embedded one, for this run only.",
)
@click.option(
    "--log-level",
    type=Choice(["debug", "info", "warning", "error"]),
    default="error",
    show_default=True,
    help="What the service logs while it plays the tests (to stderr): info shows every "
    "stage's decisions.",
)
@click.pass_context
def test(
    ctx: click.Context,
    files: tuple[Path, ...],
    database_url: str | None,
    redis_url: str | None,
    log_level: str,
) -> None:
    """Play the rule tests in FILES against the rules they name.

    Each test sends its timeline of notifications (firing, repeats, HA duplicates, resolved,
    re-fires) and operator actions at simulated times through the real intake, pipeline,
    guards and store, with no action executed, and checks the runs, steps, refusals and
    approvals it expects. Failures print as FILE:LINE: what was expected, what happened (exit
    1); a file that is not a valid test file prints its errors the same way (exit 2).
    """
    from receiver.log_setup import configure_logging
    from receiver.ruletest.run import EXIT_BAD_FILE, load_files, play_files
    from receiver.ruletest.world import Servers, ServersError
    from remediations.registry import default_registry

    # The service's own warnings (a step held by a pause, ...) are what the tests check; they
    # would bury the report.
    configure_logging(log_level, "console")
    registry = default_registry()
    loaded, errors = load_files(files, registry)
    for error in errors:
        click.echo(str(error))
    if errors:
        click.echo(f"{len(errors)} error(s) in the test files; no test was run", err=True)
        ctx.exit(EXIT_BAD_FILE)

    async def play() -> int:
        async with Servers.start(database_url=database_url, redis_url=redis_url) as servers:
            report = await play_files(loaded, servers, registry, click.echo)
        click.echo(report.summary())
        return report.exit_code

    import asyncpg

    from receiver.dsn_errors import not_a_dsn

    try:
        code = asyncio.run(play())
    except ServersError as exc:
        raise UserError(str(exc)) from None
    except asyncpg.ClientConfigurationError as exc:
        # asyncpg reads the rest of the DSN (sslmode=...) only when it connects.
        if database_url is None:
            raise  # the embedded server's own DSN: a bug, not the user's to fix
        raise BadUsage(not_a_dsn("--database-url", database_url, exc).message) from None
    ctx.exit(code)
