"""timestamptz read and written through ``receiver.store.stored_times`` against PostgreSQL:
a time Python holds reads as asyncpg read it; one it cannot (years past 9999, BC, the
infinities) reads as an UnreadableTime whose text is PostgreSQL's own, and is written back
unchanged."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.store.stored_times import UnreadableTime, register_times

# Every timestamptz PostgreSQL holds: 4713 BC to 294276 AD (a day either end kept off).
_MICROS = st.integers(-211_813_401_600_000_000 + 86_400_000_000, 9_223_371_331_199_999_999)
_EDGES = [0, 1, -1, 252_455_615_999_999_999, 252_455_616_000_000_000,
          -63_082_281_600_000_000, -63_082_281_600_000_001]  # fmt: skip
_ENDS = (datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))


async def _read(database_url: str, micros: list[int]) -> list[tuple[object, str, object, bool]]:
    """Each value (microseconds since 2000-01-01 UTC, made by PostgreSQL): as read, as
    PostgreSQL writes it in UTC, as asyncpg alone reads it (or its error's type), and
    whether writing it back gives the same stored value."""
    plain = await asyncpg.connect(database_url, server_settings={"TimeZone": "UTC"})
    conn = await asyncpg.connect(database_url, server_settings={"TimeZone": "UTC"})
    await register_times(conn)
    # Days and the rest apart: bigint * interval goes through float8, which rounds.
    sql = """SELECT '2000-01-01 00:00:00+00'::timestamptz
                    + ($1::bigint / 86400000000) * interval '1 day'
                    + ($1::bigint % 86400000000) * interval '1 microsecond'"""
    try:
        found = []
        for m in micros:
            read = await conn.fetchval(sql, m)
            text = await conn.fetchval(f"SELECT ({sql})::text", m)
            try:
                alone: object = await plain.fetchval(sql, m)
            except OverflowError as exc:
                alone = type(exc)
            same = await conn.fetchval(f"SELECT $2::timestamptz = ({sql})", m, read)
            found.append((read, text, alone, same))
        return found
    finally:
        await conn.close()
        await plain.close()


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(micros=st.lists(_MICROS, min_size=1, max_size=10))
def test_a_stored_time_reads_as_python_can_or_as_postgresql_writes_it(
    database_url: str, micros: list[int]
) -> None:
    for m, (read, text, alone, same) in zip(
        micros + _EDGES, asyncio.run(_read(database_url, micros + _EDGES)), strict=True
    ):
        # Written back, it is the stored value; but for Python's first and last instants,
        # which asyncpg writes as the infinities (and so does stored_times).
        assert same or (type(read) is datetime and read in _ENDS), m
        assert isinstance(read, datetime)
        if isinstance(read, UnreadableTime):
            assert read.stored == text, m
            assert alone is OverflowError
        else:
            assert read == alone == datetime(2000, 1, 1, tzinfo=UTC) + timedelta(microseconds=m)


async def test_the_infinities_read_as_stored_and_write_back(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await register_times(conn)
        for text in ("infinity", "-infinity"):
            read = await conn.fetchval("SELECT $1::text::timestamptz", text)
            assert isinstance(read, UnreadableTime)
            assert read.stored == text
            assert await conn.fetchval("SELECT $1::timestamptz::text", read) == text
        # datetime.max and .min are still written as the infinities, as asyncpg writes them.
        for value, text in ((datetime.max, "infinity"), (datetime.min, "-infinity")):
            aware = value.replace(tzinfo=UTC)
            assert await conn.fetchval("SELECT $1::timestamptz::text", aware) == text
    finally:
        await conn.close()
