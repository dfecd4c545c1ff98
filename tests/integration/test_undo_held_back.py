"""A carried undo's safety-net job never runs beside the live pass that runs the undo, and
still takes over from a pass that died.

The alert's first episode S1 acts (an HTTP POST) and is closed by a later episode S2 with its
undo deferred; S2 resolves, and that pass carries S1's run's undo (``Store.carry_undo``): an
``http.call`` step, with a ``resume_resolve`` job due ``resolve_retry_s`` later to finish it
should the pass stop. The undo's request is held by the local HTTP server until the test lets
it go, so the step outlasts ``resolve_retry_s``. Before, the job then came due and a second
worker took it up while the first was still in the step: it found the step ``started`` and
recorded it ``interrupted`` (the undo ended, announced ``undo_failed``). Now the pass keeps the job
in the future while it runs (``pipeline.holdback``); a pass cancelled in the step (its worker
died) lets it come due again within about ``resolve_retry_s``.

Real PostgreSQL, Redis and a local HTTP server.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from receiver.model import Disposition
from receiver.store import ClaimedJob, EventLease, JobKind, RunRecord
from remediations.base import Outcome
from remediations.http.endpoints import Endpoint, HttpEndpoints
from remediations.http.post import HttpPolicy
from remediations.notify.notifier import Channel, ChannelKind, Notifier
from tests.support.payloads import alert, notification
from tests.support.peer import answering
from tests.support.pipeline import Harness, MakeHarness
from tests.support.polling import eventually

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

S1 = "2026-12-01T10:00:00Z"
S2 = "2026-12-01T10:00:07Z"
LABELS = {"alertname": "CacheStale", "service": "shop"}
# Short, so that the step below outlasts it within a test's time.
RETRY_S = 1.0

RULE = """\
rules:
  - name: flush-cache
    match: ['alertname="CacheStale"']
    target: {kind: HttpEndpoint, name: sink}
    steps:
      - action: http.call
        params: {body: {step: act}}
        approval: never
    notify: {channel: oncall}
"""
WITH_UNDO = (
    RULE
    + """    on_resolved:
      - action: http.call
        params: {body: {step: undo}}
        approval: never
"""
)
# Long enough for a held request; one attempt, so a request is never sent twice by a retry.
PATIENT = HttpPolicy(timeout=30.0, attempts=1, initial_wait=0.01, max_wait=0.05, max_retry_after=1)


@dataclass
class Sink:
    """The HTTP server: answers the run's step at once; holds each undo request until
    ``release`` is set, counting them in ``undos``; keeps the announcements' events (the
    rule's channel posts to it too)."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    undos: int = 0
    announced: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = json.loads(await request.text())
        if "event" in body:
            self.announced.append(str(body["event"]))
        elif body.get("step") == "undo":
            self.undos += 1
            self.arrived.set()
            await self.release.wait()
        return web.json_response({})


@pytest.fixture
async def session(sink: tuple[Sink, str]) -> AsyncIterator[aiohttp.ClientSession]:
    # After the server (it depends on it), so closed before it: the server's cleanup then
    # has no keep-alive connection of ours to wait for.
    async with aiohttp.ClientSession() as created:
        yield created


@pytest.fixture
async def sink() -> AsyncIterator[tuple[Sink, str]]:
    created = Sink()
    async with answering(created.handle) as base:
        try:
            yield created, base
        finally:
            created.release.set()  # a request still held lets the server close at once


async def carried_undo_running(
    make_harness: MakeHarness, sink: tuple[Sink, str], session: aiohttp.ClientSession
) -> tuple[Harness, RunRecord, asyncio.Task[Disposition]]:
    """S1 acts, S2 closes its run (undo deferred), S2 resolves: worker A's pass of that
    resolution is left inside S1's run's carried undo step. Returns the harness, S1's run and
    worker A's pass."""
    server, base = sink
    endpoints = HttpEndpoints({"sink": Endpoint("sink", base, {}, PATIENT)}, session)
    notifier = Notifier(
        {"oncall": Channel("oncall", ChannelKind.WEBHOOK, f"{base}/hook", PATIENT)},
        session,
        external_url="https://remediator.example",
    )
    h = await make_harness(
        WITH_UNDO,
        clients={"http": endpoints, "notify": notifier},
        dry_run=False,
        resolve_retry_s=RETRY_S,
    )
    await h.intake.accept(notification(alert(LABELS, starts_at=S1)))
    await h.drain()
    # S2's run has no undo of its own: the only undo is S1's, carried.
    h.reload_rules(RULE)
    await h.intake.accept(notification(alert(LABELS, starts_at=S2)))
    await h.drain()
    (first,) = [r for r in await h.runs() if r.starts_at == S1]
    assert (await h.store.get_run(first.id) or first).undo_deferred
    await h.intake.accept(notification(alert(LABELS, starts_at=S2, status="resolved")))
    (claimed,) = await h.store.claim_events("worker-a", 10, 30.0)
    passing = asyncio.create_task(
        h.pipeline(claimed.event, EventLease(claimed.event.id, "worker-a", claimed.attempts))
    )
    await asyncio.wait_for(server.arrived.wait(), 10.0)
    return h, first, passing


async def safety_net(h: Harness, run_id: str) -> dict[str, Any]:
    """The run's resume_resolve job, with its queue state."""
    async with h.store._pool.acquire() as conn:
        job_id = await conn.fetchval(
            "SELECT id FROM jobs WHERE kind = $1 AND run_id = $2::uuid",
            str(JobKind.RESUME_RESOLVE),
            run_id,
        )
    assert job_id is not None
    job = await h.store.get_job(job_id)
    assert job is not None
    return job


async def past(h: Harness, job: dict[str, Any], by_s: float) -> None:
    """Wait until the database clock is ``by_s`` seconds past the job's due time as read."""
    due = job["not_before"] + timedelta(seconds=by_s)
    await eventually(h.store.server_now, lambda now: now > due, what="the job's due time")


async def undo_of(h: Harness, run_id: str) -> list[str]:
    """The outcomes of the run's resolve steps."""
    run = await h.store.get_run(run_id)
    assert run is not None
    return [s.outcome for s in run.steps if s.phase == "resolve"]


async def test_a_live_undo_pass_keeps_its_safety_net_job_from_coming_due(
    make_harness: MakeHarness, sink: tuple[Sink, str], session: aiohttp.ClientSession
) -> None:
    server, _ = sink
    h, first, passing = await carried_undo_running(make_harness, sink, session)
    written = await safety_net(h, first.id)
    assert written["state"] == "pending"
    # Well past the time the job was written to be due, worker A still in the step ...
    await past(h, written, RETRY_S)
    assert not passing.done()
    # ... another worker finds nothing to take up: the job is still ahead.
    assert await h.store.claim_jobs("worker-b", 10, 30.0) == []
    held = await safety_net(h, first.id)
    assert held["state"] == "pending"
    assert held["not_before"] > await h.store.server_now()

    server.release.set()
    assert (await passing).is_done
    assert server.undos == 1  # the step ran once
    assert await undo_of(h, first.id) == [Outcome.OK]  # never recorded interrupted
    assert "undo_failed" not in server.announced


async def test_the_safety_net_job_takes_over_from_a_pass_whose_worker_died(
    make_harness: MakeHarness, sink: tuple[Sink, str], session: aiohttp.ClientSession
) -> None:
    server, _ = sink
    h, first, passing = await carried_undo_running(make_harness, sink, session)
    # Held back while worker A lives, past the time it was written to be due ...
    await past(h, await safety_net(h, first.id), RETRY_S)
    assert await h.store.claim_jobs("worker-b", 10, 30.0) == []
    # ... then worker A dies inside the step.
    passing.cancel()
    await asyncio.wait([passing])
    died = await h.store.server_now()

    async def claim() -> list[ClaimedJob]:
        return await h.store.claim_jobs("worker-b", 10, 30.0)

    (job,) = await eventually(claim, timeout_s=RETRY_S * 10, what="the job coming due")
    assert job.kind is JobKind.RESUME_RESOLVE
    assert job.run_id == first.id
    # Within about resolve_retry_s of the death (a beat may have come just before it; the
    # rest is room for a loaded machine).
    assert await h.store.server_now() - died <= timedelta(seconds=RETRY_S * 3)
    assert (await h.pipeline.run_job(job)).is_done
    assert await h.store.complete_job(job.id, "worker-b", job.attempts)
    # Worker A stopped in the step: it may have acted, and is not run a second time.
    assert await undo_of(h, first.id) == [Outcome.INTERRUPTED]
    assert server.undos == 1
    assert server.announced.count("undo_failed") == 1
