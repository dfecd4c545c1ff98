"""A resolution that was delivered in time but whose event went dead (its attempts used up: the
store failed under it) does not fail the run's verification, and the operator's retry ends the
run as a normal resolution would.

The resolution is stored, so the alert resolved (``RESOLVED_SQL`` counts a resolution stored
and not yet taken up, for approvals and parked runs alike), but only taking it up stamps the
run's ``resolved_at``. Before, the verification's deadline job saw no ``resolved_at``, failed
the run ``not_resolved`` and climbed its escalation ladder on an alert that had resolved; the
retried event then found the verdict given and kept it ("its resolution ... was delivered only
at ..., after the deadline and its delivery grace: the verdict stands"), though it had been
delivered in time. Now the deadline waits while a resolution of the run's episode is stored
and not taken up (pending, being taken up, or dead until an operator retries or drops it), and
the retried event verifies the run. Dropped instead, the resolution no longer counts: the next
look fails the run. A run still parked (waiting for the target lock) whose resolution went dead
is ended by its job, which asks the store rather than the run's ``resolved_at``; before, its
step acted when the lock freed.

Real PostgreSQL and Redis; the store's failure is a real database trigger.
"""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Any

import pytest

from receiver.guards.policy import AdmissionRequest
from receiver.model import GuardSpec, RunOutcome, VerifyResult
from receiver.store import EventLease, RunRecord
from remediations.targets import Target
from tests.support.approvals import POKE_RULE_HEAD, MakeApprovalEnv, Peer, poke_labels
from tests.support.payloads import alert, notification
from tests.support.pipeline import RESTART_WEB, Harness, MakeHarness
from tests.support.polling import eventually

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

LABELS = {"alertname": "HighMemoryUsage", "namespace": "shop", "deployment": "web"}
# The poke changes something (a counter on the peer), so its on_resolved step is planned.
RULES = (
    POKE_RULE_HEAD
    + """    steps:
      - action: test.poke
        approval: never
    verify: {resolved_within: 10m}
    on_resolved:
      - action: test.poke
        approval: never
    on_failed:
      - action: test.poke
        approval: never
"""
)


async def _dead_resolution(approval_env: MakeApprovalEnv) -> tuple[Harness, RunRecord, int]:
    """A verifying run whose deadline has passed, and its alert's resolution (dated 30 s before
    that deadline) delivered and dead: closing the run failed on its only attempt. Returns the
    harness, the run and the dead event's id."""
    h = (await approval_env(rules=RULES)).harness
    await h.deliver(poke_labels())
    run = await h.only_run()
    assert run.outcome is RunOutcome.VERIFYING
    # As if the run had begun three minutes ago (its step too: a resolution dated before the
    # step acted would not be credited to it) and its deadline had passed a minute ago.
    await h.store._pool.execute(
        """UPDATE runs SET created_at = created_at - interval '3 minutes',
                          started_at = started_at - interval '3 minutes',
                          verify_deadline = remediator_now() - interval '1 minute'
           WHERE id = $1::uuid""",
        run.id,
    )
    await h.store._pool.execute(
        "UPDATE steps SET started_at = started_at - interval '3 minutes' WHERE run_id = $1::uuid",
        run.id,
    )
    run = await h.only_run()
    assert run.verify_deadline is not None
    ends_at = (run.verify_deadline - timedelta(seconds=30)).astimezone(UTC)
    ends = ends_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    resolved = alert(poke_labels(), status="resolved", ends_at=ends)
    event_id = await _resolution_dies(h, resolved)
    # The verification's deadline job comes due now.
    await _deadline_due(h, run.id)
    await h.drain()
    return h, run, event_id


async def _resolution_dies(h: Harness, resolved: dict[str, Any]) -> int:
    """Deliver ``resolved``; closing its run fails (a database trigger) on the event's only
    attempt, which leaves it dead; then the fault goes away. Returns the event's id."""
    async with h.store._pool.acquire() as conn:
        await conn.execute(
            """CREATE FUNCTION refuse_close() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN RAISE EXCEPTION 'the store failed'; END; $$;
               CREATE TRIGGER refuse_close BEFORE UPDATE ON runs
               FOR EACH ROW WHEN (NEW.resolved_at IS NOT NULL)
               EXECUTE FUNCTION refuse_close();"""
        )
    await h.intake.accept(notification(resolved))
    (claimed,) = await h.store.claim_events("replica-a", 1, 30.0)
    with pytest.raises(Exception, match="the store failed"):
        await h.pipeline(claimed.event, EventLease(claimed.event.id, "replica-a", claimed.attempts))
    dead = await h.store.fail_event(
        claimed.event.id,
        "replica-a",
        claimed.attempts,
        "the store failed",
        delay_s=0,
        max_failures=1,
    )
    assert dead == "dead"
    async with h.store._pool.acquire() as conn:
        await conn.execute("DROP TRIGGER refuse_close ON runs; DROP FUNCTION refuse_close()")
    return claimed.event.id


async def _drained(h: Harness) -> RunRecord:
    await h.drain()
    return await h.only_run()


async def _deadline_due(h: Harness, run_id: str) -> None:
    """The run's verification deadline job is due now."""
    await h.store._pool.execute(
        """UPDATE jobs SET not_before = remediator_now()
           WHERE run_id = $1::uuid AND kind = 'verify_deadline' AND state = 'pending'""",
        run_id,
    )


async def test_a_dead_resolution_retried_by_the_operator_verifies_the_run(
    approval_env: MakeApprovalEnv, peer: Peer
) -> None:
    h, run, event_id = await _dead_resolution(approval_env)
    waiting = await h.only_run()
    # The deadline has passed, but a resolution is stored: no verdict yet, no ladder.
    assert waiting.outcome is RunOutcome.VERIFYING, waiting
    assert waiting.resolved_at is None
    # Its undo, recorded by the failed attempt before the close, waits for the resolution.
    assert [(s.phase, s.outcome) for s in waiting.steps] == [("run", "ok"), ("resolve", "pending")]
    assert peer.pokes == 1

    await h.store.retry_item("event", event_id, actor="ops", reason="the store is back")
    await h.drain()
    done = await h.only_run()
    assert (done.outcome, done.verify_result) == (RunOutcome.VERIFIED, VerifyResult.VERIFIED)
    assert done.resolved_at is not None
    assert done.verify_deadline is not None
    assert done.resolved_at == done.verify_deadline - timedelta(seconds=30)
    assert done.error is None
    # Its undo ran, as on time; no escalation.
    assert [(s.phase, s.outcome) for s in done.steps] == [("run", "ok"), ("resolve", "ok")]
    assert peer.pokes == 2
    # The deadline job, when it comes again, finds nothing to do.
    await _deadline_due(h, run.id)
    await h.drain()
    assert (await h.only_run()).outcome is RunOutcome.VERIFIED
    assert await h.store.queue_depth() == 0


async def test_a_dead_resolution_dropped_by_the_operator_no_longer_holds_the_verdict(
    approval_env: MakeApprovalEnv,
) -> None:
    h, run, event_id = await _dead_resolution(approval_env)
    assert (await h.only_run()).outcome is RunOutcome.VERIFYING

    await h.store.drop_item("event", event_id, actor="ops", reason="not wanted")
    await _deadline_due(h, run.id)
    await h.drain()
    failed = await h.only_run()
    assert (failed.outcome, failed.verify_result) == (
        RunOutcome.FAILED,
        VerifyResult.NOT_RESOLVED,
    )
    assert failed.resolved_at is None


async def test_a_waiting_run_whose_resolution_went_dead_does_not_act_when_its_job_comes(
    make_harness: MakeHarness,
) -> None:
    """A run waiting for the target lock, whose alert's resolution went dead before it could
    end the run: the lock's job took the run up by its ``resolved_at`` alone, found none, and
    its step acted on an alert that had resolved. Now the job asks the store, which counts a
    resolution stored and not taken up (``RESOLVED_SQL``), and ends the run ``cancelled``; the
    operator's retry then closes it as a normal resolution would."""
    h = await make_harness(RESTART_WEB, lock_wait_s=0.2)
    target = Target("Deployment", "shop", "web")
    other = AdmissionRequest(
        "00000000-0000-0000-0000-00000000abcd", "other", target, disruptive=False, spec=GuardSpec()
    )
    held = await h.guards.admit(other)
    assert held.admitted
    await h.deliver(LABELS)
    waiting = await h.only_run()
    assert waiting.outcome is RunOutcome.PENDING
    event_id = await _resolution_dies(h, alert(LABELS, status="resolved"))
    assert (await h.only_run()).outcome is RunOutcome.PENDING

    # The lock is free: the job comes and finds the alert resolved.
    await h.guards.release(other, held)
    run = await eventually(lambda: _drained(h), lambda r: r.outcome is not RunOutcome.PENDING)
    assert run.outcome is RunOutcome.CANCELLED, run
    assert [s.outcome for s in run.steps] == ["not_run"]
    assert run.started_at is None

    await h.store.retry_item("event", event_id, actor="ops", reason="the store is back")
    await h.drain()
    closed = await h.only_run()
    assert closed.outcome is RunOutcome.CANCELLED
    assert closed.resolved_at is not None
    assert await h.store.queue_depth() == 0
