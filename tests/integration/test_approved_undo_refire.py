"""An undo approved moments before its alert fires again does not run while the alert fires.

The approval was given, so the firing's history read finds no pending approval to withdraw,
and the run job the decision queued would then take the remediation back during the new
episode. The approve stage looks at the alert's stored events before the approved on_resolved
step acts (``Store.withdraw_refired_undo``): the alert fires again, so the undo is withdrawn as
a firing withdraws a pending one (the approval cancelled and announced, the step ``not_run``,
``run.undo_withdrawn`` audited) and carried to the alert's next resolution. Both orders: the
run job taken up before the stored firing is processed, and after.

Real PostgreSQL, Redis and a local HTTP peer (``tests.support.approvals``): the step sets a
value on the peer, as ``kubernetes.set_env`` sets a variable.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from receiver.approvals.policy import Identity
from receiver.approvals.state import Channel, Decision, Origin
from receiver.model import ApprovalState
from receiver.store import WITHDRAWN, JobKind, Store
from tests.integration.test_refire_withdraws_undo import (
    RULES,
    SetValue,
    held_approval,
    phases,
    runs_in_order,
    send,
)
from tests.support.approvals import ApprovalEnv, MakeApprovalEnv, Peer, poke_labels
from tests.support.payloads import alert, notification

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ALICE = Identity("alice", "operator-token", "alice")
API = Origin(Channel.API, "10.1.1.1", "pytest")


async def audit_kinds(store: Store, run_id: str, kind: str) -> list[dict[str, Any]]:
    """The data of the run's audit rows of ``kind``, in chain order."""
    rows = await store._pool.fetch(
        "SELECT data FROM audit_log WHERE run_id = $1::uuid AND kind = $2 ORDER BY id",
        run_id,
        kind,
    )
    return [json.loads(r["data"]) for r in rows]


async def take_up_jobs(env: ApprovalEnv) -> int:
    """Claim and run the due jobs only, as a worker whose claim finds the run job before the
    alert's new event: the events stay queued."""
    store = env.harness.store
    jobs = await store.claim_jobs("job-first", 50, 30.0)
    for job in jobs:
        disposition = await env.harness.pipeline.run_job(job)
        assert disposition.is_done, disposition
        await store.complete_job(job.id, "job-first")
    return len(jobs)


@pytest.mark.parametrize("job_first", [True, False], ids=["job-first", "firing-first"])
async def test_an_undo_approved_just_before_the_alert_fires_again_waits_for_its_resolution(
    approval_env: MakeApprovalEnv, peer: Peer, job_first: bool
) -> None:
    peer.value = 20
    env = await approval_env(rules=RULES, actions=[SetValue(peer.url)])
    await send(env, "firing", "2026-11-25T10:00:00Z")
    assert peer.value == 5
    await send(env, "resolved", "2026-11-25T10:00:00Z", "2026-11-25T10:05:00Z")
    [first] = await runs_in_order(env)
    approval = await held_approval(env, first)

    # Approved: the decision queues the run job that takes the undo up. Before a worker does,
    # the alert fires again (a new episode); the firing is stored, not yet processed.
    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    await env.harness.intake.accept(
        notification(alert(poke_labels(), status="firing", starts_at="2026-11-25T10:10:00Z"))
    )
    if job_first:
        assert await take_up_jobs(env) == 1
        assert peer.value == 5
    await env.harness.drain()
    assert await env.harness.store.queue_depth() == 0

    # The undo did not run: the remediation stays while the alert fires.
    assert peer.value == 5
    assert peer.sets == 1
    first, second = await runs_in_order(env)
    assert phases(second) == [(0, "run", "noop")]  # the change is still in place
    assert phases(first) == [(0, "run", "ok"), (1, "resolve", "not_run")]
    assert WITHDRAWN in first.steps[1].message
    assert first.undo_deferred
    cancelled = await env.desk.store.get_approval(approval.id)
    assert cancelled is not None
    assert cancelled.state is ApprovalState.CANCELLED
    assert cancelled.reason == WITHDRAWN
    assert cancelled.decided_by == "alice"  # who approved it stays on record
    # The approver is told why, as for a withdrawal of a pending approval.
    notices = [n for n in peer.notices if n.get("kind") == "approval.cancelled"]
    assert len(notices) == 1
    assert "fired again" in str(notices[0])
    [withdrawal] = await audit_kinds(env.harness.store, first.id, "run.undo_withdrawn")
    assert withdrawal["steps"] == [1]
    assert withdrawal["approvals"] == [approval.id]
    assert withdrawal["reason"] == WITHDRAWN

    # A retried run job withdraws nothing twice and runs nothing.
    await env.harness.store.enqueue_job(JobKind.RESUME_RUN, first.id)
    await env.harness.drain()
    assert peer.value == 5
    assert len(await audit_kinds(env.harness.store, first.id, "run.undo_withdrawn")) == 1
    assert len([n for n in peer.notices if n.get("kind") == "approval.cancelled"]) == 1

    # The new episode resolves: the carried undo asks for its approval again, and runs once.
    await send(env, "resolved", "2026-11-25T10:10:00Z", "2026-11-25T10:15:00Z")
    assert peer.value == 5
    first, _ = await runs_in_order(env)
    assert not first.undo_deferred
    carried = await held_approval(env, first)
    assert carried.id != approval.id
    await env.desk.decide(carried.id, Decision.APPROVE, ALICE, API)
    await env.harness.drain()
    assert peer.value == 20
    assert peer.sets == 2  # the remediation, and its undo once
    first, _ = await runs_in_order(env)
    assert phases(first)[-1] == (2, "resolve", "ok")
