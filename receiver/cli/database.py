"""``remediator migrate``, and the database every command that reads it directly uses.

Without ``REMEDIATOR_DATABASE_URL`` these commands (``migrate``, ``audit verify``, ``audit
export``) work on the embedded PostgreSQL under data_dir: the one a running ``serve`` (or
another command) started there, left running, or else one of their own for as long as they
run. They never stop a server another live process owns. On a configured ``database_url``
with ``database.pooler: none`` they first look for a transaction pooler, and refuse one as
``serve`` does (``_refuse_unnamed_pooler``). An error of the command's own work
inside ``database()`` is not the database's: a closed stdout (BrokenPipeError) reaches click,
which ends quietly with exit code 1.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import click

from receiver.cli.common import BadUsage, UserError, state
from receiver.config import Settings

__all__ = ["database", "migrate"]

# How long a command waits for PostgreSQL to take a connection (seconds).
_CONNECT_TIMEOUT_S = 10.0


@click.command()
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Apply the database migrations to REMEDIATOR_DATABASE_URL and exit.

    Without a database URL, the embedded PostgreSQL under data_dir is migrated.
    """
    settings = state(ctx).settings()
    from receiver.store.migrate import MigrationError

    try:
        with database(settings, "remediator migrate") as url:
            applied = asyncio.run(_migrate(url, settings.transaction_pooled))
    except MigrationError as exc:
        raise UserError(f"migration failed: {exc}") from None
    if applied:
        click.echo("applied migrations " + ", ".join(f"{v:04d}" for v in applied))
    else:
        click.echo("database schema is up to date")


@contextlib.contextmanager
def database(settings: Settings, command: str, *, direct: bool = False) -> Iterator[str]:
    """The configured database, or the embedded one under data_dir for as long as needed:
    the running one of the directory's live owner, else one started (and stopped) here.

    ``direct``: ``database.direct_url`` when set, for work a transaction pooler cannot carry
    (the audit commands read through a server-side cursor, a named statement that would stay
    behind on the pooler's server connection and clash with the next command's).

    A configured URL asyncpg cannot read, found when the body connects, is BadUsage naming the
    variable, never its password. ``database_url`` with ``database.pooler: none`` is first
    probed for a transaction pooler (``_refuse_unnamed_pooler``: BadUsage, serve's message);
    not ``direct_url`` (PostgreSQL itself, said the user) nor the embedded server."""
    # Imported here, like the store below: the other commands do not need the database.
    import asyncpg

    from receiver.dsn_errors import not_a_dsn, refused
    from receiver.embedded import EmbeddedError, EmbeddedServices

    if settings.database_url is not None:
        direct_url = settings.database_direct_url if direct else None
        source = "REMEDIATOR_DATABASE_DIRECT_URL" if direct_url else "REMEDIATOR_DATABASE_URL"
        url = (direct_url or settings.database_url).get_secret_value()
        try:
            if direct_url is None and not settings.transaction_pooled:
                _refuse_unnamed_pooler(url)
            yield url
        except asyncpg.ClientConfigurationError as exc:
            # asyncpg reads the DSN when it connects: said as serve says it (exit 2).
            raise BadUsage(f"configuration: {not_a_dsn(source, url, exc).message}") from None
        except asyncpg.PostgresError as exc:
            # A right the user lacks (CREATE in a schema, SELECT on a table): one line, as
            # serve says it (startup.connect_store); it was asyncpg's traceback.
            raise UserError(refused(source, url, exc)) from None
        return
    # Only what starting or joining the embedded server raises is about the database: an
    # OSError of the command's own work (BrokenPipeError, when whoever read its output left,
    # as `| head -1` does) passes through untouched, to click, which ends quietly on EPIPE.
    in_command = False
    try:
        with EmbeddedServices(
            settings.data_dir, redis=False, command=command, share=True
        ) as embedded:
            assert embedded.database_url is not None
            if embedded.shared is not None:
                click.echo(
                    f"using the PostgreSQL of {embedded.shared.describe()} under"
                    f" {settings.data_dir}",
                    err=True,
                )
            in_command = True
            yield embedded.database_url
            in_command = False
    except EmbeddedError as exc:
        if in_command:
            raise
        raise UserError(str(exc)) from None
    except (OSError, ConnectionError) as exc:
        if in_command:
            raise
        raise UserError(f"cannot connect to the database: {exc}") from None


def _refuse_unnamed_pooler(url: str) -> None:
    """BadUsage (exit 2) with serve's message when ``url``, ``database_url`` with
    ``database.pooler: none``, shows a transaction pooler (pooler_probe.py), before the command
    opens its own connection; a connection failure is a UserError, as the commands say it.

    Each of these commands misbehaved there, tried against PgBouncer 1.18 (README,
    "PgBouncer"): its first run through an idle pooler worked and left asyncpg's prepared
    statements on the server connection, where every later run's first statement clashed with
    them (``__asyncpg_stmt_1__ already exists``, a traceback); through a pooler other clients
    kept busy, ``migrate`` moved to another server connection between two migrations and
    stopped (``does not exist``) with some of them applied. A DSN asyncpg cannot read
    (ClientConfigurationError) propagates, for ``database()`` to say as a configuration error."""
    import asyncpg

    from receiver.config import named
    from receiver.store.pooler_probe import PoolerNotNamed, probe_dsn

    try:
        asyncio.run(probe_dsn(url, connect_timeout_s=_CONNECT_TIMEOUT_S))
    except PoolerNotNamed as exc:
        raise BadUsage(f"{named('database_url')}: {exc}") from None
    except asyncpg.ClientConfigurationError:
        raise
    # OSError: refused, unreachable, or no such host; TimeoutError: no answer in time.
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        raise UserError(f"cannot connect to the database: {exc}") from None


async def _migrate(url: str, pooled: bool) -> list[int]:
    import asyncpg

    from receiver.store.database import connect_options
    from receiver.store.migrate import migrate as apply

    try:
        conn = await asyncpg.connect(
            url, timeout=_CONNECT_TIMEOUT_S, **connect_options(transaction_pooled=pooled)
        )
    except asyncpg.ClientConfigurationError:
        raise  # a DSN asyncpg cannot read: database() says so, as a configuration error
    # OSError: refused, unreachable, or no such host; TimeoutError: no answer in 10 s.
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        raise UserError(f"cannot connect to the database: {exc}") from None
    try:
        applied: list[int] = await apply(conn)
        return applied
    except (asyncpg.InterfaceError, OSError) as exc:
        raise UserError(f"the database went away: {exc}") from None
    finally:
        await conn.close()
