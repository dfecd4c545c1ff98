"""Approval notices over a channel that misbehaves: what each request carries (the run id and an
Idempotency-Key a receiver can drop a retry or a notice sent again on), and a decision answered
while its notice is still on its way to a channel that does not answer (Slack takes a button's
answer within 3 seconds). Real PostgreSQL, Redis and local HTTP server (``tests.support``)."""

from __future__ import annotations

import asyncio

from receiver.approvals.messages import NoticeKind
from receiver.approvals.notify import REQUEST_RETRY_S
from receiver.approvals.state import Decision
from receiver.model import ApprovalState
from receiver.store import JobKind
from tests.support.approval_deciders import ALICE, API
from tests.support.approvals import MakeApprovalEnv, Peer
from tests.support.polling import current, eventually

# How long Slack waits for the answer to a button's click before it shows the clicker an
# error ("operation timed out"), seconds.
SLACK_ANSWER_S = 3.0


async def test_a_notice_carries_the_run_and_one_key_across_retries_and_sends(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    env = await approval_env()
    run, approval = await env.pending_run()
    [requested] = peer.notice_headers
    assert requested["X-Remediator-Run-Id"] == run.id
    key = requested["Idempotency-Key"]
    assert key.startswith(f"{run.id}-ops-")

    # Sent again (as after a crash before its notification.sent row; its link signed anew),
    # and retried after 503s: the same notice, the same key.
    peer.notify_status = 503
    await env.desk.notify(NoticeKind.REQUESTED, approval)
    retried = peer.notice_headers[1:]
    assert len(retried) == 3  # the channel's three attempts
    assert {h["Idempotency-Key"] for h in retried} == {key}

    # Another notice of the same approval is another message.
    peer.notify_status = 200
    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    decided = peer.notice_headers[-1]
    assert decided["X-Remediator-Run-Id"] == run.id
    assert decided["Idempotency-Key"].startswith(f"{run.id}-ops-")
    assert decided["Idempotency-Key"] != key


async def test_a_decision_is_answered_while_its_notice_waits_for_the_channel(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    env = await approval_env()
    run, approval = await env.pending_run()
    hold = peer.notify_hold = asyncio.Event()
    peer.notify_reached.clear()  # the request's notice came in already
    deciding = asyncio.create_task(env.desk.decide(approval.id, Decision.APPROVE, ALICE, API))
    try:
        # Before: the answer waited for the channel's three attempts of 5 s each.
        decided = await asyncio.wait_for(asyncio.shield(deciding), SLACK_ANSWER_S)
        assert decided.state is ApprovalState.APPROVED
        assert peer.notify_reached.is_set()  # the notice went out before the answer
    finally:
        hold.set()
        await asyncio.gather(deciding, return_exceptions=True)

    # The notice goes on after the answer: the channel gets it, and the audit log says so.
    await eventually(current(peer.kinds), lambda kinds: "approval.approved" in kinds)

    async def sent() -> list[str]:
        audit = await env.harness.store.audit_entries(run.id)
        return [e["data"]["notice"] for e in audit if e["kind"] == "notification.sent"]

    await eventually(sent, lambda notices: "approval approved" in notices, what="audited")


async def test_a_retry_after_date_past_any_calendar_is_a_wait_and_the_request_stands(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    """A 503 whose Retry-After is an HTTP date no calendar holds (year 99999999999) raised
    OverflowError out of the notice's send: not a NotifyError, so the approval's request
    escaped the desk (which never raises for a channel) and failed the pass that asked for
    it, with no audit row of the notice. It is read as no Retry-After: retried, then audited
    as not delivered, and the approval waits as ever."""
    env = await approval_env()
    peer.notify_status = 503
    peer.notify_retry_after = "Mon, 01 Jan 99999999999 00:00:00 GMT"

    run, approval = await env.pending_run()

    assert approval.state is ApprovalState.PENDING
    assert len(peer.notice_headers) == 3  # the channel's three attempts
    audit = await env.harness.store.audit_entries(run.id)
    [failed] = [e["data"] for e in audit if e["kind"] == "notification.failed"]
    assert failed["notice"] == "approval requested"
    assert "gave up after 3 attempts: HTTP 503" in failed["error"]


async def test_a_request_the_channel_did_not_take_is_sent_again_once_it_answers(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    """Three 503s in the second the request was made (the sender's attempts: a Slack blip)
    lost it for good: nothing sent it again while it was pending (only a pass taken up again
    after a crash looked), so nobody was asked, and the first the approvers heard of it was
    its expiry, 30 minutes later. Its run is woken ``REQUEST_RETRY_S`` later and sends it
    once the channel takes it; once sent, not again."""
    env = await approval_env()
    store = env.harness.store
    peer.notify_status = 503

    run, approval = await env.pending_run()
    assert peer.kinds() == []  # the channel took nothing
    # The wake is queued for soon, not for the expiry alone.
    due = await store.next_job_due()
    assert due is not None
    assert (due - await store.server_now()).total_seconds() <= REQUEST_RETRY_S
    peer.notify_status = 200

    # Its time come (made due now: the queue keeps the earlier time), the wake sends it.
    await store.enqueue_job(JobKind.RESUME_RUN, run.id)
    await env.harness.drain()
    assert peer.kinds() == ["approval.requested"]
    [request] = peer.notices
    assert request["approval"]["id"] == approval.id
    assert request["link"]  # signed anew: the approvers decide from it

    # Sent: a later wake (the expiry's, early) does not send it again, nor queue a retry.
    await store.enqueue_job(JobKind.RESUME_RUN, run.id)
    await env.harness.drain()
    assert peer.kinds() == ["approval.requested"]
    pending = await store.get_approval(approval.id)
    assert pending is not None
    assert pending.state is ApprovalState.PENDING
    due = await store.next_job_due()
    assert due is not None
    assert (due - await store.server_now()).total_seconds() > REQUEST_RETRY_S  # the expiry
