"""An audit row as the verifier and the readers of the log take it from the table: its time,
which an edit can put outside what Python holds, the content its hash covers, and what tells a
broken row apart (the row its link names, the id its hash matches). Pure but for ``linked``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from receiver.store.canonical import canonical_json
from receiver.store.chain import ChainRow, Link
from receiver.store.records import as_utc
from receiver.store.stored_json import stored_data
from receiver.store.stored_times import time_unreadable

__all__ = [
    "AT_COLUMNS",
    "CHAIN_SQL",
    "at_unreadable",
    "chain_row",
    "linked",
    "renumbered_from",
]


def _hash(prev_hash: str, content: Mapping[str, Any]) -> str:
    """SHA-256 of the link and the content's canonical JSON (migrations/0001_init.sql)."""
    return hashlib.sha256((prev_hash + canonical_json(content)).encode()).hexdigest()


def _content(
    *,
    audit_id: int,
    at: datetime,
    kind: str,
    run_id: str | None,
    fingerprint: str | None,
    data: Any,
) -> dict[str, Any]:
    return {
        "id": audit_id,
        "at": as_utc(at).isoformat(timespec="microseconds"),
        "kind": kind,
        "run_id": run_id,
        "fingerprint": fingerprint,
        "data": data,
    }


# A row's time as Python can hold it (years 1 to 9999; no infinity). timestamptz holds more
# (year 294276, BC, infinity), which no append writes: an edit of ``at`` to one of those made
# asyncpg raise OverflowError, and `audit verify` and `audit export` ended in a traceback, the
# run's page, its API, its incident and the report in a 500. Read through this, such a time
# is NULL and ``at_stored`` holds it as text (else NULL).
AT_READABLE = "(at >= '0001-01-01 00:00:00+00' AND at < '10000-01-01 00:00:00+00')"
AT_COLUMNS = (
    f"CASE WHEN {AT_READABLE} THEN at END AS at,"
    f" CASE WHEN {AT_READABLE} THEN NULL ELSE at::text END AS at_stored"
)


# Why a row's time, ``stored`` (timestamptz as text), cannot be read: the words of every
# table's edited time (stored_times).
at_unreadable = time_unreadable


CHAIN_SQL = f"""SELECT id, {AT_COLUMNS}, kind, run_id::text AS run_id, fingerprint,
                        data::text AS data, prev_hash, hash
                 FROM audit_log"""


async def linked(conn: Any, prev_hash: str) -> Link | None:
    """The row whose hash is ``prev_hash`` (hash is UNIQUE, so indexed), anywhere in the log,
    with the id of the row after it; None when no row has it."""
    row = await conn.fetchrow(
        """SELECT id, (SELECT min(n.id) FROM audit_log n WHERE n.id > l.id) AS next_id
           FROM audit_log l WHERE hash = $1""",
        prev_hash,
    )
    return None if row is None else Link(row["id"], row["next_id"])


# How far from its own id a broken row's id is looked for (``renumbered_from``).
_RENUMBER_REACH = 1000


def renumbered_from(row: Mapping[str, Any]) -> int | None:
    """The id nearest the row's own, within ``_RENUMBER_REACH``, under which its content gives
    its stored hash: the id it was appended as, when it was moved (rows deleted before it and
    the ids closed up, say). None when none does (or its data or time cannot be read)."""
    data, unreadable = stored_data(row["data"])
    if unreadable is not None or row["at"] is None:
        return None
    fields = {k: row[k] for k in ("at", "kind", "run_id", "fingerprint")}
    own: int = row["id"]
    for distance in range(1, _RENUMBER_REACH + 1):
        for candidate in (own + distance, own - distance):
            try:
                content = _content(audit_id=candidate, data=data, **fields)
                if candidate > 0 and _hash(row["prev_hash"], content) == row["hash"]:
                    return candidate
            except (ValueError, RecursionError):
                return None
    return None


def chain_row(row: Mapping[str, Any]) -> ChainRow:
    """The row as the chain sees it: sound when its content (over its own link) gives its hash.
    Data that cannot be read (``stored_data``), or a time outside Python's years, was never
    appended: that row is not sound."""
    data, unreadable = stored_data(row["data"])
    if unreadable is not None or row["at"] is None:
        # Data that cannot be read, or a time no append writes (AT_COLUMNS).
        return ChainRow(row["id"], row["prev_hash"], row["hash"], False)
    content = _content(
        audit_id=row["id"],
        at=row["at"],
        kind=row["kind"],
        run_id=row["run_id"],
        fingerprint=row["fingerprint"],
        data=data,
    )
    try:
        sound = _hash(row["prev_hash"], content) == row["hash"]
    except (ValueError, RecursionError):
        sound = False  # read back, but not written again as any append writes it
    return ChainRow(row["id"], row["prev_hash"], row["hash"], sound)
