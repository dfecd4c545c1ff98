"""One page of the run list: its filters and the opaque keyset cursor on (created_at, id).

Pure: builds the SQL text and its arguments, runs.py executes it. The cursor is URL-safe base64
without padding, so it travels in a query string unchanged.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

from receiver.model import RunOutcome
from receiver.store.records import RUN_COLUMNS, as_utc
from remediations.targets import Target, parse_target_key

__all__ = ["MAX_PAGE", "decode_cursor", "encode_cursor", "run_page_query"]

MAX_PAGE = 1000


def encode_cursor(created_at: datetime, run_id: str) -> str:
    """The cursor that continues after the row (created_at, run_id)."""
    raw = f"{as_utc(created_at).isoformat(timespec='microseconds')}|{run_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """(created_at, run_id) from a cursor; ValueError("invalid cursor") when it is malformed."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, run_id = raw.split("|", 1)
        return datetime.fromisoformat(stamp), run_id
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError("invalid cursor") from exc


def run_page_query(
    *,
    alertname: str | None,
    rule: str | None,
    target: Target | str | None,
    outcome: RunOutcome | str | None,
    since: datetime | None,
    limit: int,
    cursor: str | None,
    columns: str = RUN_COLUMNS,
) -> tuple[str, list[Any], int]:
    """(SQL, arguments, page size) of one page of runs, newest first, selecting ``columns``.

    The page size is ``limit`` clamped to 1..MAX_PAGE; the SQL asks for one row more, which
    tells whether another page follows. ValueError for a malformed target key or cursor.
    """
    clauses: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if alertname is not None:
        clauses.append(f"alertname = {arg(alertname)}")
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
    size = max(1, min(limit, MAX_PAGE))
    sql = (
        f"SELECT {columns} FROM runs WHERE {where}"
        f" ORDER BY created_at DESC, id DESC LIMIT {arg(size + 1)}"
    )
    return sql, args, size
