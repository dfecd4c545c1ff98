"""A run whose admission Redis took and whose worker died before the store recorded it, then
ended by its alert's resolution.

The run waited for the target lock (another run held it); its ``resume_run`` job took it up,
Redis admitted it (the lock now under the run's id, with a token nobody else knows), and the
worker died before ``run.admitted`` was written. The alert then resolved, and the run was
ended ``cancelled`` by a pass that did not take the lock: the resolution (the run never
admitted, as the store saw it) or the job, retried. Before, neither had a token to release
by, and the lock held the Deployment until ``guards.lock_ttl``: every later run on it waited.
Now the pass that ends a run the store never saw admitted releases the lock if that run
holds it, under whatever token. Real PostgreSQL and Redis; the death is a BaseException
nothing in the pipeline catches, raised where the admission would be written.
"""

from __future__ import annotations

from typing import Any

import pytest

from receiver.model import RunOutcome
from remediations.targets import Target
from tests.integration.test_dead_worker_lock import WorkerDied
from tests.integration.test_run_end_crash import Counts, _labels, _rule
from tests.support.leases import take_over_job
from tests.support.payloads import alert, notification
from tests.support.pipeline import Harness, MakeHarness
from tests.support.target_locks import lock_holder, taken_up_after_the_lock

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

WEB = Target("Deployment", "shop", "web")


async def _admitted_unrecorded(h: Harness, monkeypatch: pytest.MonkeyPatch) -> tuple[str, int]:
    """web-1's run waits for the lock another run holds; the lock freed, its job is taken up,
    Redis admits it and the worker dies before recording that. The run's id and the job's."""
    run, job = await taken_up_after_the_lock(h, WEB, _labels("web-1"))

    async def dies(*args: Any, **kwargs: Any) -> bool:
        raise WorkerDied("worker-a died before the admission was written")

    monkeypatch.setattr(h.store, "record_admission", dies)
    with pytest.raises(WorkerDied):
        await h.pipeline.run_job(job)
    monkeypatch.undo()
    assert await lock_holder(h) == run.id
    return run.id, job.id


@pytest.mark.parametrize("ends_it", ["the resolution", "the job, retried"])
async def test_a_run_admitted_but_not_recorded_frees_the_target_when_its_alert_resolves(
    make_harness: MakeHarness, monkeypatch: pytest.MonkeyPatch, ends_it: str
) -> None:
    counts = Counts()
    h = await make_harness(_rule(Counts.name), extra_actions=[counts], dry_run=False)
    first, job_id = await _admitted_unrecorded(h, monkeypatch)

    await h.intake.accept(notification(alert(_labels("web-1"), status="resolved")))
    if ends_it == "the job, retried":
        job = await take_over_job(h.store, job_id, "worker-b")
        assert (await h.pipeline.run_job(job)).is_done
    await h.drain()
    ended = await h.store.get_run(first)
    assert ended is not None
    assert ended.outcome is RunOutcome.CANCELLED, (ended.outcome, ended.error)
    assert counts.calls == 0
    assert await lock_holder(h) is None

    await h.deliver(_labels("web-2"))
    (second,) = [r for r in await h.runs() if r.id != first]
    assert second.outcome is RunOutcome.SUCCEEDED, (second.outcome, second.error)
    assert counts.calls == 1
