"""Mistakes in the PgBouncer settings are named, not silent (README, "PgBouncer"): a transaction
pooler behind ``database.pooler: none`` is refused at start when it shows itself (handing out
its server connections last released first, or, ``server_round_robin``, first), and its lost
prepared statements name the setting when it did not; a ``database.direct_url`` that reaches the
pooler under another name is warned of once its LISTEN hears nothing."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import structlog

from receiver.model import AlertEvent, Disposition
from receiver.store import Store
from receiver.store.errors import describe, translate
from receiver.worker import Worker
from tests.support.pgbouncer import PgBouncer, start
from tests.support.polling import current, eventually
from tests.support.postgres import PostgresServer
from tests.support.served import ServeFactory, env_for, serve_to_exit

pytestmark = pytest.mark.postgres

FIX = "set database.pooler: pgbouncer-transaction (REMEDIATOR_DATABASE_POOLER)"


def test_serve_refuses_a_transaction_pooler_it_was_not_told_of(
    pgbouncer: PgBouncer, database_url: str, embedded_dir: Path
) -> None:
    """The tester's F2: stored alerts left claimed behind a pooler, the log naming only SQLSTATE
    26000. Now ``serve`` does not start, and says what to set."""
    settings = {"REMEDIATOR_DATABASE_URL": pgbouncer.through(database_url)}
    proc = serve_to_exit(env_for(embedded_dir) | settings, timeout_s=60)
    assert proc.returncode == 2, proc.stderr[-2000:]  # a configuration error, as the CLI's
    assert FIX in proc.stderr + proc.stdout, proc.stderr[-2000:]


async def test_the_probe_passes_a_direct_connection_and_stops_the_pooler(
    pgbouncer: PgBouncer, database_url: str
) -> None:
    """No false alarm on PostgreSQL itself; the pooler found at once when idle."""
    direct = await Store.connect(database_url, check_pooler=True)
    await direct.close()
    with pytest.raises(Exception, match=re.escape(FIX)) as caught:
        await Store.connect(pgbouncer.through(database_url), check_pooler=True)
    assert type(caught.value).__name__ == "PoolerNotNamed"


async def test_the_probe_stops_a_round_robin_pooler_of_two_server_connections(
    pg_server: PostgresServer, database_url: str
) -> None:
    """PgBouncer with ``server_round_robin = 1`` hands out the server connection released
    first (FIFO). With two of them, two client connections taking turns get one each, the
    same one every time: the probe's rounds of one statement each saw neither sign. Its third
    statement a round, on the first connection again, takes the other server connection."""
    bouncer = start(pg_server, pool_size=2, round_robin=True)
    url = bouncer.through(database_url)
    try:
        # Two server connections, as a busy moment leaves them (PgBouncer opens them lazily):
        # two transactions open at once.
        clients = [await asyncpg.connect(url) for _ in range(2)]
        try:
            pids = set()
            opened = [client.transaction() for client in clients]
            for client, transaction in zip(clients, opened, strict=True):
                await transaction.start()
                pids.add(await client.fetchval("SELECT pg_backend_pid()"))
            for transaction in opened:
                await transaction.commit()
        finally:
            for client in clients:
                await client.close()
        assert len(pids) == 2
        with pytest.raises(Exception, match=re.escape(FIX)) as caught:
            await Store.connect(url, check_pooler=True)
        assert type(caught.value).__name__ == "PoolerNotNamed"
    finally:
        bouncer.stop()


async def test_a_prepared_statement_lost_behind_the_pooler_names_the_fix(
    pgbouncer: PgBouncer, database_url: str
) -> None:
    """When the probe missed it, the error the store raises and the line the service logs
    (``describe``) name the setting, not only ``InvalidSQLStatementNameError (SQLSTATE 26000)``."""
    url = pgbouncer.through(database_url)
    holder, client = await asyncpg.connect(url), await asyncpg.connect(url)
    query = "SELECT $1::int + 1"
    try:
        async with holder.transaction():
            await holder.fetchval("SELECT 1")  # server connection A stays with the holder
            assert await client.fetchval(query, 1) == 2  # prepared on server connection B
        # The holder released A last: PgBouncer hands it out next (LIFO), to the client.
        with pytest.raises(asyncpg.InvalidSQLStatementNameError) as caught, translate():
            await client.fetchval(query, 2)
    finally:
        await holder.close()
        await client.close()
    assert FIX in describe(caught.value)
    assert describe(caught.value).startswith("InvalidSQLStatementNameError (SQLSTATE 26000): ")
    assert any(FIX in note for note in getattr(caught.value, "__notes__", []))


async def _done(_event: AlertEvent) -> Disposition:
    return Disposition.done()


async def _started(store: Store, listen_dsn: str) -> tuple[Worker, Any]:
    log = structlog.testing.CapturingLogger()
    worker = Worker(
        store,
        _done,
        concurrency=1,
        lease_s=30.0,
        poll_interval_s=600.0,
        listen_dsn=listen_dsn,
        log=log,
    )
    await worker.start()
    return worker, log


def _warnings(log: Any) -> list[str]:
    return [c.args[0] for c in log.calls if c.method_name == "warning"]


async def test_a_direct_url_naming_the_pooler_otherwise_is_warned_of(
    pgbouncer: PgBouncer, database_url: str
) -> None:
    """The tester's F1: ``localhost`` for the pooler's ``127.0.0.1`` passes the settings' check,
    and the LISTEN through the pooler hears nothing. Now its first connection says so."""
    pooled = pgbouncer.through(database_url)
    store = await Store.connect(pooled, transaction_pooled=True, min_size=1, max_size=4)
    elsewhere = pooled.replace("@127.0.0.1:", "@localhost:")
    assert elsewhere != pooled
    try:
        worker, log = await _started(store, elsewhere)
        try:
            said = await eventually(
                current(lambda: _warnings(log)),
                lambda got: any("database.direct_url" in w for w in got),
                what="a warning naming database.direct_url",
            )
        finally:
            await worker.stop(grace_s=1)
    finally:
        await store.close()
    [warning] = [w for w in said if "database.direct_url" in w]
    assert "polling" in warning


async def test_a_direct_url_that_hears_the_store_says_nothing(
    pgbouncer: PgBouncer, database_url: str
) -> None:
    store = await Store.connect(
        pgbouncer.through(database_url), transaction_pooled=True, min_size=1, max_size=4
    )
    try:
        worker, log = await _started(store, database_url)
        try:
            await eventually(current(worker.listen_checked.is_set), what="the listen check made")
        finally:
            await worker.stop(grace_s=1)
    finally:
        await store.close()
    assert _warnings(log) == []


async def test_serve_warns_of_a_direct_url_that_reaches_the_pooler(
    serve: ServeFactory, pgbouncer: PgBouncer, database_url: str
) -> None:
    """The tester's F1 as they met it: ``serve`` as the README says, ``direct_url`` the pooler
    under another name. The log now says what it means."""
    pooled = pgbouncer.through(database_url)
    served = serve(
        {
            "REMEDIATOR_DATABASE_URL": pooled,
            "REMEDIATOR_DATABASE_POOLER": "pgbouncer-transaction",
            "REMEDIATOR_DATABASE_DIRECT_URL": pooled.replace("@127.0.0.1:", "@localhost:"),
        }
    )
    [line] = await eventually(
        current(lambda: [x for x in served.output if "database.direct_url" in x]),
        what="serve's warning naming database.direct_url",
    )
    said = json.loads(line)
    assert said["level"] == "warning"
    assert "polling, every worker.poll_interval" in said["event"]


@pytest.mark.parametrize(
    ("wrong", "said"),
    [
        ("/no_such_database", 'database "no_such_database" does not exist'),
        ("user", 'role "no_such_role" does not exist'),
    ],
)
def test_serve_refuses_a_direct_url_postgresql_refuses(
    pgbouncer: PgBouncer, database_url: str, embedded_dir: Path, wrong: str, said: str
) -> None:
    """A ``database.direct_url`` PostgreSQL refuses (a database or role that does not exist, a
    password): ``serve`` started, and its worker's LISTEN failed for good, logged with a
    traceback every few seconds that named no setting; new work was found only by polling
    (every 10 minutes here). Now the start ends naming the setting, as for ``database_url``."""
    parts = urlsplit(database_url)
    if wrong == "user":
        direct = urlunsplit(parts._replace(netloc=f"no_such_role@{parts.hostname}:{parts.port}"))
    else:
        direct = urlunsplit(parts._replace(path=wrong))
    settings = {
        "REMEDIATOR_DATABASE_URL": pgbouncer.through(database_url),
        "REMEDIATOR_DATABASE_POOLER": "pgbouncer-transaction",
        "REMEDIATOR_DATABASE_DIRECT_URL": direct,
        "REMEDIATOR_WORKER_POLL_INTERVAL": "10m",
    }
    proc = serve_to_exit(env_for(embedded_dir) | settings, timeout_s=60)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "database.direct_url (REMEDIATOR_DATABASE_DIRECT_URL): PostgreSQL at" in proc.stderr
    assert said in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout


async def test_serve_starts_on_a_direct_url_out_of_reach_and_says_so(
    serve: ServeFactory, pgbouncer: PgBouncer, database_url: str
) -> None:
    """One out of reach may be passing (a failover): the start goes on, the worker keeps trying
    it and polls meanwhile, and the line names the setting."""
    parts = urlsplit(database_url)
    closed = urlunsplit(parts._replace(netloc=f"{parts.username or 'x'}@127.0.0.1:1"))
    served = serve(
        {
            "REMEDIATOR_DATABASE_URL": pgbouncer.through(database_url),
            "REMEDIATOR_DATABASE_POOLER": "pgbouncer-transaction",
            "REMEDIATOR_DATABASE_DIRECT_URL": closed,
        }
    )
    events = [json.loads(line) for line in served.output if line.startswith("{")]
    [warned] = [e for e in events if e["event"].startswith("database.direct_url (REMEDIATOR_")]
    assert warned["level"] == "warning"
    assert warned["at"] == "127.0.0.1:1" + parts.path
    assert "cannot be reached now" in warned["event"]
