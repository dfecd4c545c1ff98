"""``remediator audit verify`` and ``remediator audit export``: the audit log, read from the
database directly (``database.py`` says which one), without a server.

``verify`` recomputes the hash chain and names the first row edited, inserted, deleted or
reordered, with an exit code of its own (3, ``ChainBroken``) so that a scheduled check tells
tampering from a check that could not run (1: the database unreachable, no schema, no rights).

``export`` writes the rows as JSON lines for a SIEM, streamed from a server-side cursor: the
log is never held in memory, however long it is.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import click

from receiver.cli.common import (
    BadUsage,
    Integer,
    UserError,
    output_option,
    state,
    written_whole,
)
from receiver.cli.database import database

__all__ = ["EXIT_CHAIN_BROKEN", "ChainBroken", "audit"]

# Not 1: a cron job or an alerting wrapper must tell a log found changed (page someone, keep
# the database as evidence) from a check that could not run (retry; the database is away).
EXIT_CHAIN_BROKEN = 3


class ChainBroken(UserError):
    """``audit verify`` found the chain broken: printed as ``error: audit log broken ...``,
    exit code 3 (``EXIT_CHAIN_BROKEN``)."""

    exit_code = EXIT_CHAIN_BROKEN


@click.group()
def audit() -> None:
    """The append-only, hash-chained audit log."""


@audit.command("verify")
@click.option(
    "--progress-every",
    type=Integer(1),
    default=100_000,
    show_default=True,
    help="Print a progress line to stderr after this many entries.",
)
@click.pass_context
def audit_verify(ctx: click.Context, progress_every: int) -> None:
    """Recompute the audit log's hash chain; exit 3 naming the first entry that was edited,
    inserted, deleted or reordered, an edited audit_head, or rows committed without being
    chained; exit 1 when the check could not run. A long log prints how far it has got on
    stderr as it goes."""
    settings = state(ctx).settings()

    def progress(checked: int, last_id: int | None) -> None:
        about = f" of about {last_id:,}" if last_id else ""
        click.echo(f"checked {checked:,}{about} entries …", err=True)

    with database(settings, "remediator audit verify", direct=True) as url:
        check = asyncio.run(
            _with_store(
                url, lambda store: store.verify_audit(progress=progress, every=progress_every)
            )
        )
    if not check.ok:
        what = f" ({check.problem})" if check.problem else ""
        # Some breaks name no row (audit_head missing or edited, rows left unchained).
        where = f" at entry {check.first_bad_id}" if check.first_bad_id is not None else ""
        raise ChainBroken(
            f"audit log broken{where}{what}: "
            f"{check.reason or 'hash mismatch'} ({check.checked} entries checked)"
        )
    click.echo(f"audit log intact: {check.checked} entries verified")


def _moment(text: str | None, option: str, now: datetime) -> datetime | None:
    if text is None:
        return None
    from receiver.http.filters import parse_since

    try:
        return parse_since(text, now)
    except ValueError as exc:
        raise BadUsage(f"{option}: {exc}") from None


@audit.command("export")
@click.option("--since", default=None, help="RFC 3339 timestamp or a duration like 24h (ago).")
@click.option("--until", default=None, help="RFC 3339 timestamp or a duration (ago); exclusive.")
@click.option(
    "--after",
    "after_id",
    type=Integer(0),
    default=None,
    help="Only entries with an id above this one.",
)
@output_option
@click.pass_context
def audit_export(
    ctx: click.Context,
    since: str | None,
    until: str | None,
    after_id: int | None,
    output: Path | None,
) -> None:
    """Write audit entries as JSON lines (id, at, kind, run_id, fingerprint, data, prev_hash,
    hash), oldest first. For a SIEM: ship with --after the last id shipped."""
    settings = state(ctx).settings()
    now = datetime.now(UTC)
    start, end = _moment(since, "--since", now), _moment(until, "--until", now)
    if start is not None and end is not None and end <= start:
        # Exported as asked, it was nothing, exit 0: an empty batch a SIEM shipper takes for a
        # quiet hour. The report's API refuses it the same way.
        raise BadUsage(
            f"--until: the window must end after it starts (--since {since} is"
            f" {start.isoformat()}, --until {until} is {end.isoformat()})"
        )
    bounds = {"since": start, "until": end, "after_id": after_id}
    with database(settings, "remediator audit export", direct=True) as url:
        if output is None:
            count = asyncio.run(_with_store(url, lambda store: _export(store, bounds, sys.stdout)))
        else:
            try:
                with written_whole(output) as out:
                    count = asyncio.run(_with_store(url, lambda store: _export(store, bounds, out)))
            except OSError as exc:
                raise UserError(f"{output}: {exc.strerror or exc}") from None
    click.echo(f"exported {count} audit entries", err=True)


async def _export(store: Any, bounds: dict[str, Any], out: TextIO) -> int:
    count = 0
    async for entry in store.export_audit(**bounds):
        out.write(json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n")
        count += 1
        if count % 1000 == 0:
            out.flush()
    out.flush()
    return count


NO_SCHEMA = (
    "no audit log in this database (its schema was never created): run `remediator migrate`"
    " or `remediator serve` first; REMEDIATOR_DATABASE_URL, else the embedded PostgreSQL under"
    " REMEDIATOR_DATA_DIR, is the database these commands read"
)


async def _with_store(url: str, work: Callable[[Any], Any]) -> Any:
    from receiver.store import Store, StoreUnavailable

    try:
        store = await Store.connect(url, min_size=1, max_size=1, run_migrations=False)
    except StoreUnavailable as exc:
        raise UserError(f"cannot connect to the database: {exc}") from None
    try:
        # Before the first read: on a database whose schema was never created (a data
        # directory serve never ran on) the reads fail on a missing table, with a traceback.
        if not await store.schema_versions():
            raise UserError(NO_SCHEMA)
        return await work(store)
    except StoreUnavailable as exc:
        raise UserError(f"the database went away: {exc}") from None
    finally:
        await store.close()
