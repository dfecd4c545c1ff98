"""A step marked ``started`` before it acts waits for its system too (pipeline.unreachable).

``http.call`` must not run twice for one step (``replay_safe`` False): it acts only once its
step is marked ``started``, and a mark left behind reads as a stopped worker's (interrupted).
A call whose every try found the endpoint down (connection refused: nothing was sent) did not
act, so the deferral clears the mark and the retry calls it. The endpoint is a real local HTTP
server whose socket is bound, and refuses connections, until the test makes it listen.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import aiohttp
import pytest
from aiohttp import web

from receiver.model import RunOutcome
from receiver.review.loader import Review
from receiver.review.text import at_text
from receiver.review.timeline import run_timeline
from receiver.store import DEFERRED_AUDIT
from remediations.http.endpoints import Endpoint, HttpEndpoints
from remediations.http.post import HttpPolicy
from tests.integration.test_approved_undo_refire import audit_kinds
from tests.support.payloads import alert, notification
from tests.support.peer import Peer
from tests.support.pipeline import MakeHarness

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

RULES = """\
rules:
  - name: flush
    match: ['alertname="CacheStale"']
    target: {kind: HttpEndpoint, name: flush}
    steps:
      - action: http.call
        params: {body: {service: "{{ labels.service }}"}}
        approval: never
"""
LABELS = {"alertname": "CacheStale", "service": "web"}
FAST = HttpPolicy(timeout=2.0, attempts=2, initial_wait=0.01, max_wait=0.01, max_retry_after=1)


@pytest.fixture
def bound() -> Iterator[socket.socket]:
    """A loopback socket bound and not listening: connections to its port are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as created:
        yield created


async def test_an_http_call_that_found_its_endpoint_down_waits_and_calls_it_once_up(
    make_harness: MakeHarness, session: aiohttp.ClientSession, bound: socket.socket
) -> None:
    port = bound.getsockname()[1]
    endpoints = HttpEndpoints(
        {"flush": Endpoint("flush", f"http://127.0.0.1:{port}/flush", {}, FAST)}, session
    )
    h = await make_harness(RULES, clients={"http": endpoints}, dry_run=False, guards_down_retry_s=0)
    await h.intake.accept(notification(alert(LABELS)))
    await h.drain()
    await h.drain()  # a second try: the first left no mark to read as interrupted
    run = await h.only_run()
    assert run.outcome is RunOutcome.RUNNING, run.error
    (step,) = run.steps
    assert step.outcome == "pending", step.message
    assert step.message.startswith(
        "waiting for its system: http could not be reached (2 tries since "
    ), step.message
    assert not step.may_have_acted
    assert await h.store.queue_depth() == 1
    # Each try's mark is audited, and so is its clearing: the step started, and did not act.
    steps = [d["outcome"] for d in await audit_kinds(h.store, run.id, "step")]
    assert steps == ["pending", "started", "started"]  # planned, then each try's mark
    deferred = await audit_kinds(h.store, run.id, DEFERRED_AUDIT)
    assert [d["tries"] for d in deferred] == [1, 2]

    peer = Peer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", peer.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    bound.listen()
    await web.SockSite(runner, bound).start()
    try:
        await h.drain()
        run = await h.only_run()
        (step,) = run.steps
        assert step.outcome == "ok", step.message
        assert run.outcome in (RunOutcome.SUCCEEDED, RunOutcome.VERIFYING), run.error
        assert len(peer.seen("/flush")) == 1  # called once, once it could be
        assert await h.store.queue_depth() == 0
    finally:
        await runner.cleanup()


async def test_a_deferral_clears_only_the_mark_of_its_own_attempt(
    make_harness: MakeHarness, session: aiohttp.ClientSession, bound: socket.socket
) -> None:
    port = bound.getsockname()[1]
    endpoints = HttpEndpoints(
        {"flush": Endpoint("flush", f"http://127.0.0.1:{port}/flush", {}, FAST)}, session
    )
    h = await make_harness(RULES, clients={"http": endpoints}, dry_run=False, guards_down_retry_s=0)
    await h.intake.accept(notification(alert(LABELS)))
    await h.drain()
    run = await h.only_run()
    (waiting,) = run.steps
    assert waiting.outcome == "pending"
    first = waiting.started_at
    assert first is not None
    # Another attempt marks the step (a worker that took the run up meanwhile).
    start = await h.store.start_step(
        run.id,
        phase="run",
        idx=0,
        action="http.call",
        attempt="other",
        what="POST",
        started_at=first + timedelta(minutes=1),
    )
    assert start.started

    async def defer(mark: str) -> bool:
        return await h.store.defer_step(
            run.id,
            phase="run",
            idx=0,
            action="http.call",
            message="waiting for its system: http could not be reached (2 tries)",
            tries=2,
            first_at=first,
            audit=False,
            mark=mark,
        )

    # A try whose own mark is not the one there leaves it: the other attempt may be acting.
    assert not await defer("started (attempt mine): POST")
    (step,) = (await h.only_run()).steps
    assert (step.outcome, step.message) == ("started", start.message)
    assert len(await audit_kinds(h.store, run.id, DEFERRED_AUDIT)) == 1  # the first try's

    assert await defer(start.message)
    (step,) = (await h.only_run()).steps
    assert step.outcome == "pending"
    assert step.started_at == first  # when the first try failed, not the mark's
    assert step.attempts == 2
    # Clearing a mark is audited, though not the step's first deferral.
    assert len(await audit_kinds(h.store, run.id, DEFERRED_AUDIT)) == 2


async def test_the_timeline_reads_a_marked_steps_tries_as_one_wait(
    make_harness: MakeHarness, session: aiohttp.ClientSession, bound: socket.socket
) -> None:
    """Each try of a marked step that waits leaves its mark's ``step`` row and a
    ``step.deferred`` row: the review's timeline folds them into one entry saying how many
    tries and since when, and shows the step's end after it as ever."""
    port = bound.getsockname()[1]
    endpoints = HttpEndpoints(
        {"flush": Endpoint("flush", f"http://127.0.0.1:{port}/flush", {}, FAST)}, session
    )
    h = await make_harness(RULES, clients={"http": endpoints}, dry_run=False, guards_down_retry_s=0)
    await h.intake.accept(notification(alert(LABELS)))
    for _ in range(3):
        await h.drain()
    run = await h.only_run()
    (step,) = run.steps
    assert step.message.startswith("waiting for its system: http could not be reached (3 tries")

    shown = await Review(h.store).run(run.id)
    assert shown is not None
    deferred = [r.at for r in shown.audit if r.kind == DEFERRED_AUDIT]
    assert len(deferred) == 3  # one a try
    first, last = deferred[0], deferred[-1]
    titles = [e.title for e in run_timeline(shown)]
    waits = [e for e in run_timeline(shown) if "waits for its system" in e.title]
    assert [e.title for e in waits] == [
        f"Step 1 (http.call) waits for its system: 3 tries since {at_text(first)}, the last "
        f"at {at_text(last)}"
    ], titles
    (wait,) = waits
    assert wait.detail.startswith(
        "waiting for its system: http could not be reached (3 tries since "
    ), wait.detail
    assert wait.detail.endswith("; the start marks of these tries (3) were cleared: none acted")
    assert "Step 1: http.call started" not in titles  # the marks of tries that did not act

    peer = Peer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", peer.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    bound.listen()
    await web.SockSite(runner, bound).start()
    try:
        await h.drain()
    finally:
        await runner.cleanup()
    shown = await Review(h.store).run(run.id)
    assert shown is not None
    titles = [e.title for e in run_timeline(shown)]
    # The try that acted: its mark and its end, after the one wait.
    assert [t for t in titles if t.startswith("Step 1")] == [
        waits[0].title,
        "Step 1: http.call started",
        "Step 1: http.call ok",
    ], titles
