"""What wakes the worker, against a real PostgreSQL: a NOTIFY on its LISTEN connection (which
it re-establishes when the server ends it), its poll for jobs come due, and, when the LISTEN
connection cannot be made, polling alone, said once as a warning with its cause."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import asyncpg
import pytest

from receiver.embedded.process import free_port
from receiver.model import Disposition, RunOutcome
from receiver.store import ClaimedJob, Store
from receiver.worker import Worker
from tests.support.events import new_event, new_run
from tests.support.polling import eventually
from tests.support.said import Said
from tests.support.worker_loop import LoopProbe, Recorder, _depth_is

pytestmark = pytest.mark.postgres


async def test_notify_wakes_the_worker(
    store: Store, workers: Callable[..., Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    process = Recorder()
    # A poll interval of a minute: only the NOTIFY can make it look within the test's bound.
    worker = workers(process, poll_interval_s=60.0)
    probe = LoopProbe(store, worker, monkeypatch)
    await worker.start()
    await probe.idle()  # the loop waits: nothing but the insert's NOTIFY can wake it
    started = time.monotonic()
    await store.insert_events([new_event(1)])
    await asyncio.wait_for(process.started.wait(), 5)
    assert time.monotonic() - started < 5
    await eventually(lambda: _depth_is(store, 0))


async def test_listen_connection_is_reestablished(
    store: Store,
    workers: Callable[..., Worker],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    process = Recorder()
    worker = workers(process, poll_interval_s=60.0)
    probe = LoopProbe(store, worker, monkeypatch)
    await worker.start()
    await asyncio.wait_for(worker.listening.wait(), 10)
    # The connection's last statement is its listen check's (LISTEN, then UNLISTEN, of a
    # channel of its own) once that is made: wait for it, and find either.
    await asyncio.wait_for(worker.listen_checked.wait(), 10)
    conn = await asyncpg.connect(database_url)
    listeners = """SELECT pid FROM pg_stat_activity
                   WHERE datname = current_database()
                     AND (query LIKE 'LISTEN%' OR query LIKE 'UNLISTEN%')"""
    try:
        [old] = [r["pid"] for r in await conn.fetch(listeners)]
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", old)

        async def relistened() -> bool:
            pids = [r["pid"] for r in await conn.fetch(listeners)]
            return worker.listening.is_set() and bool(pids) and old not in pids

        await eventually(relistened)
    finally:
        await conn.close()
    await probe.idle()  # on the new connection: only the insert's NOTIFY can wake it now
    await store.insert_events([new_event(2)])
    await asyncio.wait_for(process.started.wait(), 5)


async def test_worker_takes_up_jobs_when_they_come_due(
    store: Store, workers: Callable[..., Worker]
) -> None:
    run_id = await new_run(store, dry_run=False)
    seen: list[tuple[str, str, float]] = []
    due = asyncio.Event()

    async def process_job(job: ClaimedJob) -> Disposition:
        seen.append((str(job.kind), job.run_id, time.monotonic()))
        due.set()
        return Disposition.done()

    worker = workers(Recorder(), process_job=process_job)
    await worker.start()
    scheduled = time.monotonic()
    # Due in 0.5 s: no NOTIFY wakes the worker then, its poll must find it.
    await store.set_run_outcome(run_id, RunOutcome.VERIFYING, schedule=[("verify_deadline", 0.5)])
    await asyncio.wait_for(due.wait(), 10)
    [(kind, job_run, taken)] = seen
    assert (kind, job_run) == ("verify_deadline", run_id)
    assert taken - scheduled >= 0.5
    await eventually(lambda: _no_job_due(store))


async def _no_job_due(store: Store) -> bool:
    return await store.jobs_due_count() == 0


async def test_a_listen_connection_that_fails_is_a_warning_with_its_cause(
    store: Store, workers: Callable[..., Worker]
) -> None:
    """database.direct_url unreachable (a typo, a NetworkPolicy): the worker finds new work by
    polling only, so say so at warning level with the error's class, not "lost; reconnecting"
    at info with no cause; never the URL (it holds a password)."""
    said = Said()
    dsn = f"postgresql://remediator:direct-secret@127.0.0.1:{free_port()}/remediator"
    worker = workers(Recorder(), owner="w1", listen_dsn=dsn, log=said)
    await worker.start()

    def warned() -> list[tuple[str, str, dict[str, object]]]:
        return [line for line in said.lines if line[0] == "warning" and "listen" in line[1]]

    await eventually(lambda: asyncio.sleep(0, warned()), bool)
    _, event, fields = warned()[0]
    assert "polling" in event
    assert "ConnectionRefusedError" in str(fields.get("error"))

    # The next failures, a second or so apart, are not warned about again within the minute.
    def failed() -> list[tuple[str, str, dict[str, object]]]:
        return [line for line in said.lines if "listen connection failed" in line[1]]

    await eventually(lambda: asyncio.sleep(0, failed()), lambda f: len(f) >= 2)
    assert len(warned()) == 1, said.lines
    assert "direct-secret" not in repr(said.lines)


async def test_a_listen_connection_refused_is_one_error_a_minute_not_one_a_retry(
    store: Store, workers: Callable[..., Worker], database_url: str
) -> None:
    """A refusal lasts (a database, role or password changed since the start, which checked
    database.direct_url): its traceback was logged at every retry, every few seconds. Now at
    error level once a minute, naming the cause; the retries in between at debug."""
    said = Said()
    dsn = database_url.rsplit("/", 1)[0] + "/no_such_database"
    worker = workers(Recorder(), owner="w1", listen_dsn=dsn, log=said)
    await worker.start()

    def failed() -> list[tuple[str, str, dict[str, object]]]:
        return [line for line in said.lines if line[1].startswith("listen connection")]

    await eventually(lambda: asyncio.sleep(0, failed()), lambda f: len(f) >= 3)
    loud = [line for line in failed() if line[0] != "debug"]
    assert [(level, event) for level, event, _ in loud] == [
        ("error", "listen connection refused; new work is found by polling meanwhile")
    ], said.lines
    assert "InvalidCatalogNameError" in str(loud[0][2]["error"])
    assert loud[0][2]["exc_info"] is not None
