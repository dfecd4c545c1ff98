"""``serve`` behind a real PgBouncer in ``pool_mode = session`` (tests/support/pgbouncer.py): a
pool smaller than the connections one ``serve`` holds is refused at start, naming the size it
needs, instead of a start that hung for a minute and then served with its LISTEN never
getting through; a pool big enough works end to end (README, "PgBouncer")."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from receiver.store import PoolTooSmall, Store
from tests.support.pgbouncer import PgBouncer, start
from tests.support.postgres import PostgresServer, login_role
from tests.support.served import ServeFactory, acted_on_sample, env_for, serve_to_exit

pytestmark = pytest.mark.postgres

# One serve process: the store's pool (10) and the worker's LISTEN connection.
PER_PROCESS = 11


@pytest.fixture
def session_pooler(
    request: pytest.FixtureRequest, pg_server: PostgresServer
) -> Iterator[PgBouncer]:
    """PgBouncer in session mode with the test's ``default_pool_size`` (its parameter) and
    PgBouncer's default ``query_wait_timeout`` (120 s)."""
    bouncer = start(pg_server, pool_size=request.param, mode="session")
    try:
        yield bouncer
    finally:
        bouncer.stop()


@pytest.mark.parametrize(
    ("session_pooler", "processes", "needed"),
    [(1, 1, "11"), (2, 1, "11"), (3, 1, "11"), (PER_PROCESS, 2, "11 x 2 (worker.processes)")],
    ids=["pool 1", "pool 2", "pool 3", "pool 11, two processes"],
    indirect=["session_pooler"],
)
def test_serve_refuses_a_session_pool_too_small_and_names_the_size(
    session_pooler: PgBouncer, database_url: str, embedded_dir: Path, processes: int, needed: str
) -> None:
    """Before: pool 1 failed after 61 s with "cannot reach PostgreSQL ...: TimeoutError"
    (PostgreSQL was there); pools 2 and 3 started after 61 s, without the ``service.started``
    audit row and with the LISTEN timing out over and over. Now the start ends within a few
    seconds (the check waits 5 s for an answer), saying why and what to set."""
    settings = {
        "REMEDIATOR_DATABASE_URL": session_pooler.through(database_url),
        "REMEDIATOR_WORKER_PROCESSES": str(processes),
    }
    proc = serve_to_exit(env_for(embedded_dir) | settings, timeout_s=40)
    said = proc.stderr + proc.stdout
    assert proc.returncode == 1, said[-3000:]
    assert "a pooler in session mode (PgBouncer pool_mode = session)" in said, said[-3000:]
    assert f"default_pool_size) to at least {needed} x replicas" in said, said[-3000:]
    assert "listening on" not in said


@pytest.mark.parametrize("session_pooler", [3], indirect=True, ids=["pool 3"])
async def test_the_check_counts_what_got_a_server_connection(
    session_pooler: PgBouncer, pgbouncer: PgBouncer, database_url: str
) -> None:
    """The check's finding is what the pooler did: 3 of 11 answered behind a pool of 3. No
    false alarm on PostgreSQL itself, nor on a transaction pooler of 4 server connections
    (which hands them round between statements)."""
    with pytest.raises(PoolTooSmall, match=r"^3 of the 11 connections"):
        await Store.connect(session_pooler.through(database_url), check_pooler=True)
    direct = await Store.connect(database_url, check_pooler=True)
    await direct.close()
    pooled = await Store.connect(
        pgbouncer.through(database_url), check_pooler=True, transaction_pooled=True
    )
    await pooled.close()


async def test_the_check_opens_one_connection_to_postgresql_itself(
    pg_server: PostgresServer, database_url: str
) -> None:
    """On PostgreSQL itself (no pooler between: the cancel key's process id is the backend's)
    the check opens one connection, not eleven: a role allowed four connections starts as it
    did before the check (the pool opens two). With eleven at once it was refused, "too many
    connections for role"."""
    async with login_role(pg_server.url("postgres"), "capacity_") as role:
        admin = await asyncpg.connect(pg_server.url("postgres"))
        try:
            await admin.execute(f"ALTER ROLE {role} CONNECTION LIMIT 4")
            await admin.execute(f"GRANT {pg_server.user} TO {role}")  # the test tables' owner
        finally:
            await admin.close()
        parts = urlsplit(database_url)
        as_role = urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port}"))
        store = await Store.connect(as_role, check_pooler=True)
        await store.close()


@pytest.mark.parametrize("session_pooler", [PER_PROCESS], indirect=True, ids=["pool 11"])
async def test_serve_behind_a_session_pool_big_enough_end_to_end(
    serve: ServeFactory, session_pooler: PgBouncer, database_url: str
) -> None:
    """``database_url`` the session pooler, nothing else set (``database.pooler: none``, no
    ``direct_url``): ``serve`` starts, records ``service.started`` (logged as lost otherwise),
    answers /readyz, stores a notification (200 once committed) and acts on it in dry-run,
    woken over its LISTEN through the pooler (its poll is ten minutes away)."""
    served = serve(
        {
            "REMEDIATOR_DATABASE_URL": session_pooler.through(database_url),
            "REMEDIATOR_WORKER_POLL_INTERVAL": "10m",
        }
    )
    finished = await acted_on_sample(served)
    assert [r["outcome"] for r in finished] == ["dry_run"]
    said = "".join(served.output)
    # Both were logged behind a pool too small: the start's audit row lost, the LISTEN timed out.
    assert "could not record in the audit log" not in said
    assert "listen connection failed" not in said
