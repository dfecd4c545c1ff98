"""A follow-up (a run's undo; its escalation) whose target lock Redis does not take back.

Before, the undo's or the escalation's pass gave its lock back only in the pipeline's cleanup,
after it had written its end: a release Redis did not answer there (a blip; a Redis that
persists keeps the lock over its restart) was logged, and the lock held the Deployment until
``guards.lock_ttl`` (10 minutes), every run on it waiting. Now the pass is retried (its event
or job stays), and the retry gives the lock back. PostgreSQL and Redis are real; the fault is
Redis holding every write (``CLIENT PAUSE WRITE``) once the undo's step acted, or once the
escalation's last page was answered.
"""

from __future__ import annotations

import aiohttp
import pytest
import redis.asyncio
from aiohttp import web

from receiver.guards.policy import GuardSettings
from receiver.model import RunOutcome
from receiver.store import JobKind
from remediations.http.endpoints import Endpoint, HttpEndpoints
from tests.integration.test_escalation_stops import QUICK, Pager, first_run, recur
from tests.integration.test_escalation_stops import RULE as ESCALATION_RULE
from tests.integration.test_run_end_crash import Counts
from tests.support.payloads import alert, notification
from tests.support.peer import answering
from tests.support.pipeline import MakeHarness
from tests.support.target_locks import HoldsWrites, lock_holder, pass_writes_held

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


class PagerHoldingWrites(Pager):
    """``Pager`` whose manager's page (the ladder's last step), once answered, makes the real
    Redis behind ``client`` hold every write back (``CLIENT PAUSE WRITE``, as
    ``writes_held``): the rest of the escalation's pass, its lock's release, meets a Redis
    that does not answer, until the test lifts it."""

    def __init__(self, client: redis.asyncio.Redis | redis.asyncio.RedisCluster) -> None:
        super().__init__(200)
        self.client = client

    async def handle(self, request: web.Request) -> web.StreamResponse:
        response = await super().handle(request)
        if self.paged("manager") == 1 and self.bodies[-1] == {"page": "manager"}:
            await self.client.execute_command("CLIENT", "PAUSE", 60_000, "WRITE")
        return response


async def test_an_escalation_whose_lock_redis_did_not_take_back_is_retried_and_frees_it(
    make_harness: MakeHarness, redis_client: redis.asyncio.Redis
) -> None:
    """The ladder pages; Redis holds every write from the manager's page on, the release of
    the escalation's lock included (``CLIENT PAUSE WRITE``). Before, the escalation's job was
    done and the lock held the flag service's target until its TTL. Now the job is retried,
    and the retry, Redis back, gives the lock back, paging nobody again."""
    pager = PagerHoldingWrites(redis_client)
    async with aiohttp.ClientSession() as session, answering(pager.handle) as base:
        endpoints = HttpEndpoints({"flags": Endpoint("flags", f"{base}/flags", {}, QUICK)}, session)
        h = await make_harness(
            ESCALATION_RULE,
            GuardSettings(timeout_s=0.5),
            clients={"http": endpoints},
            dry_run=False,
        )
        h.store.late_delivery_window_s = 0.0  # a re-fire at once, as escalation_stops's
        await recur(h)
        # The re-fire fails the verification; the ladder's job runs, Redis holding its release.
        try:
            await h.drain()
        finally:
            await h.guards.redis.execute_command("CLIENT", "UNPAUSE")
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
