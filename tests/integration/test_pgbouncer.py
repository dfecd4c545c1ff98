"""The store behind a real PgBouncer in transaction pooling mode (tests/support/pgbouncer.py):
intake, the worker's claims, migrations and the audit commands through it; the LISTEN wake-ups
over the direct connection (``database.direct_url``); and the statement cache as what breaks
without ``database.pooler: pgbouncer-transaction``."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
import structlog

from receiver.intake import Intake, IntakeResult
from receiver.model import AlertEvent, Disposition
from receiver.store import WORK_CHANNEL, Store
from receiver.store.database import connect_options
from receiver.store.migrate import load_migrations
from receiver.worker import Worker
from tests.support import payloads
from tests.support.events import alert_event
from tests.support.pgbouncer import PgBouncer
from tests.support.polling import current, eventually
from tests.support.postgres import PostgresServer, drop_database
from tests.support.served import ServeFactory, acted_on_sample, cli, database_env

pytestmark = pytest.mark.postgres

LOG = structlog.get_logger("test.pgbouncer")
POOLER = {"REMEDIATOR_DATABASE_POOLER": "pgbouncer-transaction"}


@pytest.fixture
async def pooled(pgbouncer: PgBouncer, database_url: str) -> AsyncIterator[Store]:
    """The test's database through PgBouncer, as the service opens it behind one."""
    store = await Store.connect(
        pgbouncer.through(database_url), min_size=1, max_size=8, transaction_pooled=True
    )
    try:
        yield store
    finally:
        await store.close()


async def _connect(url: str, *, pooled: bool) -> Any:
    return await asyncpg.connect(url, **connect_options(transaction_pooled=pooled))


async def test_the_pooler_moves_a_client_between_server_connections(
    pgbouncer: PgBouncer, database_url: str
) -> None:
    """What the other tests stand on: transaction pooling, and a password that is checked."""
    url = pgbouncer.through(database_url)
    holder, mover = await _connect(url, pooled=True), await _connect(url, pooled=True)
    try:
        first = await mover.fetchval("SELECT pg_backend_pid()")
        async with holder.transaction():
            await holder.fetchval("SELECT pg_backend_pid()")  # holds the one idle server conn
            second = await mover.fetchval("SELECT pg_backend_pid()")
        assert second != first, "one client, two server connections: transaction pooling"
    finally:
        await holder.close()
        await mover.close()
    # PgBouncer 1.18 answers a wrong SCRAM proof with SQLSTATE 08P01, not 28P01.
    with pytest.raises(asyncpg.PostgresError, match="authentication failed"):
        await asyncpg.connect(url.replace(pgbouncer.password, "not-the-password"))


@pytest.mark.parametrize("pooled", [False, True], ids=["statement cache on", "cache off"])
async def test_the_statement_cache_is_what_breaks_behind_the_pooler(
    pgbouncer: PgBouncer, database_url: str, pooled: bool
) -> None:
    """A statement prepared on one server connection, executed on another: asyncpg's cache
    (``database.pooler: none``) fails; ``connect_options`` of a transaction pooler works."""
    url = pgbouncer.through(database_url)
    holder, client = await _connect(url, pooled=pooled), await _connect(url, pooled=pooled)
    query = "SELECT $1::int + 1"
    try:
        async with holder.transaction():
            await holder.fetchval("SELECT 1")  # server connection A stays with the holder
            assert await client.fetchval(query, 1) == 2  # prepared on server connection B
        # The holder released A last: PgBouncer hands it out next (LIFO), to the client.
        if pooled:
            assert await client.fetchval(query, 2) == 3
        else:
            with pytest.raises(asyncpg.InvalidSQLStatementNameError, match="does not exist"):
                await client.fetchval(query, 2)
    finally:
        await holder.close()
        await client.close()


async def test_migrations_run_through_the_pooler(
    pgbouncer: PgBouncer, empty_database_url: str
) -> None:
    """Three replicas start at once on an empty database, through PgBouncer: the schema is
    complete, and no advisory lock outlives them on a server connection."""
    url = pgbouncer.through(empty_database_url)
    stores = await asyncio.gather(
        *(Store.connect(url, min_size=1, max_size=2, transaction_pooled=True) for _ in range(3))
    )
    try:
        versions = [m.version for m in load_migrations()]
        for store in stores:
            assert await store.schema_versions() == versions
    finally:
        for store in stores:
            await store.close()
    direct = await asyncpg.connect(empty_database_url)
    try:
        held = await direct.fetchval(
            """SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
               WHERE l.locktype = 'advisory' AND d.datname = current_database()"""
        )
    finally:
        await direct.close()
    assert held == 0


async def test_a_simulated_clock_is_refused_behind_the_pooler(
    pgbouncer: PgBouncer, database_url: str
) -> None:
    """The clock of ``remediator test`` is a session setting, which a pooler does not keep."""
    with pytest.raises(ValueError, match="session state"):
        await Store.connect(
            pgbouncer.through(database_url),
            clock=lambda: datetime.now(UTC),
            transaction_pooled=True,
        )


class IdleGate:
    """When the worker's loop waits for a wake-up: a claim that began after its LISTEN
    connection came up and after the last completion (each wakes the loop once more) has
    returned empty. From then on, with the poll interval long, only a NOTIFY makes it claim.
    Made before the worker (which binds ``complete_event`` when it is built); ``watch`` it."""

    def __init__(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        self._monkeypatch = monkeypatch
        self._tick = 0
        self._since = -1  # the latest LISTEN or completion
        self._idle_since = -1
        real_claim, real_complete = store.claim_events, store.complete_event

        async def claim_events(*args: Any, **kwargs: Any) -> Any:
            began = self._next()
            claims = await real_claim(*args, **kwargs)
            if not claims:
                self._idle_since = max(self._idle_since, began)
            return claims

        async def complete_event(*args: Any, **kwargs: Any) -> Any:
            done = await real_complete(*args, **kwargs)
            self._since = self._next()
            return done

        monkeypatch.setattr(store, "claim_events", claim_events)
        monkeypatch.setattr(store, "complete_event", complete_event)

    def watch(self, worker: Worker) -> None:
        real_set = worker.listening.set

        def listening_set() -> None:
            self._since = self._next()
            real_set()

        self._monkeypatch.setattr(worker.listening, "set", listening_set)

    def _next(self) -> int:
        self._tick += 1
        return self._tick

    async def idle(self) -> None:
        waiting = current(lambda: self._since >= 0 and self._idle_since > self._since)
        await eventually(waiting, what="the worker idle after LISTEN and its last completion")


async def _processed(worker: Worker, count: int) -> None:
    await eventually(
        current(lambda: worker.processed), lambda n: n == count, what=f"{count} processed"
    )


async def test_intake_and_the_worker_through_the_pooler_woken_over_the_direct_connection(
    pooled: Store, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[AlertEvent] = []

    async def process(event: AlertEvent) -> Disposition:
        seen.append(event)
        return Disposition.done()

    gate = IdleGate(pooled, monkeypatch)
    # A poll interval of ten minutes: only a NOTIFY reaching the LISTEN makes it look in time.
    worker = Worker(
        pooled,
        process,
        concurrency=4,
        lease_s=30.0,
        poll_interval_s=600.0,
        listen_dsn=database_url,
        log=LOG,
    )
    gate.watch(worker)
    await worker.start()
    try:
        for round_ in range(2):
            await gate.idle()
            alerts = [
                payloads.alert({"alertname": "DiskFull", "pod": f"r{round_}-{i}"}) for i in range(5)
            ]
            result = await Intake(pooled).accept(payloads.notification(*alerts))
            assert result == IntakeResult(5, 0)
            await _processed(worker, 5 * (round_ + 1))
    finally:
        await worker.stop(grace_s=1)
    assert len({e.id for e in seen}) == 10
    assert await pooled.queue_depth() == 0
    direct = await asyncpg.connect(database_url)
    try:
        states = await direct.fetch("SELECT state, count(*) AS n FROM alert_events GROUP BY 1")
    finally:
        await direct.close()
    assert {r["state"]: r["n"] for r in states} == {"done": 10}


async def test_a_listen_through_the_pooler_hears_nothing(
    pgbouncer: PgBouncer, database_url: str
) -> None:
    """Why the LISTEN needs the direct connection: PgBouncer returns the listening server
    connection to its pool, and what PostgreSQL sends there never reaches the listener."""
    heard: dict[str, list[str]] = {"direct": [], "pooled": []}
    direct = await asyncpg.connect(database_url)
    pooled = await _connect(pgbouncer.through(database_url), pooled=True)
    sender = await _connect(pgbouncer.through(database_url), pooled=True)
    try:
        for name, conn in (("direct", direct), ("pooled", pooled)):
            await conn.add_listener(
                WORK_CHANNEL, lambda *args, into=heard[name]: into.append(args[3])
            )
        for i in range(3):
            async with sender.transaction():
                await sender.execute("SELECT pg_notify($1, $2)", WORK_CHANNEL, str(i))
        await eventually(current(lambda: heard["direct"]), lambda got: len(got) == 3)
        await pooled.fetchval("SELECT 1")  # a round trip: anything sent to it has arrived
        assert heard["pooled"] == []
    finally:
        for conn in (direct, pooled, sender):
            await conn.close()


async def test_serve_behind_the_pooler_end_to_end(
    serve: ServeFactory, pgbouncer: PgBouncer, database_url: str
) -> None:
    """``remediator serve`` configured as the README says: migrations, intake, the worker, the
    pipeline's runs, steps and audit rows through PgBouncer, LISTEN direct (a ten-minute poll
    interval), then ``migrate`` and ``audit verify`` (twice) with the same settings."""
    settings = {
        "REMEDIATOR_DATABASE_URL": pgbouncer.through(database_url),
        **POOLER,
        "REMEDIATOR_DATABASE_DIRECT_URL": database_url,
        "REMEDIATOR_WORKER_POLL_INTERVAL": "10m",
    }
    served = serve(settings)
    finished = await acted_on_sample(served)
    assert [r["outcome"] for r in finished] == ["dry_run"]
    env = {**database_env(settings["REMEDIATOR_DATABASE_URL"]), **settings}
    code, out, err = await cli(env, "migrate")
    assert (code, out.strip()) == (0, "database schema is up to date"), err
    for _ in range(2):
        code, out, err = await cli(env, "audit", "verify")
        assert code == 0, out + err


async def test_serve_stops_promptly_when_its_database_went_away(
    serve: ServeFactory, pgbouncer: PgBouncer, pg_server: PostgresServer, database_url: str
) -> None:
    """Behind PgBouncer a connection to a database that is gone waits for a server that is not
    coming: stopping must not wait on it to record ``service.stopped`` (it took 60 s, past a
    Pod's grace period; the embedded Redis was left running)."""
    served = serve(
        {
            "REMEDIATOR_DATABASE_URL": pgbouncer.through(database_url),
            **POOLER,
            "REMEDIATOR_DATABASE_DIRECT_URL": database_url,
        }
    )
    await drop_database(pg_server, database_url)
    served.proc.send_signal(signal.SIGTERM)
    # Well inside the 20 s grace for claimed work; the audit row waits 5 s at most.
    try:
        code = await asyncio.to_thread(served.proc.wait, 30)
    except subprocess.TimeoutExpired:
        pytest.fail("serve still running 30 s after SIGTERM:\n" + "".join(served.output[-40:]))
    assert code == 0
    events = [json.loads(line) for line in served.output if line.startswith("{")]
    [unrecorded] = [e for e in events if e["event"] == "could not record in the audit log"]
    assert unrecorded["kind"] == "service.stopped"
    assert events[-1]["event"] == "stopped"


async def test_calls_sent_together_work_through_the_pooler(
    pgbouncer: PgBouncer, database_url: str, pooled: Store
) -> None:
    """The worker's batched calls (receiver.batching), here the history reads (one execution
    of engine_histories a batch): with the statement cache off, each batch parses its
    statement again with its execution, so it runs whichever server connection the pooler
    hands out."""
    url = pgbouncer.through(database_url)
    holder = await _connect(url, pooled=True)
    events = [alert_event(n, n) for n in range(1, 5)]
    try:
        for _ in range(2):
            async with holder.transaction():
                await holder.fetchval("SELECT 1")  # one server connection stays with it
                first = await asyncio.gather(*(pooled.history(e, 60) for e in events))
            # Released last, that connection is handed out next: the batch runs there.
            again = await asyncio.gather(*(pooled.history(e, 60) for e in events))
            assert first == again
            assert all(h.episode_runs == () and not h.episode_resolved for h in again)
    finally:
        await holder.close()
    assert pooled._history_reads.batches < pooled._history_reads.calls
