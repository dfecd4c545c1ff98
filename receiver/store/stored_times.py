"""Reading back timestamptz values when a row may have been edited since.

timestamptz holds what Python's datetime cannot: years past 9999, BC dates, 'infinity' and
'-infinity'. No write of this service makes one; an edit of a table does. asyncpg's own
codec raised OverflowError for the first two (the whole read failed: the run's page, its API,
the incidents, the report and the approvals answered 500, and a worker reading such a row
failed its batch), and read the infinities as datetime.max/min, unmarked.

``register_times`` replaces asyncpg's timestamptz codec on a connection (the store's pool
registers it on each connection it opens): a value Python can hold is read as asyncpg reads
it (an aware datetime in UTC); one it cannot is an ``UnreadableTime``, still a datetime (at
the nearest end of Python's range, so it orders and compares as the stored value does: an
approval that expires at 'infinity' has not expired) that keeps the stored value, as text for
people and as microseconds to write back unchanged. The readers mark it as edited
(``unreadable_times``, ``time_unreadable``: the audit log's rows use the same words), and the
formatters show its stored text, never the stand-in.

Encoding mirrors asyncpg's (asyncpg/pgproto/codecs/datetime.pyx): a naive datetime is local
time, a date is local midnight, datetime.max and .min are 'infinity' and '-infinity'.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from receiver.unreadable import (
    PG_INFINITY,
    PG_NEGATIVE_INFINITY,
    UnreadableTime,
    time_unreadable,
)

__all__ = ["UnreadableTime", "register_times", "time_unreadable", "unreadable_times"]

_INT64 = struct.Struct("!q")
# PostgreSQL's binary timestamptz: microseconds since 2000-01-01 00:00 UTC (its infinities:
# receiver.unreadable, which writes their text).
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_LOWEST = (datetime.min.replace(tzinfo=UTC) - _EPOCH) // _US
_HIGHEST = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // _US


def unreadable_times(
    row: Mapping[str, Any], columns: Iterable[str] | None = None
) -> dict[str, str]:
    """column -> why, for each column of ``row`` (of ``columns``; None: all) read as an
    ``UnreadableTime``."""
    return {
        column: time_unreadable(value.stored)
        for column in (row.keys() if columns is None else columns)
        if isinstance(value := row.get(column), UnreadableTime)
    }


def _decode(data: bytes) -> datetime:
    (micros,) = _INT64.unpack(data)
    if _LOWEST <= micros <= _HIGHEST:
        return _EPOCH + timedelta(microseconds=micros)
    return UnreadableTime(micros)


def _encode(value: datetime | date) -> bytes:
    if isinstance(value, UnreadableTime):
        return _INT64.pack(value.micros)
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day).astimezone()
    micros = (value.astimezone(UTC) - _EPOCH) // _US
    if micros == _HIGHEST:
        micros = PG_INFINITY
    elif micros == _LOWEST:
        micros = PG_NEGATIVE_INFINITY
    return _INT64.pack(micros)


async def register_times(conn: Any) -> None:
    """Read and write timestamptz on ``conn`` (an asyncpg connection) through this module."""
    await conn.set_type_codec(
        "timestamptz", schema="pg_catalog", encoder=_encode, decoder=_decode, format="binary"
    )
