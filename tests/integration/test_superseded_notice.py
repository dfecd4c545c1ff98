"""The approvers' notice that an approval was superseded survives the pass that superseded it
(``Store.supersede_approval``, pipeline/finish_end.py).

An approved plan the target no longer matches is superseded and asked again. The notice that
it was ("approval superseded") was sent by that pass alone: the approvers' channel answering
503 at that moment, or the process dying after the commit, lost it for good, and the message
said "approved" of a plan that will never run. Now the transaction that supersedes it queues a
``finish_end`` job that sends it when the pass could not. Real PostgreSQL, Redis, the
pipeline's worker passes and a local HTTP server as the approvers' channel.
"""

from __future__ import annotations

import pytest

from receiver.approvals.state import Decision
from receiver.model import ApprovalState, RunOutcome
from tests.integration.test_ended_run_finish_job import _finish_due_now
from tests.support.approval_deciders import ALICE, API
from tests.support.approvals import MakeApprovalEnv

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


async def test_a_superseded_approval_whose_channel_was_down_is_told_by_its_job(
    approval_env: MakeApprovalEnv,
) -> None:
    env = await approval_env()
    run, approval = await env.pending_run()
    env.peer.value = 41  # someone else changed the target after the preview
    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    env.peer.notify_status = 503
    await env.harness.drain()  # superseded and asked again; the channel takes nothing

    superseded = await env.desk.store.get_approval(approval.id)
    assert superseded is not None
    assert superseded.state is ApprovalState.SUPERSEDED
    assert (await env.harness.only_run()).outcome is RunOutcome.AWAITING_APPROVAL
    assert "approval.superseded" not in env.peer.kinds()

    env.peer.notify_status = 200
    await _finish_due_now(env.harness.store, run.id)
    await env.harness.drain()

    assert env.peer.kinds().count("approval.superseded") == 1, env.peer.kinds()
    assert env.peer.pokes == 0
