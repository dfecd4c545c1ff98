"""Alert episodes through the whole pipeline on real PostgreSQL and Redis (dry-run, no cluster):
duplicates from HA peers and concurrent workers make one run an episode, a new episode is a
new run, and an episode that already resolved is never acted on."""

from __future__ import annotations

import asyncio
import dataclasses

from tests.support.payloads import alert, notification
from tests.support.pipeline import MakeHarness
from tests.support.pipeline_restart import RESTART, labels


async def test_concurrent_workers_on_duplicates_still_make_one_run(
    make_harness: MakeHarness,
) -> None:
    h = await make_harness(RESTART)
    starts = [f"2026-11-25T10:00:0{i}Z" for i in range(3)]
    # Three episodes of one alert, each delivered by two HA peers, claimed by two workers.
    for s in starts:
        for url in ("http://am-0:9093", "http://am-1:9093"):
            await h.intake.accept(notification(alert(labels(), starts_at=s), external_url=url))
    h2 = dataclasses.replace(h, owner="other-worker")
    await asyncio.gather(h.drain(), h2.drain())
    runs = await h.runs()
    assert len(runs) == 3
    assert len({(r.fingerprint, r.starts_at) for r in runs}) == 3


async def test_resolved_then_late_firing_duplicate_creates_nothing(
    make_harness: MakeHarness,
) -> None:
    h = await make_harness(RESTART)
    # Ordering is not guaranteed: the resolved notification overtakes a delayed firing one.
    await h.intake.accept(notification(alert(labels(), status="resolved")))
    await h.drain()
    result = await h.intake.accept(notification(alert(labels())))
    assert result.accepted == 1  # stored (nothing accepted is lost) ...
    await h.drain()
    assert await h.runs() == []  # ... but it is a late duplicate of a resolved episode


async def test_a_new_episode_after_resolve_is_a_new_run(make_harness: MakeHarness) -> None:
    h = await make_harness(RESTART)
    await h.intake.accept(notification(alert(labels())))
    await h.drain()
    await h.intake.accept(notification(alert(labels(), status="resolved")))
    await h.intake.accept(notification(alert(labels(), starts_at="2026-11-25T11:00:00Z")))
    await h.drain()
    runs = await h.runs()
    assert sorted(r.starts_at for r in runs) == [
        "2026-11-25T10:00:00.123456789Z",
        "2026-11-25T11:00:00Z",
    ]


async def test_a_backlog_never_acts_on_an_episode_that_already_resolved(
    make_harness: MakeHarness,
) -> None:
    h = await make_harness(RESTART)
    # The worker was behind: by the time it reaches the firing event, the resolve is stored.
    await h.intake.accept(notification(alert(labels())))
    await h.intake.accept(notification(alert(labels(), status="resolved")))
    assert await h.drain() == 2
    assert await h.runs() == []
