"""An undo's approval withdrawn because its alert fired again is told to the approvers by the
``finish_end`` job its withdrawal queued (receiver/store/withdrawal.py, store/finish.py).

The firing (``Store.withdraw_undo``) and a worker taking the step up (``withdraw_refired_undo``)
cancel the undo's approval and then tell the approvers in process, after the commit. The
channel answering 503 then, or the process dying in between, left the approval message saying
"waiting" for good: nothing else told them. Real PostgreSQL, Redis and a local HTTP server as
the approvers' channel (``peer``), which also holds the value the steps set.
"""

from __future__ import annotations

import pytest

from receiver.model import ApprovalState
from receiver.store import WITHDRAWN
from tests.integration.test_ended_run_finish_job import FINISH, _finish_due_now, _notices
from tests.integration.test_refire_withdraws_undo import (
    RULES,
    SetValue,
    held_approval,
    runs_in_order,
    send,
)
from tests.support.approvals import MakeApprovalEnv, Peer

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


async def test_a_withdrawn_undo_approval_is_told_by_its_job_when_the_channel_was_down(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    peer.value = 20
    env = await approval_env(rules=RULES, actions=[SetValue(peer.url)])
    store = env.harness.store
    await send(env, "firing", "2026-11-25T10:00:00Z")
    await send(env, "resolved", "2026-11-25T10:00:00Z", "2026-11-25T10:05:00Z")
    [first] = await runs_in_order(env)
    held = await held_approval(env, first)

    # The alert fires again while the channel does not answer: the firing's notice is lost.
    peer.notify_status = 503
    await send(env, "firing", "2026-11-25T10:10:00Z")
    withdrawn = await store.get_approval(held.id)
    assert withdrawn is not None
    assert withdrawn.state is ApprovalState.CANCELLED
    assert withdrawn.reason == WITHDRAWN
    assert _notices(peer, "cancelled") == []

    # The withdrawal queued its finish_end job with it: once the channel is back, it tells.
    peer.notify_status = 200
    jobs = (await store.list_jobs(run_id=first.id, kind=FINISH))[0]
    assert [j["payload"] for j in jobs] == [{f"notice:{held.id}": True}], jobs
    await _finish_due_now(store, first.id)
    await env.harness.drain()
    [notice] = _notices(peer, "cancelled")
    assert notice["approval"]["id"] == held.id
    assert "fired again" in str(notice)
    assert peer.value == 5  # nothing was undone
