"""A follow-up (a run's undo; its escalation) whose target lock Redis does not take back.

Before, the undo's or the escalation's pass gave its lock back only in the pipeline's cleanup,
after it had written its end: a release Redis did not answer there (a blip; a Redis that
persists keeps the lock over its restart) was logged, and the lock held the Deployment until
``guards.lock_ttl`` (10 minutes), every run on it waiting. Now the pass is retried (its event
or job stays), and the retry gives the lock back. PostgreSQL and Redis are real; the undo's
fault is Redis holding every write once its step acted (``CLIENT PAUSE WRITE``), the
escalation's the one Redis call, the release, raising as an unreachable Redis makes it raise.
"""

from __future__ import annotations

import aiohttp
import pytest
import redis.asyncio

from receiver.guards.policy import GuardSettings
from receiver.model import RunOutcome
from receiver.store import JobKind
from tests.integration.test_escalation_stops import Pager, first_run, harness, recur
from tests.integration.test_run_end_crash import Counts
from tests.support.payloads import alert, notification
from tests.support.peer import answering
from tests.support.pipeline import MakeHarness
from tests.support.target_locks import (
    HoldsWrites,
    lock_holder,
    pass_writes_held,
    release_unreachable,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

RULE = f"""
rules:
  - name: with-undo
    match: ['alertname="HighMemoryUsage"']
    target: {{kind: Deployment, namespace: shop, name: web}}
    steps:
      - action: {Counts.name}
    on_resolved:
      - action: {Counts.name}
"""


def _labels(pod: str) -> dict[str, str]:
    # Alerts of several pods of one Deployment: their runs act on one target.
    return {"alertname": "HighMemoryUsage", "namespace": "shop", "pod": pod}


async def test_an_undo_whose_lock_redis_did_not_take_back_is_retried_and_frees_the_target(
    make_harness: MakeHarness, redis_client: redis.asyncio.Redis
) -> None:
    """The undo runs; Redis holds every write from then on, the lock's release as its pass
    gives it back included (``CLIENT PAUSE WRITE``). Before, the resolved event was done and
    the lock stayed: the next alert's run on the Deployment waited (``pending``, "target is
    locked by run <the first>"). Now the event is retried, and the retry, Redis back, gives
    the lock back without running the undo again."""
    counts = HoldsWrites(redis_client, hold_on=2)
    rule = RULE.replace(Counts.name, HoldsWrites.name)
    h = await make_harness(
        rule, GuardSettings(timeout_s=0.5), extra_actions=[counts], dry_run=False
    )
    await h.deliver(_labels("web-1"))
    run = await h.only_run()
    assert counts.calls == 1

    await h.intake.accept(notification(alert(_labels("web-1"), status="resolved")))
    disposition = await pass_writes_held(h)
    assert counts.calls == 2  # the undo ran
    assert not disposition.is_done, "the resolved event was done with the undo's lock held"
    assert "could not be given back" in (disposition.error or "")
    assert await lock_holder(h) == run.id

    await h.drain()
    assert await lock_holder(h) is None
    assert counts.calls == 2  # not undone twice
    (undo,) = [s for s in (await h.only_run()).steps if s.phase == "resolve"]
    assert undo.outcome == "ok"
    await h.deliver(_labels("web-2"))
    (second,) = [r for r in await h.runs() if r.id != run.id]
    assert second.outcome is RunOutcome.SUCCEEDED, (second.outcome, second.error)


async def test_an_escalation_whose_lock_redis_did_not_take_back_is_retried_and_frees_it(
    make_harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ladder pages; Redis does not answer as its pass gives the lock back. Before, the
    escalation's job was done and the lock held the flag service's target until its TTL.
    Now the job is retried, and the retry gives the lock back, paging nobody again."""
    pager = Pager(200)
    async with aiohttp.ClientSession() as session, answering(pager.handle) as base:
        h = await harness(make_harness, session, f"{base}/flags")
        await recur(h)
        # The re-fire fails the verification; the ladder's job runs, every release failing.
        monkeypatch.setattr(h.guards, "release", release_unreachable)
        try:
            await h.drain()
        finally:
            monkeypatch.undo()
        assert (pager.paged("oncall"), pager.paged("manager")) == (1, 1)
        run = await first_run(h)
        assert run.outcome is RunOutcome.FAILED
        assert await lock_holder(h) == run.id, "the ladder's job was done with its lock held"
        async with h.store._tx() as conn:
            jobs = await conn.fetch(
                "SELECT state, last_error FROM jobs WHERE run_id = $1::uuid AND kind = $2",
                run.id,
                JobKind.RESUME_RUN,
            )
        assert [j["state"] for j in jobs] == ["pending"], "the ladder's job was done"
        assert "could not be given back" in (jobs[0]["last_error"] or "")
        # Its job due now (not after guards_down_retry_s), Redis back.
        await h.store.enqueue_job(JobKind.RESUME_RUN, run.id, delay_s=0)
        await h.drain()
        assert await lock_holder(h) is None
        assert (pager.paged("oncall"), pager.paged("manager")) == (1, 1)
