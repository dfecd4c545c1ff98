"""A new episode of an alert that arrives without the old episode's resolution (review stop
28, finding 3), against the real kube-apiserver, through intake.

Alertmanager 0.35 replaced the resolved alert by its new firing (a later startsAt) before the
flush, so the first resolution was never sent. Before: the first run stayed open, failed
``not_resolved`` at its deadline and escalated, and its scale-back never ran: the Deployment
ended with its +2 for good. Now the new episode closes it as resolved (inferred), its undo waits
for the alert's next resolution, and both undos run then, newest first: back to the start.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from receiver.model import RunOutcome, VerifyResult
from receiver.store import RunRecord
from tests.integration.test_restores import replicas, resolve_steps
from tests.support.kube_fixtures import MakeDeployment
from tests.support.payloads import alert, notification
from tests.support.pipeline import Harness, MakeHarness

pytestmark = pytest.mark.kube

S1 = "2026-11-25T10:00:00.123456789Z"


def later() -> str:
    """The startsAt of the alert's next episode, which begins now: after S1's run acted (a
    startsAt before that would prove S1's episode ended before its run acted, which is then
    not credited to the rule: ``resolved_before_action``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rules(guards: str) -> str:
    return f"""
rules:
  - name: scale-workers
    match: ['alertname="QueueBacklog"']
    target: {{kind: Deployment, namespace: "{{{{ labels.namespace }}}}", name: workers}}
    steps:
      - action: kubernetes.scale
        params: {{delta: 2, max: 20}}
    verify: {{resolved_within: 2m}}
    on_failed:
      - action: kubernetes.scale
        params: {{delta: 5, max: 20}}
    on_resolved:
      - action: kubernetes.scale
        params: {{restore: true, max: 20}}
{guards}"""


def backlog(namespace: str) -> dict[str, str]:
    return {"alertname": "QueueBacklog", "namespace": namespace, "queue": "f"}


async def send(h: Harness, namespace: str, starts_at: str, status: str = "firing") -> None:
    """One alert in through intake as Alertmanager sends it, processed to the end."""
    await h.intake.accept(
        notification(alert(backlog(namespace), starts_at=starts_at, status=status))
    )
    await h.drain()
    assert await h.store.queue_depth() == 0


async def run_of(h: Harness, starts_at: str) -> RunRecord:
    (found,) = [r for r in await h.runs() if r.starts_at == starts_at]
    run = await h.store.get_run(found.id)
    assert run is not None
    return run


async def harness(
    make_harness: MakeHarness, kube_admin: Any, make_deployment: MakeDeployment, guards: str
) -> Harness:
    await make_deployment("workers", replicas=4)
    return await make_harness(rules(guards), kube=kube_admin, dry_run=False)


async def test_a_new_episode_without_the_old_resolution_undoes_both_when_it_resolves(
    make_harness: MakeHarness, kube_admin: Any, make_deployment: MakeDeployment, kube_namespace: str
) -> None:
    ns = kube_namespace
    h = await harness(make_harness, kube_admin, make_deployment, "")
    await send(h, ns, S1)
    s2 = later()
    assert await replicas(kube_admin, ns) == 6
    # S1 resolved in Alertmanager, which then replaced it by the new firing: no resolution.
    await send(h, ns, s2)
    assert await replicas(kube_admin, ns) == 8  # the new episode acts; S1's +2 is kept
    first = await run_of(h, S1)
    assert (first.outcome, first.verify_result) == (RunOutcome.VERIFIED, VerifyResult.VERIFIED)
    assert first.resolution_inferred_from == s2
    assert first.undo_deferred
    assert resolve_steps(first) == []  # not while the alert fires again

    await send(h, ns, s2, status="resolved")
    assert await replicas(kube_admin, ns) == 4  # where it was before the first
    first, second = await run_of(h, S1), await run_of(h, s2)
    assert not first.undo_deferred
    assert resolve_steps(second) == [
        ("ok", f"scale Deployment {ns}/workers from 8 to 6 replicas (undoing this run's +2)")
    ]
    assert resolve_steps(first) == [
        ("ok", f"scale Deployment {ns}/workers from 6 to 4 replicas (undoing this run's +2)")
    ]
    # Neither failed nor escalated; nothing fed the breaker.
    for run in (first, second):
        assert (run.outcome, run.verify_result) == (RunOutcome.VERIFIED, VerifyResult.VERIFIED)
        assert run.escalated_at is None
        assert [s for s in run.steps if s.phase == "on_failed"] == []
    assert "scale-workers" not in (await h.guards.status())["breakers"]
    audit = [a["kind"] for a in await h.store.audit_entries(first.id)]
    assert "run.undo_carried" in audit


async def test_a_new_run_refused_by_the_cooldown_keeps_the_old_capacity_until_it_resolves(
    make_harness: MakeHarness, kube_admin: Any, make_deployment: MakeDeployment, kube_namespace: str
) -> None:
    ns = kube_namespace
    h = await harness(make_harness, kube_admin, make_deployment, "    guards: {cooldown: 10m}\n")
    await send(h, ns, S1)
    s2 = later()
    await send(h, ns, s2)
    second = await run_of(h, s2)
    assert second.outcome is RunOutcome.REFUSED
    assert second.refusal_guard == "cooldown"
    # The condition is back: the first run's workers stay while it lasts.
    assert await replicas(kube_admin, ns) == 6
    await send(h, ns, s2, status="resolved")
    assert await replicas(kube_admin, ns) == 4


async def test_a_new_episode_that_no_rule_matches_any_more_still_closes_the_old_one(
    make_harness: MakeHarness, kube_admin: Any, make_deployment: MakeDeployment, kube_namespace: str
) -> None:
    """The rules changed while S1's run was open (its rule narrowed to another queue): S2's
    firing matches no rule, and intake settled it as such, so no worker saw it: S1's run stayed
    verifying (to fail not_resolved at its deadline, and escalate) though S2 proves it ended."""
    ns = kube_namespace
    h = await harness(make_harness, kube_admin, make_deployment, "")
    await send(h, ns, S1)
    s2 = later()
    assert await replicas(kube_admin, ns) == 6
    h.reload_rules(rules("").replace("""match: ['alertname="QueueBacklog"']""", "match: [queue=g]"))
    await send(h, ns, s2)
    first = await run_of(h, S1)
    assert (first.outcome, first.verify_result) == (RunOutcome.VERIFIED, VerifyResult.VERIFIED)
    assert first.resolution_inferred_from == s2
    assert first.undo_deferred
    assert [r.starts_at for r in await h.runs()] == [S1]  # S2 itself has no run

    await send(h, ns, s2, status="resolved")
    assert await replicas(kube_admin, ns) == 4
    assert not (await run_of(h, S1)).undo_deferred
