"""Work merged into a job while an attempt of it ran survives that attempt's failure
(``Store.fail_job``'s ``seen``, receiver/store/failures.py).

A second ending of a run while its ``finish_end`` job runs merges its own entries (a refund,
a notice, a lock's token) into the job's payload and asks for a rerun (``enqueue``). The
attempt running then has not seen them. When that attempt failed for the last time (a channel
refusing the first ending's notice, ``worker.max_attempts`` reached), the job went dead with
the new entries in it: no attempt ever did them. Now the job goes pending again, its count
started afresh, and the next attempt does them. Real PostgreSQL and the real worker; the job's
work is a local function that records the payload each attempt was given.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
import structlog

from receiver.model import Disposition
from receiver.store import ClaimedJob, JobKind, Store
from receiver.worker import Worker
from tests.support.events import new_run
from tests.support.polling import eventually

pytestmark = pytest.mark.postgres

LOG = structlog.get_logger("test.merged_payload")


async def _never(_: Any) -> Disposition:
    return Disposition.done()


@pytest.fixture
async def worker_of(store: Store) -> AsyncIterator[list[Worker]]:
    """The workers a test starts, stopped after it."""
    made: list[Worker] = []
    yield made
    for worker in made:
        await worker.stop()


async def test_keys_merged_while_the_last_attempt_ran_are_done_after_it_fails(
    store: Store, worker_of: list[Worker]
) -> None:
    run_id = await new_run(store, 0xE1)
    job_id = await store.enqueue_job(JobKind.FINISH_END, run_id, payload={"notice:a": True})
    assert job_id is not None
    given: list[Mapping[str, Any]] = []

    async def process_job(job: ClaimedJob) -> Disposition:
        given.append(dict(job.payload))
        if len(given) == 1:
            # Another ending of the run, committed while this attempt runs.
            await store.enqueue_job(JobKind.FINISH_END, run_id, payload={"refund": True})
            raise RuntimeError("the channel refused the notice")
        return Disposition.done()

    worker = Worker(
        store,
        _never,
        process_job=process_job,
        concurrency=1,
        lease_s=30.0,
        poll_interval_s=0.05,
        log=LOG,
        backoff_base_s=0.01,
        max_attempts=1,  # the first failure is the last one allowed
    )
    worker_of.append(worker)
    await worker.start()

    async def settled() -> str | None:
        job = await store.get_job(job_id)
        assert job is not None
        return str(job["state"]) if job["state"] in ("done", "dead") else None

    state = await eventually(settled, lambda s: s is not None, what="settled")
    assert state == "done", "the job went dead with the merged refund never attempted"
    assert given == [{"notice:a": True}, {"notice:a": True, "refund": True}]
