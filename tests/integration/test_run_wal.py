"""What storing a storm's refused event logs to the WAL for its run (issue 12).

Each heap insert, update, row lock and index entry is a WAL record, and a storm writes one
refused run an event: a record more per run is a record more per event. The run's insert is
not speculative (no ``INSERT ... ON CONFLICT``): a speculative insert logs its confirmation
as a record of its own. Read from the WAL itself with pg_walinspect, between the LSNs before
and after the write.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import asyncpg
import pytest

from receiver.model import Target
from receiver.store import EventLease, Refused, Store
from tests.support.events import alert_event, new_event
from tests.support.polling import eventually

pytestmark = pytest.mark.postgres

TARGET = Target("Deployment", "shop", "checkout")

# Heap records of the table named $3, by type, between the LSNs $1 and $2 (text). A record's
# blocks are named by the relation's file node, as "rel <tablespace>/<database>/<node>".
_HEAP_RECORDS = """
SELECT record_type, count(*) AS n
FROM pg_get_wal_records_info($1::text::pg_lsn, $2::text::pg_lsn)
WHERE resource_manager = 'Heap'
  AND block_ref ~ ('rel [0-9]+/[0-9]+/' || pg_relation_filenode($3::regclass) || '\\M')
GROUP BY record_type
"""


async def _lsn(store: Store) -> str:
    lsn: str = await store._pool.fetchval("SELECT pg_current_wal_insert_lsn()::text")
    return lsn


async def _heap_records(store: Store, since: str, until: str, table: str) -> Counter[str]:
    rows = await store._pool.fetch(_HEAP_RECORDS, since, until, table)
    return Counter({r["record_type"]: int(r["n"]) for r in rows})


async def test_a_refused_run_is_stored_without_a_speculative_insert(store: Store) -> None:
    await store._pool.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
    await store.insert_events([new_event()])
    [claimed] = await store.claim_events("w", 1, 30)
    lease = EventLease(claimed.event.id, "w", claimed.attempts)
    before = await _lsn(store)
    run_id = await store.create_run(
        rule="restart",
        event=claimed.event,
        target=TARGET,
        dry_run=True,
        refusal=Refused("cooldown", "a run of this rule on this target 10 s ago", None),
        complete=lease,
    )
    after = await _lsn(store)
    assert run_id is not None
    assert lease.completed

    runs = await _heap_records(store, before, after, "runs")
    # The run's row, and the lock its steps' foreign key check takes on it: no confirmation.
    assert runs["INSERT"] + runs["INSERT+INIT"] == 1, runs
    assert runs["HEAP_CONFIRM"] == 0, runs


async def test_a_run_stored_by_a_racing_statement_is_left_as_it_is(
    store: Store, database_url: str
) -> None:
    # An unfenced write (no claim orders it) looks for the run before another transaction
    # that stores it commits: its own insert then waits on that transaction and fails on
    # runs_once_per_occurrence once it commits. The store sends it again, and it finds the run.
    event = alert_event()
    rival = await asyncpg.connect(database_url)
    try:
        tx = rival.transaction()
        await tx.start()
        theirs = await rival.fetchval(
            """INSERT INTO runs (rule, fingerprint, starts_at, refire, alertname, target_kind,
                                 target_namespace, target_name, outcome, dry_run, group_key)
               VALUES ('restart', $1, $2, $3, $4, $5, $6, $7, 'pending', true, '')
               RETURNING id::text""",
            event.fingerprint,
            event.starts_at,
            event.refire,
            event.alertname,
            TARGET.kind,
            TARGET.namespace,
            TARGET.name,
        )
        ours = asyncio.create_task(
            store.create_run(rule="restart", event=event, target=TARGET, dry_run=True)
        )
        await eventually(
            lambda: store._pool.fetchval(
                # By the statement's first words: pg_stat_activity keeps only the first
                # track_activity_query_size bytes (1 kB) of it, which the insert lies beyond.
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND query LIKE '%WITH completed AS (%'"
            ),
            what="the store's insert waiting on the rival's",
        )
        await tx.commit()
        assert await ours is None
    finally:
        await rival.close()
    ids = await store._pool.fetch(
        "SELECT id::text FROM runs WHERE rule = 'restart' AND fingerprint = $1",
        event.fingerprint,
    )
    assert [r["id"] for r in ids] == [theirs]
