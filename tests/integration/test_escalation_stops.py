"""An escalation ends at its first step that fails, is refused or was interrupted, as a run does.

A run whose verification failed runs its rule's ``on_failed`` steps (the escalation ladder); the
ones after a step that stopped the ladder are recorded ``not_run`` ("an earlier escalation step
failed"), and no later pass over the escalation runs them: not a ``resume_run`` job of the run
(an approval's decision, an undo's, or the escalation's own job claimed again after a worker's
lease ran out), not the re-fire that failed it processed again, not a ``resume_resolve`` job,
not the alert's next episode. Before, they stayed ``pending`` and the next ``resume_run`` job ran
them: the second rung of a ladder climbed after the first had failed. A worker that died in the
middle of an escalation step that may run again is still taken up again, and the ladder goes on.

http.call against a real local HTTP server (a flag service and its pager: the run disables the
checkout flag; the ladder pages the on-call engineer, then their manager), on real PostgreSQL and
Redis, the alert in through intake: it resolves and fires again while settling (``recurred``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import aiohttp
import pytest
from aiohttp import web

from receiver.model import RunOutcome, VerifyResult
from receiver.store import ClaimedJob, EventLease, JobKind, RunRecord
from receiver.store.records import event_from_row
from remediations.http.endpoints import Endpoint, HttpEndpoints
from remediations.http.post import HttpPolicy
from tests.integration.test_step_crash import SafeCount, WorkerDied
from tests.support.leases import take_over_job
from tests.support.payloads import alert, notification
from tests.support.peer import answering
from tests.support.pipeline import Harness, MakeHarness

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

RULE = """\
rules:
  - name: checkout-flag
    match: ['alertname="CheckoutErrors"']
    target: {kind: HttpEndpoint, name: flags}
    steps:
      - action: http.call
        params: {body: {flag: checkout, enabled: false}}
        approval: never
    verify: {resolved_within: 10m, settle: 1h}
    guards: {cooldown: 1h}
    on_failed:
      - action: http.call
        params: {body: {page: oncall}}
        approval: never
      - action: http.call
        params: {body: {page: manager}}
        approval: never
"""
LABELS = {"alertname": "CheckoutErrors", "service": "shop"}
S1, S3 = "2026-11-25T10:00:00Z", "2026-11-25T11:00:00Z"
QUICK = HttpPolicy(timeout=2.0, attempts=2, initial_wait=0.01, max_wait=0.01, max_retry_after=1)
STOPPED = "not run: an earlier escalation step failed"


class Pager:
    """The flag service with its pager: paging the on-call engineer is answered ``oncall`` (a
    503: the pager is down; a 409: it turns the page away), every other request 200. Keeps
    every request's body."""

    def __init__(self, oncall: int) -> None:
        self.oncall = oncall
        self.bodies: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        self.bodies.append(body)
        if body == {"page": "oncall"}:
            return web.Response(status=self.oncall, text="{}")
        return web.Response(text="{}")

    def paged(self, who: str) -> int:
        return sum(1 for b in self.bodies if b == {"page": who})


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as created:
        yield created


async def harness(make_harness: MakeHarness, session: aiohttp.ClientSession, url: str) -> Harness:
    endpoints = HttpEndpoints({"flags": Endpoint("flags", url, {}, QUICK)}, session)
    h = await make_harness(RULE, clients={"http": endpoints}, dry_run=False)
    # A firing of the same startsAt after its resolution is a re-fire at once (no late copies).
    h.store.late_delivery_window_s = 0.0
    return h


async def send(h: Harness, starts_at: str, status: str = "firing") -> None:
    """One alert of episode ``starts_at`` in through intake, processed to the end."""
    await h.intake.accept(notification(alert(LABELS, starts_at=starts_at, status=status)))
    await h.drain()
    assert await h.store.queue_depth() == 0


async def recur(h: Harness) -> None:
    """S1 fires, the run acts and verifies; S1 resolves (settling) and fires again: the
    verification failed (recurred), and the ladder's ``resume_run`` job is left queued."""
    await send(h, S1)
    await send(h, S1, status="resolved")
    await h.intake.accept(notification(alert(LABELS, starts_at=S1)))


async def first_run(h: Harness) -> RunRecord:
    """The run of S1's first occurrence, with its steps."""
    (found,) = [r for r in await h.runs() if r.starts_at == S1 and r.refire == 0]
    run = await h.store.get_run(found.id)
    assert run is not None
    return run


def ladder_of(run: RunRecord) -> list[tuple[int, str]]:
    return [(s.idx, s.outcome) for s in run.steps if s.phase == "on_failed"]


async def ladder_trail(h: Harness, run_id: str) -> list[tuple[int, str]]:
    """The audit log's step rows of the run's on_failed phase: index and outcome, in order."""
    return [
        (e["data"]["idx"], e["data"]["outcome"])
        for e in await h.store.audit_entries(run_id)
        if e["kind"] == "step" and e["data"]["phase"] == "on_failed"
    ]


async def take_up_every_way(h: Harness, run_id: str) -> None:
    """Every pass that takes a failed run's escalation up again: the re-fire that failed it
    processed again (a worker's lease on it ran out), a ``resume_run`` job of the run (what an
    approval's decision wakes, and the escalation's own job claimed again), a
    ``resume_resolve`` job, and the alert's next episode, firing and resolving."""
    async with h.store._tx() as conn:
        event_id = await conn.fetchval(
            """SELECT id FROM alert_events WHERE status = 'firing' AND starts_at = $1
               ORDER BY refire DESC LIMIT 1""",
            S1,
        )
    row = await h.store.get_event(event_id)
    assert row is not None
    assert (await h.pipeline(event_from_row(row))).is_done
    await h.store.enqueue_job(JobKind.RESUME_RUN, run_id, delay_s=0)
    await h.store.enqueue_job(JobKind.RESUME_RESOLVE, run_id, delay_s=0)
    await h.drain()
    await h.store.enqueue_job(JobKind.RESUME_RUN, run_id, delay_s=0)
    await h.drain()
    await send(h, S3)
    await send(h, S3, status="resolved")


@pytest.mark.parametrize(
    ("oncall", "outcome"), [(503, "failed"), (409, "refused")], ids=["fails", "is refused"]
)
async def test_the_escalation_ends_at_a_step_that_fails_and_no_later_pass_runs_the_rest(
    make_harness: MakeHarness, session: aiohttp.ClientSession, oncall: int, outcome: str
) -> None:
    pager = Pager(oncall)
    async with answering(pager.handle) as base:
        h = await harness(make_harness, session, f"{base}/flags")
        await recur(h)
        await h.drain()

        run = await first_run(h)
        assert (run.outcome, run.verify_result) == (RunOutcome.FAILED, VerifyResult.RECURRED)
        assert ladder_of(run) == [(1, outcome), (2, "not_run")]
        later = run.steps[-1]
        assert later.message.startswith(STOPPED)
        assert f"step 1 (http.call) {outcome}" in later.message
        assert pager.paged("manager") == 0
        tries = pager.paged("oncall")

        await take_up_every_way(h, run.id)

    after = await first_run(h)
    assert ladder_of(after) == [(1, outcome), (2, "not_run")]
    assert pager.paged("manager") == 0
    assert pager.paged("oncall") == tries  # the failed step is not tried again either
    # Recorded once: the later passes changed nothing.
    assert await ladder_trail(h, run.id) == [
        (1, "pending"),
        (2, "pending"),
        (1, "started"),
        (1, outcome),
        (2, "not_run"),
    ]
    assert (after.outcome, after.verify_result) == (RunOutcome.FAILED, VerifyResult.RECURRED)
    (stop,) = [
        e["data"]
        for e in await h.store.audit_entries(run.id)
        if e["kind"] == "run.escalation_stopped"
    ]
    assert stop == {"step": 1, "action": "http.call", "outcome": outcome, "not_run": [2]}


async def claim_ladder(h: Harness) -> ClaimedJob:
    """Worker A processes the re-fire (the verification fails) and claims the escalation's
    ``resume_run`` job it queued."""
    (claimed,) = await h.store.claim_events("worker-a", 10, 30.0)
    assert (
        await h.pipeline(claimed.event, EventLease(claimed.event.id, "worker-a", claimed.attempts))
    ).is_done
    await h.store.complete_event(claimed.event.id, "worker-a", claimed.attempts)
    (job,) = await h.store.claim_jobs("worker-a", 10, 30.0)
    assert job.kind is JobKind.RESUME_RUN
    return job


async def die_in_ladder(
    h: Harness, monkeypatch: pytest.MonkeyPatch, job: ClaimedJob, *, after: bool
) -> None:
    """Worker A runs the escalation's job and dies at the end of its first step: before
    recording it (``after`` False: the step may have acted), or just after (the step's record
    is written, the ladder not ended). Worker B then takes the same job up (A's lease ran
    out) and completes it."""
    record_step = h.store.record_step

    async def dying(run_id: str, **fields: Any) -> None:
        ending = (fields["phase"], fields["idx"]) == ("on_failed", 1) and fields["outcome"] not in (
            "pending",
            "started",
        )
        if ending and not after:
            raise WorkerDied("worker-a died before recording the escalation step")
        await record_step(run_id, **fields)
        if ending:
            raise WorkerDied("worker-a died after recording the escalation step")

    monkeypatch.setattr(h.store, "record_step", dying)
    with pytest.raises(WorkerDied):
        await h.pipeline.run_job(job)
    monkeypatch.setattr(h.store, "record_step", record_step)
    taken = await take_over_job(h.store, job.id, "worker-b")
    assert (await h.pipeline.run_job(taken)).is_done
    assert await h.store.complete_job(job.id, "worker-b", taken.attempts)


async def test_a_worker_that_died_before_ending_the_escalation_leaves_nothing_to_run(
    make_harness: MakeHarness, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Worker A records the failed page and dies before it ends the ladder: worker B, taking
    # the job up, finds the failed step and ends the ladder there, without paging the manager.
    pager = Pager(503)
    async with answering(pager.handle) as base:
        h = await harness(make_harness, session, f"{base}/flags")
        await recur(h)
        job = await claim_ladder(h)
        await die_in_ladder(h, monkeypatch, job, after=True)

        run = await first_run(h)
        assert ladder_of(run) == [(1, "failed"), (2, "not_run")]
        assert run.steps[-1].message.startswith(STOPPED)
        await take_up_every_way(h, run.id)

    assert ladder_of(await first_run(h)) == [(1, "failed"), (2, "not_run")]
    assert pager.paged("manager") == 0
    assert pager.paged("oncall") == 2  # two tries, once: the failed step is not tried again


async def test_an_escalation_step_a_worker_died_in_that_must_not_act_twice_ends_it(
    make_harness: MakeHarness, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Worker A pages the on-call engineer and dies before recording it. http.call must not act
    # twice: worker B records it interrupted, and the ladder ends there.
    pager = Pager(200)
    async with answering(pager.handle) as base:
        h = await harness(make_harness, session, f"{base}/flags")
        await recur(h)
        job = await claim_ladder(h)
        await die_in_ladder(h, monkeypatch, job, after=False)

        run = await first_run(h)
        assert ladder_of(run) == [(1, "interrupted"), (2, "not_run")]
        assert "step 1 (http.call) interrupted" in run.steps[-1].message
        await take_up_every_way(h, run.id)

    assert ladder_of(await first_run(h)) == [(1, "interrupted"), (2, "not_run")]
    assert pager.paged("oncall") == 1
    assert pager.paged("manager") == 0


class Page(SafeCount):
    """An escalation step safe to call again (as the Kubernetes actions are)."""

    name: ClassVar[str] = "test.page"


class FollowUp(SafeCount):
    """The escalation step after it."""

    name: ClassVar[str] = "test.follow_up"


REPLAYED = """
rules:
  - name: once
    match: ['alertname="HighMemoryUsage"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: test.safe_count
    verify: {resolved_within: 10m, settle: 1h}
    on_failed:
      - action: test.page
      - action: test.follow_up
"""


async def test_a_worker_that_died_in_an_escalation_step_safe_to_replay_is_taken_up_and_goes_on(
    make_harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not a stopped ladder: worker A paged and died before recording it; the step may run
    # again, so worker B runs it and the ladder goes on to its next step.
    page, follow_up = Page(), FollowUp()
    h = await make_harness(REPLAYED, dry_run=False, extra_actions=[SafeCount(), page, follow_up])
    h.store.late_delivery_window_s = 0.0
    labels = {"alertname": "HighMemoryUsage", "namespace": "shop", "deployment": "web"}
    await h.deliver(labels)
    await h.deliver(labels, status="resolved")
    await h.intake.accept(notification(alert(labels)))
    job = await claim_ladder(h)
    await die_in_ladder(h, monkeypatch, job, after=False)

    assert (page.calls, follow_up.calls) == (2, 1)
    (run,) = [r for r in await h.runs() if r.refire == 0]
    stored = await h.store.get_run(run.id)
    assert stored is not None
    assert ladder_of(stored) == [(1, "ok"), (2, "ok")]
    kinds = [e["kind"] for e in await h.store.audit_entries(run.id)]
    assert "run.escalation_stopped" not in kinds
