"""One page of the run list: its filters and the opaque keyset cursor on (created_at, id).

``run_page_query`` builds the SQL text and its arguments (pure); ``fetch_run_page`` runs it for
both readers of run pages (``Runs.list_runs``, ``ReviewReads.review_run_page``). The cursor is
URL-safe base64 without padding, so it travels in a query string unchanged. ``Placeholders``
numbers the arguments of every statement the store builds from optional filters.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from typing import Any, TypedDict
from uuid import UUID

from receiver.model import RunOutcome
from receiver.store.errors import translate
from receiver.store.records import RUN_COLUMNS, as_utc
from remediations.targets import Target, parse_target_key

__all__ = [
    "MAX_PAGE",
    "BadCursor",
    "Placeholders",
    "RunFilters",
    "decode_cursor",
    "encode_cursor",
    "fetch_run_page",
    "run_page_query",
]

MAX_PAGE = 1000


def encode_cursor(created_at: datetime, run_id: str) -> str:
    """The cursor that continues after the row (created_at, run_id)."""
    raw = f"{as_utc(created_at).isoformat(timespec='microseconds')}|{run_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


class BadCursor(ValueError):
    """A cursor this service did not issue: the caller must pass a page's ``next_cursor``."""

    def __init__(self, why: str) -> None:
        super().__init__(f"invalid cursor ({why}): pass the next_cursor of a previous page")
        self.why = why


# What encode_cursor emits: URL-safe base64 without padding. urlsafe_b64decode would silently
# skip any other character, so a cursor holding one is refused before decoding.
_CURSOR = re.compile(r"[A-Za-z0-9_-]+")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """(created_at in UTC, run_id as a canonical uuid string) from a cursor ``encode_cursor``
    could have issued.

    Raises BadCursor (a ValueError) for anything else: not URL-safe base64 of UTF-8 text, not
    exactly ``timestamp|uuid``, a timestamp without a time zone offset or outside the years 1 to
    9999 once in UTC, an id that is no uuid. Every value it returns is one the store can bind:
    a cursor can never reach PostgreSQL as a DataError (a 500 instead of a 400).
    """
    if _CURSOR.fullmatch(cursor) is None:
        raise BadCursor("not URL-safe base64")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise BadCursor("not URL-safe base64 of text") from None
    parts = raw.split("|")
    if len(parts) != 2:
        raise BadCursor("not a timestamp and an id")
    stamp, run_id = parts
    try:
        created_at = datetime.fromisoformat(stamp)
    except ValueError:
        raise BadCursor("no timestamp") from None
    if created_at.tzinfo is None:
        raise BadCursor("a timestamp without a time zone")
    try:
        created_at = created_at.astimezone(UTC)
    except OverflowError:
        raise BadCursor("a timestamp outside the years 1 to 9999 in UTC") from None
    try:
        # UUID() also takes braces, a urn: prefix and other scripts' digits: the canonical form
        # is what the store is given.
        canonical = str(UUID(run_id))
    except ValueError:
        raise BadCursor("no run id") from None
    return created_at, canonical


class Placeholders:
    """The arguments of one statement, in order: ``p(value)`` keeps ``value`` and returns its
    placeholder (``$1``, ``$2``, ...); ``p.args`` is what to pass after the SQL."""

    def __init__(self) -> None:
        self.args: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"


class RunFilters(TypedDict, total=False):
    """The filters of a page of runs, every one optional.

    ``target`` is a Target or its key ``kind/namespace/name``; ``outcome`` a RunOutcome or its
    value; ``since`` the earliest ``created_at``; ``limit`` the page size (default 50, clamped
    to 1..MAX_PAGE); ``cursor`` the opaque value returned with the previous page."""

    alertname: str | None
    rule: str | None
    target: Target | str | None
    outcome: RunOutcome | str | None
    since: datetime | None
    limit: int
    cursor: str | None


def run_page_query(filters: RunFilters, columns: str = RUN_COLUMNS) -> tuple[str, list[Any], int]:
    """(SQL, arguments, page size) of one page of runs, newest first, selecting ``columns``.

    The page size is ``limit`` clamped to 1..MAX_PAGE; the SQL asks for one row more, which
    tells whether another page follows. ValueError for a malformed target key or cursor.
    """
    clauses: list[str] = []
    arg = Placeholders()
    alertname, rule, target = filters.get("alertname"), filters.get("rule"), filters.get("target")
    outcome, since, cursor = filters.get("outcome"), filters.get("since"), filters.get("cursor")
    if alertname is not None:
        # The index is on md5(alertname) (an alertname has no length limit, a btree entry
        # has); the hash finds the rows, the value makes the match exact.
        name = arg(alertname)
        clauses.append(f"md5(alertname) = md5({name}) AND alertname = {name}")
    if rule is not None:
        clauses.append(f"rule = {arg(rule)}")
    if target is not None:
        # The key's shape follows its kind (a RedisQueue's name holds a '/'); TargetError is a
        # ValueError.
        wanted = target if isinstance(target, Target) else parse_target_key(target)
        clauses.append(
            f"target_kind = {arg(wanted.kind)} AND target_namespace = {arg(wanted.namespace)}"
            f" AND target_name = {arg(wanted.name)}"
        )
    if outcome is not None:
        clauses.append(f"outcome = {arg(str(RunOutcome(outcome)))}")
    if since is not None:
        clauses.append(f"created_at >= {arg(since)}")
    if cursor is not None:
        created_at, last_id = decode_cursor(cursor)
        clauses.append(f"(created_at, id) < ({arg(created_at)}, {arg(last_id)}::uuid)")
    where = " AND ".join(clauses) or "true"
    size = max(1, min(filters.get("limit", 50), MAX_PAGE))
    sql = (
        f"SELECT {columns} FROM runs WHERE {where}"
        f" ORDER BY created_at DESC, id DESC LIMIT {arg(size + 1)}"
    )
    return sql, arg.args, size


async def fetch_run_page(
    pool: Any, filters: RunFilters, columns: str = RUN_COLUMNS
) -> tuple[list[Any], str | None]:
    """The rows of one page of runs on ``pool`` (an asyncpg pool) and the cursor of the next
    page, None on the last. ValueError as ``run_page_query``; StoreUnavailable."""
    sql, args, size = run_page_query(filters, columns)
    with translate():
        rows = await pool.fetch(sql, *args)
    if len(rows) <= size:
        return list(rows), None
    last = rows[size - 1]
    return list(rows[:size]), encode_cursor(last["created_at"], str(last["id"]))
