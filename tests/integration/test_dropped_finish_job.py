"""An operator's drop of a ``finish_end`` job says what it leaves undone (store/queues.py,
store/finish.py ``left_undone``).

The job gives back the run's unused budget slot, releases its target lock and tells the
approvers; a drop cannot ask Redis or the channel which of them it did already. Dropped
while it waited for Redis (pending) or after its channel refused it (dead), the answer said
only "dropped", the audit row nothing more: the spent slot and the held lock were silent.
Real PostgreSQL.
"""

from __future__ import annotations

import pytest

from receiver.model import Target
from receiver.store import JobKind, Store
from tests.support.events import new_run

pytestmark = pytest.mark.postgres


async def test_a_dropped_finish_job_says_what_it_may_leave_undone(store: Store) -> None:
    run_id = await new_run(store, 0, target=Target("Deployment", "shop", "w0"))
    payload = {"refund": True, f"token:{run_id}/abc": True, "notice:a-1": True}
    job_id = await store.enqueue_job(JobKind.FINISH_END, run_id, delay_s=60, payload=payload)
    assert job_id is not None

    dropped = await store.drop_item("job", job_id, actor="alice", reason="redis gone for good")

    assert dropped["state"] == "done"
    assert dropped["not_done"] == (
        "unless its finish_end job did it before the drop: the run's budget slot, if none "
        "of its steps may have acted, not given back (it comes back once the budget's window "
        "has passed); its target lock not released (it frees itself at guards.lock_ttl); the "
        "approvers not told of the end of approval a-1"
    )
    [audit] = [a for a in await store.audit_entries(run_id) if a["kind"] == "job.drop"]
    assert audit["data"]["not_done"] == dropped["not_done"]
    assert audit["data"]["by"] == "alice"


async def test_a_dropped_job_of_another_kind_says_nothing_more(store: Store) -> None:
    run_id = await new_run(store, 1, target=Target("Deployment", "shop", "w1"))
    job_id = await store.enqueue_job(JobKind.RELEASE_LOCK, run_id, delay_s=60)
    assert job_id is not None
    dropped = await store.drop_item("job", job_id, actor="alice", reason="stale")
    assert "not_done" not in dropped
    [audit] = [a for a in await store.audit_entries(run_id) if a["kind"] == "job.drop"]
    assert "not_done" not in audit["data"]
