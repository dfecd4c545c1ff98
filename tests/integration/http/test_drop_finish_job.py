"""What follows a drop's end is durable, and off the drop's answer (pipeline/finish_end.py).

An operator's drop of the job a run waited on ends the run and its approvals in its own
transaction. The budget slot the run never used, and the approvers' notice that its approval is
cancelled, were given and sent by the HTTP drop after that commit: a crash between the two lost
both (the slot spent for the budget's window, the approval message "waiting" for good), an
approvers' channel down lost the notice (logged once, never sent again), and a slow channel
held the drop's answer as long as it took. Now a ``finish_end`` job, queued in the drop's
transaction, does both, retried until they are done, and a retry gives nothing back twice nor
tells the approvers twice. Real PostgreSQL, Redis, the pipeline's worker passes, and a local
HTTP server as the approvers' channel (``peer``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from receiver.guards.policy import GuardSettings
from receiver.http.approvals import ApprovalWeb
from receiver.model import RunOutcome
from receiver.store import JobKind, RunRecord, Store
from tests.integration.test_approval_budget import RULES
from tests.integration.test_dropped_resume_jobs import open_job
from tests.support.approvals import (
    ApprovalEnv,
    DisruptivePoke,
    MakeApprovalEnv,
    Peer,
    budget_slots,
    poke_labels,
)
from tests.support.http import OPERATOR, Client, MakeClient
from tests.support.leases import take_over_job

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

# The kind as the store names it (a literal: the tests also run against the code before it).
FINISH = "finish_end"


async def parked(approval_env: MakeApprovalEnv, peer: Peer) -> tuple[ApprovalEnv, RunRecord, int]:
    """A disruptive run parked at its approval, its admission holding the budget's one slot;
    the env, the run and its ``resume_run`` job (the one the operator drops)."""
    env = await approval_env(
        rules=RULES,
        actions=[DisruptivePoke(peer.url)],
        guard_settings=GuardSettings(budget_count=1),
    )
    await env.harness.deliver(poke_labels("api"))
    [run] = await env.harness.runs()
    assert run.outcome is RunOutcome.AWAITING_APPROVAL
    assert await budget_slots(env) == [run.id]
    return env, run, await open_job(env.harness.store, run.id, JobKind.RESUME_RUN)


def cancelled(peer: Peer) -> list[dict[str, Any]]:
    """The cancelled notices the approvers' channel took."""
    return [n for n in peer.notices if n.get("kind") == "approval.cancelled"]


async def finish_jobs(store: Store, run_id: str) -> list[dict[str, Any]]:
    """The run's ``finish_end`` jobs, in any state."""
    rows, _ = await store.list_jobs(run_id=run_id, kind=FINISH)
    return rows


async def due_now(store: Store, run_id: str) -> None:
    """Make the run's pending ``finish_end`` job due now (a retry waits ``NOTICE_RETRY_S``):
    asking for it again keeps the earlier due time."""
    async with store._pool.acquire() as conn:
        await conn.execute(
            "UPDATE jobs SET not_before = remediator_now()"
            " WHERE run_id = $1::uuid AND kind = $2 AND state = 'pending'",
            run_id,
            FINISH,
        )


async def drop(client: Client, job_id: int) -> dict[str, Any]:
    response = await client.post(
        f"/api/v1/jobs/{job_id}/drop", headers=OPERATOR, json={"reason": "stale"}
    )
    assert response.status == 200, await response.text()
    job: dict[str, Any] = (await response.json())["job"]
    return job


async def test_with_the_channel_down_the_notice_goes_out_once_it_is_back(
    approval_env: MakeApprovalEnv, peer: Peer, make_client: MakeClient
) -> None:
    env, run, job_id = await parked(approval_env, peer)
    client = await make_client(
        approvals=ApprovalWeb(env.desk, env.identities), locks=env.harness.guards
    )
    peer.notify_status = 503

    job = await drop(client, job_id)

    assert job["run_ended"] == "cancelled"
    await env.harness.drain()  # a worker: the slot comes back, the channel takes nothing
    assert await budget_slots(env) == []
    assert cancelled(peer) == []
    [waiting] = await finish_jobs(env.harness.store, run.id)
    assert waiting["state"] == "pending"
    assert "the approvers' notice of approval" in waiting["last_error"]

    peer.notify_status = 200
    await due_now(env.harness.store, run.id)
    await env.harness.drain()

    [notice] = cancelled(peer)
    assert notice["approval"]["id"] == job["approvals_cancelled"][0]
    assert f"its resume_run job {job_id} was dropped by alice (stale)" in notice["text"]
    [done] = await finish_jobs(env.harness.store, run.id)
    assert done["state"] == "done"


async def test_a_slow_channel_does_not_hold_the_drop_answer(
    approval_env: MakeApprovalEnv, peer: Peer, make_client: MakeClient
) -> None:
    env, _, job_id = await parked(approval_env, peer)
    client = await make_client(
        approvals=ApprovalWeb(env.desk, env.identities), locks=env.harness.guards
    )
    hold = peer.notify_hold = asyncio.Event()
    peer.notify_reached.clear()  # the request's notice came in already
    answered = asyncio.create_task(drop(client, job_id))
    reached = asyncio.create_task(peer.notify_reached.wait())
    try:
        done, _ = await asyncio.wait({answered, reached}, return_when=asyncio.FIRST_COMPLETED)
        # Before: the answer waited for the channel, which waits for ``hold``.
        assert answered in done, "the drop's answer waited for the approvers' channel"
        assert answered.result()["run_ended"] == "cancelled"
    finally:
        hold.set()
        await asyncio.gather(answered, return_exceptions=True)
        reached.cancel()

    await env.harness.drain()

    [notice] = cancelled(peer)
    assert f"its resume_run job {job_id} was dropped by alice (stale)" in notice["text"]
    assert await budget_slots(env) == []


async def test_nothing_after_the_commit_ran_and_a_worker_still_finishes(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    """The drop committed, and its process died before anything else (the store's drop alone,
    as the HTTP drop calls it first): a worker gives the slot back and tells the approvers."""
    env, _, job_id = await parked(approval_env, peer)

    await env.harness.store.drop_job(job_id, actor="alice", reason="stale")
    await env.harness.drain()

    assert await budget_slots(env) == []
    [notice] = cancelled(peer)
    assert f"its resume_run job {job_id} was dropped by alice (stale)" in notice["text"]


async def test_a_worker_that_died_in_the_job_gives_nothing_back_twice(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    """Worker a does the job's work and dies before completing it; another run takes the slot
    freed; worker b, taking the job over, neither gives that run's slot back nor tells the
    approvers again (the slot is the run's id in the budget's set; the notice is audited)."""
    env, run, job_id = await parked(approval_env, peer)
    store = env.harness.store
    await store.drop_job(job_id, actor="alice", reason="stale")
    [claim] = await store.claim_jobs("worker-a", 1, 30.0)
    assert (claim.kind, claim.run_id) == (FINISH, run.id)
    assert (await env.harness.pipeline.run_job(claim)).is_done
    # worker-a dies here, its claim not completed.
    assert await budget_slots(env) == []
    await env.harness.deliver(poke_labels("web"))
    [second] = [r for r in await env.harness.runs() if r.target.name == "web"]
    assert await budget_slots(env) == [second.id]

    again = await take_over_job(store, claim.id, "worker-b")
    assert (await env.harness.pipeline.run_job(again)).is_done
    assert await store.complete_job(again.id, "worker-b", again.attempts)

    assert await budget_slots(env) == [second.id]
    assert len(cancelled(peer)) == 1
    sent = [
        a
        for a in await store.audit_entries(run.id)
        if a["kind"] == "notification.sent" and a["data"]["notice"] == "approval cancelled"
    ]
    assert len(sent) == 1
