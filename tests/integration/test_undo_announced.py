"""An undo that did not happen is told to the rule's channel, once.

The real kube-apiserver (a Deployment scaled by the run, then by hand), PostgreSQL, Redis and a
local HTTP server as the rule's ``notify`` channel: the run's restore is refused because someone
else changed the count, or its namespace is no longer permitted, and the on-call engineer, who
was told the remediation ran, hears that taking it back did not happen, naming the step and the
target. A restore that works says nothing more than before; a retried resolved event does not
say it twice, and one whose first attempt died before the message says it then.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from receiver.model import NamespacePolicy
from receiver.store import EventLease
from remediations.http.post import HttpPolicy
from remediations.notify.notifier import Channel, ChannelKind, Notifier
from tests.integration.test_restores import (
    SCALE,
    backlog,
    replicas,
    resolve_steps,
    scale_by_hand,
)
from tests.support.kube_fixtures import MakeDeployment
from tests.support.leases import take_over
from tests.support.payloads import alert, notification
from tests.support.peer import Peer, peer
from tests.support.pipeline import Harness, MakeHarness

__all__ = ["peer"]

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.redis]

HOOK = "/hooks/oncall"
FAST = HttpPolicy(timeout=2.0, attempts=2, initial_wait=0.01, max_wait=0.02)


def scale_rule(events: str = "") -> str:
    """rules/queue-backlog.yaml's scale rule as shipped, without its guards, announced to
    ``oncall`` (``events``: the rest of its ``notify:``)."""
    return SCALE + f"    notify: {{channel: oncall{events}}}\n"


class WorkerDied(Exception):
    """A worker's death, at a chosen point."""


@pytest.fixture
async def notifier(peer: Peer) -> AsyncIterator[Notifier]:
    async with aiohttp.ClientSession() as session:
        channels = {"oncall": Channel("oncall", ChannelKind.WEBHOOK, peer.url(HOOK), FAST)}
        yield Notifier(channels, session, external_url="https://remediator.example")


@pytest.fixture
async def workers(make_deployment: MakeDeployment) -> None:
    await make_deployment("workers", replicas=4)


async def harness(
    make_harness: MakeHarness, kube: Any, notifier: Notifier, rules: str, **options: Any
) -> Harness:
    return await make_harness(
        rules, kube=kube, dry_run=False, clients={"notify": notifier}, **options
    )


def announced(peer: Peer) -> list[str]:
    """The events the channel received, in order."""
    return [r.body["event"] for r in peer.seen(HOOK)]


def undo_messages(peer: Peer) -> list[dict[str, Any]]:
    return [r.body for r in peer.seen(HOOK) if r.body["event"] == "undo_failed"]


async def undo_rows(h: Harness, run_id: str) -> list[dict[str, Any]]:
    """The run's ``run.announced`` audit rows of its undo."""
    return [
        a["data"]
        for a in await h.store.audit_entries(run_id)
        if a["kind"] == "run.announced" and a["data"]["event"] == "undo_failed"
    ]


@pytest.mark.usefixtures("workers")
async def test_a_restore_refused_after_a_hand_scale_is_announced_once(
    make_harness: MakeHarness,
    kube_admin: Any,
    kube_namespace: str,
    notifier: Notifier,
    peer: Peer,
) -> None:
    ns = kube_namespace
    h = await harness(make_harness, kube_admin, notifier, scale_rule())
    await h.deliver(backlog(ns, "orders"))
    assert await replicas(kube_admin, ns) == 6
    await scale_by_hand(kube_admin, ns, 12)
    # The resolution, processed by one worker, then again by another that took the event over
    # (the first never completed it): the undo is refused once and said once.
    await h.intake.accept(notification(alert(backlog(ns, "orders"), status="resolved")))
    (claimed,) = await h.store.claim_events("worker-a", 1, 30.0)
    assert (
        await h.pipeline(claimed.event, EventLease(claimed.event.id, "worker-a", claimed.attempts))
    ).is_done
    lease = await take_over(h.store, claimed.event.id, "worker-b")
    assert (await h.pipeline(claimed.event, lease)).is_done

    assert await replicas(kube_admin, ns) == 12  # left alone
    run = await h.only_run()
    ((outcome, refusal),) = resolve_steps(run)
    assert outcome == "refused"
    assert announced(peer) == ["run_started", "run_finished", "undo_failed"]
    (message,) = undo_messages(peer)
    assert message["run_id"] == run.id
    assert message["outcome"] == "refused"
    assert message["target"]["key"] == f"Deployment/{ns}/workers"
    assert message["title"] == (
        f"Remediation not undone: scale-workers-on-queue-backlog on Deployment/{ns}/workers"
    )
    text = message["text"]
    assert "on_resolved step kubernetes.scale (step 1 of the run) was refused" in text
    assert refusal.split(";")[0] in text  # why, as the restore said it: 12, not the 6 set
    assert 'not taken back: kubernetes.scale {"replicas": 4} → {"replicas": 6}' in text
    assert f"Check Deployment/{ns}/workers" in text
    (row,) = await undo_rows(h, run.id)
    assert (row["channel"], row["delivered"]) == ("oncall", True)


@pytest.mark.usefixtures("workers")
async def test_a_worker_that_dies_before_the_message_leaves_it_to_the_retry(
    make_harness: MakeHarness,
    kube_admin: Any,
    kube_namespace: str,
    notifier: Notifier,
    peer: Peer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ns = kube_namespace
    h = await harness(make_harness, kube_admin, notifier, scale_rule())
    await h.deliver(backlog(ns, "orders"))
    await scale_by_hand(kube_admin, ns, 12)
    await h.intake.accept(notification(alert(backlog(ns, "orders"), status="resolved")))
    (claimed,) = await h.store.claim_events("worker-a", 1, 30.0)

    async def dying(run_id: str, event: str) -> bool:
        raise WorkerDied("worker-a died after recording the refused restore")

    with monkeypatch.context() as patch:
        patch.setattr(h.store, "was_announced", dying)
        with pytest.raises(WorkerDied):
            await h.pipeline(
                claimed.event, EventLease(claimed.event.id, "worker-a", claimed.attempts)
            )
    assert [o for o, _ in resolve_steps(await h.only_run())] == ["refused"]
    assert "undo_failed" not in announced(peer)

    lease = await take_over(h.store, claimed.event.id, "worker-b")
    assert (await h.pipeline(claimed.event, lease)).is_done
    assert announced(peer) == ["run_started", "run_finished", "undo_failed"]
    assert len(await undo_rows(h, (await h.only_run()).id)) == 1


@pytest.mark.usefixtures("workers")
async def test_a_restore_that_works_announces_nothing_more(
    make_harness: MakeHarness,
    kube_admin: Any,
    kube_namespace: str,
    notifier: Notifier,
    peer: Peer,
) -> None:
    ns = kube_namespace
    h = await harness(make_harness, kube_admin, notifier, scale_rule())
    await h.deliver(backlog(ns, "orders"))
    await h.deliver(backlog(ns, "orders"), status="resolved")
    assert await replicas(kube_admin, ns) == 4
    assert [o for o, _ in resolve_steps(await h.only_run())] == ["ok"]
    assert announced(peer) == ["run_started", "run_finished"]


@pytest.mark.usefixtures("workers")
@pytest.mark.parametrize(
    ("events", "sent"),
    [
        pytest.param("[finished]", ["run_finished"], id="left-out"),
        pytest.param("[undo_failed]", ["undo_failed"], id="only-it"),
    ],
)
async def test_the_rules_events_pick_it_like_any_moment(
    make_harness: MakeHarness,
    kube_admin: Any,
    kube_namespace: str,
    notifier: Notifier,
    peer: Peer,
    events: str,
    sent: list[str],
) -> None:
    ns = kube_namespace
    h = await harness(make_harness, kube_admin, notifier, scale_rule(f", events: {events}"))
    await h.deliver(backlog(ns, "orders"))
    await scale_by_hand(kube_admin, ns, 12)
    await h.deliver(backlog(ns, "orders"), status="resolved")
    assert [o for o, _ in resolve_steps(await h.only_run())] == ["refused"]
    assert announced(peer) == sent


@pytest.mark.usefixtures("workers")
async def test_an_undo_the_namespace_policy_refuses_is_announced(
    make_harness: MakeHarness,
    kube_admin: Any,
    kube_namespace: str,
    notifier: Notifier,
    peer: Peer,
) -> None:
    ns = kube_namespace
    h = await harness(make_harness, kube_admin, notifier, scale_rule())
    await h.deliver(backlog(ns, "orders"))
    # The policy changed (a restart with new settings) before the alert resolved.
    denied = await harness(
        make_harness, kube_admin, notifier, scale_rule(), policy=NamespacePolicy(deny=(ns,))
    )
    await denied.deliver(backlog(ns, "orders"), status="resolved")
    assert await replicas(kube_admin, ns) == 6
    ((outcome, _),) = resolve_steps(await h.only_run())
    assert outcome == "refused"
    (message,) = undo_messages(peer)
    assert (
        "on_resolved step kubernetes.scale (step 1 of the run) was refused: refused by the "
        f"namespace guard: namespace {ns} is not permitted"
    ) in message["text"]
    assert f"Check Deployment/{ns}/workers" in message["text"]
