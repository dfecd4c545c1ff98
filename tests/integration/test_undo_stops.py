"""An undo ends at its first step that fails, is refused or was interrupted, as a run does.

A run's on_resolved steps after one that stopped the undo are recorded ``not_run`` ("an earlier
undo step failed"), and no later pass over the resolve runs them: not the resolved event
processed again (its lease ran out), not a ``resume_resolve`` or ``resume_run`` job of the run,
not the alert's next episode, and not the resolution that carries a deferred undo out (whose
own ``resume_resolve`` job comes after it). Before, they stayed ``pending`` and the next pass
ran them: an undo acting after its earlier step had failed, which a run never does. A worker
that died in the middle of an undo step that may run again is still taken up again, and the
undo goes on.

http.call against a real local HTTP server (a flag service: the run disables the checkout flag;
the undo enables it again, then turns the maintenance banner off), on real PostgreSQL and
Redis, the alert in through intake and resolved through it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import aiohttp
import pytest
from aiohttp import web

from receiver.store import EventLease, JobKind, RunRecord
from receiver.store.records import event_from_row
from remediations.http.endpoints import Endpoint, HttpEndpoints
from remediations.http.post import HttpPolicy
from tests.integration.test_step_crash import SafeCount, WorkerDied
from tests.support.leases import take_over
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
    guards: {cooldown: 1h}
    on_resolved:
      - action: http.call
        params: {body: {flag: checkout, enabled: true}}
        approval: never
      - action: http.call
        params: {body: {flag: banner, enabled: false}}
        approval: never
"""
LABELS = {"alertname": "CheckoutErrors", "service": "shop"}
S1, S2, S3 = "2026-11-25T10:00:00Z", "2026-11-25T10:00:07Z", "2026-11-25T11:00:00Z"
# The flag service answers at once: its answers (503, 409) are what fail a step here, never a
# timeout, so the timeout only stops a hang (2 s ran out on a busy machine and failed the
# runs that were to act). Quick retries: the second try of a 503 comes at once.
QUICK = HttpPolicy(timeout=60.0, attempts=2, initial_wait=0.01, max_wait=0.01, max_retry_after=1)
STOPPED = "not run: an earlier undo step failed"


class Flags:
    """The flag service: enabling the checkout flag is answered ``enable`` (a 503: the service
    is down; a 409: it turns the request away), every other request 200. Counts each flag's
    requests by what they set."""

    def __init__(self, enable: int) -> None:
        self.enable = enable
        self.bodies: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        self.bodies.append(body)
        if body == {"flag": "checkout", "enabled": True}:
            return web.Response(status=self.enable, text="{}")
        return web.Response(text="{}")

    def sent(self, flag: str, enabled: bool) -> int:
        return sum(1 for b in self.bodies if b == {"flag": flag, "enabled": enabled})


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as created:
        yield created


async def harness(
    make_harness: MakeHarness, session: aiohttp.ClientSession, url: str, **extra: Any
) -> Harness:
    endpoints = HttpEndpoints({"flags": Endpoint("flags", url, {}, QUICK)}, session)
    return await make_harness(RULE, clients={"http": endpoints}, dry_run=False, **extra)


async def send(h: Harness, starts_at: str, status: str = "firing") -> None:
    """One alert of episode ``starts_at`` in through intake, processed to the end."""
    await h.intake.accept(notification(alert(LABELS, starts_at=starts_at, status=status)))
    await h.drain()
    assert await h.store.queue_depth() == 0


async def first_run(h: Harness) -> RunRecord:
    """The run of episode S1, with its steps."""
    (found,) = [r for r in await h.runs() if r.starts_at == S1]
    run = await h.store.get_run(found.id)
    assert run is not None
    return run


def undo_of(run: RunRecord) -> list[tuple[int, str]]:
    return [(s.idx, s.outcome) for s in run.steps if s.phase == "resolve"]


async def resolve_trail(h: Harness, run_id: str) -> list[tuple[int, str]]:
    """The audit log's step rows of the run's resolve phase: index and outcome, in order."""
    return [
        (e["data"]["idx"], e["data"]["outcome"])
        for e in await h.store.audit_entries(run_id)
        if e["kind"] == "step" and e["data"]["phase"] == "resolve"
    ]


async def jobs_due_now(h: Harness) -> None:
    """The run jobs waiting for their time (a guard's retry, a carried undo's safety net) are
    due: the pass they make is the one under test."""
    async with h.store._tx() as conn:
        await conn.execute("UPDATE jobs SET not_before = now() WHERE state = 'pending'")


async def take_up_every_way(h: Harness, run_id: str, resolution: str = S1) -> None:
    """Every pass that takes a closed run's resolve up again: its resolved event processed
    again (a worker's lease ran out before the event was completed), a ``resume_resolve`` job
    and a ``resume_run`` job of the run, and the alert's next episode, firing and resolving.
    ``resolution``: the episode whose resolved event closed the run's undo."""
    # The resolution processed again, as a worker does once another's lease on it ran out.
    async with h.store._tx() as conn:
        event_id = await conn.fetchval(
            "SELECT id FROM alert_events WHERE status = 'resolved' AND starts_at = $1",
            resolution,
        )
    row = await h.store.get_event(event_id)
    assert row is not None
    assert (await h.pipeline(event_from_row(row))).is_done
    await h.store.enqueue_job(JobKind.RESUME_RESOLVE, run_id, delay_s=0)
    await h.store.enqueue_job(JobKind.RESUME_RUN, run_id, delay_s=0)
    await h.drain()
    await send(h, S3)
    await send(h, S3, status="resolved")


@pytest.mark.parametrize(
    ("enable", "outcome"), [(503, "failed"), (409, "refused")], ids=["fails", "is refused"]
)
async def test_the_undo_ends_at_a_step_that_fails_and_no_later_pass_runs_the_rest(
    make_harness: MakeHarness, session: aiohttp.ClientSession, enable: int, outcome: str
) -> None:
    flags = Flags(enable)
    async with answering(flags.handle) as base:
        h = await harness(make_harness, session, f"{base}/flags")
        await send(h, S1)
        await send(h, S1, status="resolved")

        run = await first_run(h)
        assert undo_of(run) == [(1, outcome), (2, "not_run")]
        later = run.steps[-1]
        assert later.message.startswith(STOPPED)
        assert f"step 1 (http.call) {outcome}" in later.message
        assert flags.sent("banner", enabled=False) == 0

        await take_up_every_way(h, run.id)

    after = await first_run(h)
    assert undo_of(after) == [(1, outcome), (2, "not_run")]
    assert flags.sent("banner", enabled=False) == 0
    # Recorded once: the later passes changed nothing.
    assert await resolve_trail(h, run.id) == [
        (1, "pending"),
        (2, "pending"),
        (1, "started"),
        (1, outcome),
        (2, "not_run"),
    ]
    assert after.outcome == run.outcome
    (stop,) = [
        e["data"] for e in await h.store.audit_entries(run.id) if e["kind"] == "run.undo_stopped"
    ]
    assert stop == {"step": 1, "action": "http.call", "outcome": outcome, "not_run": [2]}


async def test_a_carried_undo_ends_at_a_step_that_fails(
    make_harness: MakeHarness, session: aiohttp.ClientSession
) -> None:
    # S1's run acts; S2 fires (S1's resolution was lost): S1's run is closed with its undo
    # deferred, S2's run refused by the cooldown. S2 resolves: S1's undo is carried out, and
    # its first step meets the flag service down.
    flags = Flags(503)
    async with answering(flags.handle) as base:
        h = await harness(make_harness, session, f"{base}/flags")
        await send(h, S1)
        await send(h, S2)
        assert (await first_run(h)).steps[-1].phase == "run"  # deferred: nothing recorded yet
        await send(h, S2, status="resolved")

        run = await first_run(h)
        assert undo_of(run) == [(1, "failed"), (2, "not_run")]
        assert run.steps[-1].message.startswith(STOPPED)
        assert flags.sent("checkout", enabled=True) == 2  # two tries
        # The carry's own resume_resolve job, due when the pass it guards should have ended.
        await jobs_due_now(h)
        await h.drain()
        await take_up_every_way(h, run.id, resolution=S2)

    after = await first_run(h)
    assert undo_of(after) == [(1, "failed"), (2, "not_run")]
    assert flags.sent("banner", enabled=False) == 0
    assert flags.sent("checkout", enabled=True) == 2  # the failed step is not tried again
    audit = [e["kind"] for e in await h.store.audit_entries(run.id)]
    assert audit.count("run.undo_carried") == 1


async def test_an_undo_step_a_worker_died_in_that_must_not_act_twice_ends_the_undo(
    make_harness: MakeHarness, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Worker A enables the flag and dies before recording it. http.call must not act twice:
    # worker B, taking the resolution up, records it interrupted, and the undo ends there.
    flags = Flags(200)
    async with answering(flags.handle) as base:
        h = await harness(make_harness, session, f"{base}/flags")
        await send(h, S1)
        await h.intake.accept(notification(alert(LABELS, starts_at=S1, status="resolved")))
        (claimed,) = await h.store.claim_events("worker-a", 1, 30.0)
        record_step = h.store.record_step

        async def dying(run_id: str, **fields: Any) -> None:
            if fields.get("phase") == "resolve" and fields["outcome"] not in ("pending",):
                raise WorkerDied("worker-a died before recording the undo step")
            await record_step(run_id, **fields)

        monkeypatch.setattr(h.store, "record_step", dying)
        with pytest.raises(WorkerDied):
            await h.pipeline(
                claimed.event, EventLease(claimed.event.id, "worker-a", claimed.attempts)
            )
        monkeypatch.setattr(h.store, "record_step", record_step)
        assert flags.sent("checkout", enabled=True) == 1
        taken = await take_over(h.store, claimed.event.id, "worker-b")
        assert (await h.pipeline(claimed.event, taken)).is_done
        # Worker B's drain completes the event under the claim it took over.
        assert await h.store.complete_event(claimed.event.id, "worker-b", taken.attempts)

        run = await first_run(h)
        assert undo_of(run) == [(1, "interrupted"), (2, "not_run")]
        assert "step 1 (http.call) interrupted" in run.steps[-1].message
        await take_up_every_way(h, run.id)

    assert flags.sent("checkout", enabled=True) == 1
    assert flags.sent("banner", enabled=False) == 0
    assert undo_of(await first_run(h)) == [(1, "interrupted"), (2, "not_run")]


class TakeBack(SafeCount):
    """An undo step safe to call again (as the Kubernetes actions are: a write record on the
    object makes the second call a no-op)."""

    name: ClassVar[str] = "test.take_back"


class Tidy(SafeCount):
    """The undo step after it."""

    name: ClassVar[str] = "test.tidy"


REPLAYED = """
rules:
  - name: once
    match: ['alertname="HighMemoryUsage"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: test.safe_count
    on_resolved:
      - action: test.take_back
      - action: test.tidy
"""


async def test_a_worker_that_died_in_an_undo_step_safe_to_replay_is_taken_up_and_goes_on(
    make_harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not a stopped undo: worker A took the step back and died before recording it; the step
    # may run again, so worker B runs it and the undo goes on to its next step.
    take_back, tidy = TakeBack(), Tidy()
    h = await make_harness(REPLAYED, dry_run=False, extra_actions=[SafeCount(), take_back, tidy])
    labels = {"alertname": "HighMemoryUsage", "namespace": "shop", "deployment": "web"}
    await h.deliver(labels)
    await h.intake.accept(notification(alert(labels, status="resolved")))
    (claimed,) = await h.store.claim_events("worker-a", 1, 30.0)
    record_step = h.store.record_step

    async def dying(run_id: str, **fields: Any) -> None:
        if fields["action"] == TakeBack.name and fields["outcome"] != "pending":
            raise WorkerDied("worker-a died before recording the undo step")
        await record_step(run_id, **fields)

    monkeypatch.setattr(h.store, "record_step", dying)
    with pytest.raises(WorkerDied):
        await h.pipeline(claimed.event, EventLease(claimed.event.id, "worker-a", claimed.attempts))
    monkeypatch.setattr(h.store, "record_step", record_step)
    assert (take_back.calls, tidy.calls) == (1, 0)
    assert (
        await h.pipeline(claimed.event, await take_over(h.store, claimed.event.id, "worker-b"))
    ).is_done

    assert (take_back.calls, tidy.calls) == (2, 1)
    run = await h.only_run()
    assert undo_of(run) == [(1, "ok"), (2, "ok")]
    kinds = [e["kind"] for e in await h.store.audit_entries(run.id)]
    assert "run.undo_stopped" not in kinds


async def test_a_worker_that_died_before_ending_the_undo_leaves_nothing_to_run(
    make_harness: MakeHarness, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Worker A records the failed step and dies before it ends the undo: worker B, taking the
    # resolution up, finds the failed step and ends the undo there, without running the rest.
    flags = Flags(503)
    async with answering(flags.handle) as base:
        h = await harness(make_harness, session, f"{base}/flags")
        await send(h, S1)
        await h.intake.accept(notification(alert(LABELS, starts_at=S1, status="resolved")))
        (claimed,) = await h.store.claim_events("worker-a", 1, 30.0)
        stop_undo = h.store.stop_undo

        async def dying(run_id: str) -> list[int]:
            raise WorkerDied("worker-a died before ending the undo")

        monkeypatch.setattr(h.store, "stop_undo", dying)
        with pytest.raises(WorkerDied):
            await h.pipeline(
                claimed.event, EventLease(claimed.event.id, "worker-a", claimed.attempts)
            )
        monkeypatch.setattr(h.store, "stop_undo", stop_undo)
        assert undo_of(await first_run(h)) == [(1, "failed"), (2, "pending")]
        taken = await take_over(h.store, claimed.event.id, "worker-b")
        assert (await h.pipeline(claimed.event, taken)).is_done
        assert await h.store.complete_event(claimed.event.id, "worker-b", taken.attempts)

    run = await first_run(h)
    assert undo_of(run) == [(1, "failed"), (2, "not_run")]
    assert run.steps[-1].message.startswith(STOPPED)
    assert flags.sent("banner", enabled=False) == 0
    assert flags.sent("checkout", enabled=True) == 2  # the failed step is not tried again


async def test_an_undo_that_stopped_is_not_planned_again_when_carried(
    make_harness: MakeHarness, session: aiohttp.ClientSession
) -> None:
    # A run whose undo stopped and was then deferred all the same: what a release before this
    # one could leave (it asked for an approval of a step after the failed one, and a firing
    # withdrew that). The resolution that carries the undo plans none of it again: its first
    # step would call the flag service a third time, and the second would follow.
    flags = Flags(503)
    async with answering(flags.handle) as base:
        h = await harness(make_harness, session, f"{base}/flags")
        await send(h, S1)
        await send(h, S1, status="resolved")
        run = await first_run(h)
        async with h.store._tx() as conn:
            await conn.execute("UPDATE runs SET undo_deferred = true WHERE id = $1::uuid", run.id)
        await send(h, S2)
        await send(h, S2, status="resolved")
        await jobs_due_now(h)
        await h.drain()

    after = await first_run(h)
    assert undo_of(after) == [(1, "failed"), (2, "not_run")]
    assert not after.undo_deferred
    assert flags.sent("checkout", enabled=True) == 2
    assert flags.sent("banner", enabled=False) == 0
    (carried,) = [
        e["data"] for e in await h.store.audit_entries(run.id) if e["kind"] == "run.undo_carried"
    ]
    assert (carried["steps"], carried["stopped_at"]) == (0, 1)
