"""A step whose system cannot be reached waits for it (receiver/pipeline/unreachable.py).

The outage is a real one (tests.support.outage): the pipeline's Kubernetes client is pointed
at a port of this host where nothing listens (a socket bound and never listening: the kernel
refuses the connection), so every request of the step fails as a kube-apiserver that is down
fails it, connection refused, and nothing reaches the server. Pointed back at the real
kube-apiserver, the same client reaches it again. Items held back are due again at once
(``guards_down_retry_s`` 0), so each ``drain`` is one more try.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

import aiohttp
import pytest
from aiohttp import web as aioweb
from kubernetes_asyncio import client as k8s
from pydantic import BaseModel

from receiver.model import RunOutcome
from receiver.review.loader import Review
from receiver.review.text import at_text
from receiver.review.timeline import run_timeline
from receiver.store import DEFERRED_AUDIT
from remediations.base import ActionContext, Result, TransientActionError
from remediations.http.endpoints import Endpoint, HttpEndpoints
from remediations.http.post import HttpPolicy
from remediations.targets import Target
from tests.integration.test_approved_undo_refire import audit_kinds
from tests.integration.test_restores import SCALE, backlog, replicas
from tests.support.kube_fixtures import MakeDeployment
from tests.support.outage import Clock, Outage
from tests.support.payloads import alert, notification
from tests.support.peer import answering
from tests.support.pipeline import RESTART_WEB, Harness, MakeHarness
from tests.support.rules import Restart

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.redis]

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def web(namespace: str) -> dict[str, str]:
    return {"alertname": "HighMemoryUsage", "namespace": namespace, "deployment": "web"}


async def fire(h: Harness, labels: dict[str, str], status: str = "firing") -> None:
    """The alert in through intake, and one pass of the queue (an item held back stays)."""
    await h.intake.accept(notification(alert(labels, status=status)))
    await h.drain()


async def restarted(kube: Any, namespace: str) -> bool:
    deployment = await k8s.AppsV1Api(kube).read_namespaced_deployment("web", namespace)
    annotations = deployment.spec.template.metadata.annotations or {}
    return RESTARTED_AT in annotations


async def test_a_restart_during_an_outage_waits_and_runs_once_the_server_is_back(
    make_harness: MakeHarness,
    make_deployment: MakeDeployment,
    kube_admin: Any,
    kube_namespace: str,
    outage: Outage,
) -> None:
    ns = kube_namespace
    await make_deployment("web", replicas=1)
    h = await make_harness(RESTART_WEB, kube=outage.client, dry_run=False, guards_down_retry_s=0)
    outage.begin()
    await fire(h, web(ns))
    await h.drain()  # a second try, still refused
    run = await h.only_run()
    assert run.outcome is RunOutcome.RUNNING, run.error
    (step,) = run.steps
    assert step.outcome == "pending"
    assert step.message.startswith(
        "waiting for its system: kubernetes could not be reached (2 tries since "
    ), step.message
    assert "it did not act" in step.message
    assert step.attempts == 2
    assert await h.store.queue_depth() == 1  # the event is kept, to be tried again
    # Said once in the audit log however many tries: not a row per retry.
    deferred = await audit_kinds(h.store, run.id, DEFERRED_AUDIT)
    assert [(d["idx"], d["tries"]) for d in deferred] == [(0, 1)]
    assert not await restarted(kube_admin, ns)

    outage.end()
    await h.drain()
    run = await h.only_run()
    assert run.outcome in (RunOutcome.SUCCEEDED, RunOutcome.VERIFYING), run.error
    (step,) = run.steps
    assert step.outcome == "ok", step.message
    assert await restarted(kube_admin, ns)
    assert await h.store.queue_depth() == 0
    assert len(await audit_kinds(h.store, run.id, DEFERRED_AUDIT)) == 1


async def test_an_undo_during_an_outage_runs_after_it(
    make_harness: MakeHarness,
    make_deployment: MakeDeployment,
    kube_admin: Any,
    kube_namespace: str,
    outage: Outage,
) -> None:
    ns = kube_namespace
    await make_deployment("workers", replicas=4)
    h = await make_harness(SCALE, kube=outage.client, dry_run=False, guards_down_retry_s=0)
    await fire(h, backlog(ns, "orders"))
    assert await replicas(kube_admin, ns) == 6

    outage.begin()
    await fire(h, backlog(ns, "orders"), status="resolved")
    run = await h.only_run()
    (undo,) = [s for s in run.steps if s.phase == "resolve"]
    assert undo.outcome == "pending", undo.message
    assert undo.message.startswith("waiting for its system: kubernetes could not be reached")
    assert await replicas(kube_admin, ns) == 6  # nothing was taken back yet, nor given up

    outage.end()
    await h.drain()
    assert await replicas(kube_admin, ns) == 4
    run = await h.only_run()
    (undo,) = [s for s in run.steps if s.phase == "resolve"]
    assert undo.outcome == "ok", undo.message
    assert await h.store.queue_depth() == 0


async def test_the_wait_is_bounded_and_ends_failed_saying_how_long_and_how_often(
    make_harness: MakeHarness,
    make_deployment: MakeDeployment,
    kube_admin: Any,
    kube_namespace: str,
    outage: Outage,
) -> None:
    ns = kube_namespace
    await make_deployment("web", replicas=1)
    clock = Clock()
    h = await make_harness(
        RESTART_WEB,
        kube=outage.client,
        dry_run=False,
        guards_down_retry_s=0,
        clock=clock,
        unreachable_retry_s=60,
    )
    outage.begin()
    first = clock.now
    await fire(h, web(ns))
    clock.now += timedelta(seconds=30)
    await h.drain()
    assert (await h.only_run()).outcome is RunOutcome.RUNNING
    clock.now += timedelta(seconds=31)  # 61 s after the first try
    await h.drain()
    run = await h.only_run()
    assert run.outcome is RunOutcome.FAILED
    (step,) = run.steps
    assert step.outcome == "failed"
    assert not step.may_have_acted
    assert step.message.startswith(
        f"kubernetes could not be reached: 3 tries from {first.isoformat()} to "
        f"{clock.now.isoformat()}, the last never connected; it did not act, and this step "
        "waits at most 1m (actions.unreachable_retry_for): "
    ), step.message
    assert "ClientConnectorError" in step.message or "Connect" in step.message
    assert await h.store.queue_depth() == 0
    assert not await restarted(kube_admin, ns)


class SentAndLost(Restart):
    """A step whose request went out and whose answer never came: it may have acted."""

    name: ClassVar[str] = "test.sent_and_lost"

    def __init__(self) -> None:
        self.calls = 0

    async def run(self, ctx: ActionContext, target: Target, params: BaseModel) -> Result:
        self.calls += 1
        raise TransientActionError(
            "POST /restart: gave up after 4 attempts: TimeoutError", may_have_acted=True
        )


async def test_a_failure_that_may_have_acted_is_still_final(
    make_harness: MakeHarness, kube_namespace: str
) -> None:
    action = SentAndLost()
    rules = RESTART_WEB.replace("kubernetes.rollout_restart", action.name)
    h = await make_harness(rules, extra_actions=[action], dry_run=False, guards_down_retry_s=0)
    await fire(h, web(kube_namespace))
    await h.drain()
    run = await h.only_run()
    assert run.outcome is RunOutcome.FAILED
    (step,) = run.steps
    assert step.outcome == "failed"
    assert step.may_have_acted
    assert action.calls == 1  # never tried again
    assert await audit_kinds(h.store, run.id, DEFERRED_AUDIT) == []


FLAG_RULE = """\
rules:
  - name: checkout-flag
    match: ['alertname="CheckoutErrors"']
    target: {kind: HttpEndpoint, name: flags}
    steps:
      - action: http.call
        params: {body: {flag: checkout, enabled: false}}
        approval: never
"""
# Two tries a pass; a Retry-After of 1 s is honoured (the cap), so a pass takes a second.
THROTTLED = HttpPolicy(timeout=2.0, attempts=2, initial_wait=0.01, max_wait=0.01, max_retry_after=1)


@pytest.mark.parametrize(
    ("headers", "said"),
    [({"Retry-After": "1"}, "Retry-After 1s"), ({}, "without a Retry-After")],
)
async def test_a_system_that_answered_429_was_reached_and_refused_not_unreached(
    make_harness: MakeHarness, headers: dict[str, str], said: str
) -> None:
    """An endpoint that throttles every request (429) is waited for as an unreachable one
    (the request was refused: nothing acted), and the step that gives up says what the system
    answered, not that nothing was sent."""
    posts: list[str] = []

    async def throttle(request: aioweb.Request) -> aioweb.StreamResponse:
        posts.append(request.path)
        return aioweb.Response(status=429, text="slow down", headers=headers)

    clock = Clock()
    async with aiohttp.ClientSession() as session, answering(throttle) as url:
        endpoints = HttpEndpoints({"flags": Endpoint("flags", url, {}, THROTTLED)}, session)
        h = await make_harness(
            FLAG_RULE,
            clients={"http": endpoints},
            dry_run=False,
            guards_down_retry_s=0,
            clock=clock,
            unreachable_retry_s=60,
        )
        first = clock.now
        await fire(h, {"alertname": "CheckoutErrors", "service": "shop"})
        run = await h.only_run()
        (step,) = run.steps
        assert step.outcome == "pending", step.message
        assert step.message.startswith(
            "waiting for its system: http was reached and refused the request (1 try since "
        ), step.message
        assert len(posts) == 2

        clock.now += timedelta(seconds=61)
        await h.drain()
        run = await h.only_run()
    assert run.outcome is RunOutcome.FAILED
    (step,) = run.steps
    assert step.outcome == "failed"
    assert not step.may_have_acted
    assert step.message.startswith(
        f"http was reached and refused the request: 2 tries from {first.isoformat()} to "
        f"{clock.now.isoformat()}, the last was answered 429 Too Many Requests, {said}; it "
        "did not act, and this step waits at most 1m (actions.unreachable_retry_for): "
        "endpoint 'flags' (127.0.0.1:"
    ), step.message
    assert "could not be reached" not in step.message
    assert "nothing was sent" not in step.message
    assert len(posts) == 4


async def test_the_timeline_shows_the_retries_admissions_as_one_entry(
    make_harness: MakeHarness,
    make_deployment: MakeDeployment,
    kube_namespace: str,
    outage: Outage,
) -> None:
    """Each retry of a waiting step is a pass admitted by its guards, and each admission is
    audited (``run.admitted``: every row kept). The timeline showed "Guards passed" once per
    retry; it shows the first try's admission, the wait, and one entry for the retries'."""
    ns = kube_namespace
    await make_deployment("web", replicas=1)
    h = await make_harness(RESTART_WEB, kube=outage.client, dry_run=False, guards_down_retry_s=0)
    outage.begin()
    await fire(h, web(ns))
    await h.drain()
    await h.drain()  # three tries (the first at intake), none reached the server
    outage.end()
    await h.drain()
    run = await h.only_run()
    assert run.steps[0].outcome == "ok", run.steps[0].message

    shown = await Review(h.store).run(run.id)
    assert shown is not None
    admitted = [r.at for r in shown.audit if r.kind == "run.admitted"]
    assert len(admitted) == 4  # the audit log keeps every admission
    titles = [e.title for e in run_timeline(shown)]
    passed = [t for t in titles if t.startswith("Guards passed")]
    assert len(passed) == 2, titles  # before: 4, one per admission
    assert passed[0].startswith("Guards passed: pause, "), passed
    assert passed[1] == (
        f"{passed[0]}, again for each retry of step 1 waiting for its system: tried 3 times, "
        f"the last at {at_text(admitted[-1])}"
    ), passed
    steps = [t for t in titles if t.startswith(("Guards passed", "Step 1"))]
    assert steps[1].startswith("Step 1 (kubernetes.rollout_restart) waits for its system"), titles
    assert steps[2:] == [passed[1], "Step 1: kubernetes.rollout_restart ok"], titles
