"""PgBouncer in ``pool_mode = statement`` in front of the store: it ends a client whose
transaction outlives a statement, and the store's work is such transactions. The errors name
the setting to change (``STATEMENT_MODE_FIX``), at start and when the mode is switched under a
running store, which goes on once the mode is switched back, nothing lost.

Before, ``serve`` exited with ``cannot reach PostgreSQL at ...`` (it had reached it),
``remediator migrate`` printed PgBouncer's words only, and a store whose pooler was switched
to statement mode went on storing alerts (intake's statements are single ones) while every
claim failed as ``store unavailable while claiming``, every second, naming no setting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from receiver.intake import Intake, IntakeResult
from receiver.store import STATEMENT_MODE_FIX, Store, StoreUnavailable, describe
from tests.support import payloads
from tests.support import pgbouncer as bouncers
from tests.support.postgres import PostgresServer
from tests.support.served import cli, database_env, env_for, serve_to_exit

pytestmark = pytest.mark.postgres

POOLER = {"REMEDIATOR_DATABASE_POOLER": "pgbouncer-transaction"}


@pytest.fixture
def statement_pooler(pg_server: PostgresServer) -> Iterator[bouncers.PgBouncer]:
    bouncer = bouncers.start(pg_server, mode="statement")
    try:
        yield bouncer
    finally:
        bouncer.stop()


async def test_serve_names_the_pool_mode_at_start(
    statement_pooler: bouncers.PgBouncer, database_url: str, embedded_dir: Path
) -> None:
    env = {
        **env_for(embedded_dir),
        "REMEDIATOR_DATABASE_URL": statement_pooler.through(database_url),
        **POOLER,
        "REMEDIATOR_DATABASE_DIRECT_URL": database_url,
    }
    done = await asyncio.to_thread(serve_to_exit, env)
    assert done.returncode == 1, done.stderr[-2000:]
    [error] = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert "database_url (REMEDIATOR_DATABASE_URL)" in error
    assert STATEMENT_MODE_FIX in error
    assert "cannot reach" not in error
    assert statement_pooler.password not in done.stderr + done.stdout


async def test_migrate_names_the_pool_mode(
    statement_pooler: bouncers.PgBouncer, empty_database_url: str
) -> None:
    env = {
        **database_env(statement_pooler.through(empty_database_url)),
        **POOLER,
        "REMEDIATOR_DATABASE_DIRECT_URL": empty_database_url,
    }
    code, out, err = await cli(env, "migrate")
    assert code == 1, out + err
    assert STATEMENT_MODE_FIX in err
    assert "Traceback" not in err


async def test_a_switch_to_statement_mode_is_named_and_outlived(
    own_pooler: bouncers.PgBouncer, database_url: str
) -> None:
    store = await Store.connect(
        own_pooler.through(database_url), min_size=1, max_size=4, transaction_pooled=True
    )
    try:
        await own_pooler.admin("SET pool_mode = statement")
        # Intake's statements are single ones, which the mode lets through: stored.
        alert = payloads.alert({"alertname": "DiskFull", "pod": "p-0"})
        assert await Intake(store).accept(payloads.notification(alert)) == IntakeResult(1, 0)
        # The worker's claim of jobs is a transaction (its run locks): refused, as an outage,
        # the fix named.
        with pytest.raises(StoreUnavailable) as refused:
            await store.claim_jobs("w", 4, 30.0)
        assert STATEMENT_MODE_FIX in str(refused.value)
        assert describe(refused.value.__cause__ or refused.value).endswith(STATEMENT_MODE_FIX)
        await own_pooler.admin("SET pool_mode = transaction")
        assert await store.claim_jobs("w", 4, 30.0) == []
        [claimed] = await store.claim_events("w", 4, 30.0)
        assert claimed.event.labels["pod"] == "p-0"
    finally:
        await store.close()
    direct = await asyncpg.connect(database_url)
    try:
        states = await direct.fetch("SELECT state, attempts FROM alert_events")
    finally:
        await direct.close()
    assert [tuple(r) for r in states] == [("claimed", 1)]
