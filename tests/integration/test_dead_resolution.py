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
look fails the run.

Real PostgreSQL and Redis; the store's failure is a real database trigger.
"""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest

from receiver.model import RunOutcome, VerifyResult
from receiver.store import EventLease, RunRecord
from tests.support.payloads import alert, notification
from tests.support.pipeline import Harness, MakeHarness
from tests.support.rules import Restart

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

LABELS = {"alertname": "HighMemoryUsage", "namespace": "shop", "deployment": "web"}
RULES = """
rules:
  - name: restart
    match: ['alertname="HighMemoryUsage"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: test.restart
    verify: {resolved_within: 10m}
    on_failed:
      - action: test.restart
"""


async def _dead_resolution(make_harness: MakeHarness) -> tuple[Harness, RunRecord, int]:
    """A verifying run whose deadline has passed, and its alert's resolution (dated 30 s before
    that deadline) delivered and dead: closing the run failed on its only attempt. Returns the
    harness, the run and the dead event's id."""
    h = await make_harness(RULES, dry_run=False, extra_actions=[Restart()])
    await h.deliver(LABELS)
    run = await h.only_run()
    assert run.outcome is RunOutcome.VERIFYING
    # As if the run had begun three minutes ago and its deadline had passed a minute ago.
    await h.store._pool.execute(
        """UPDATE runs SET created_at = created_at - interval '3 minutes',
                          verify_deadline = remediator_now() - interval '1 minute'
           WHERE id = $1::uuid""",
        run.id,
    )
    run = await h.only_run()
    assert run.verify_deadline is not None
    ends_at = (run.verify_deadline - timedelta(seconds=30)).astimezone(UTC)
    async with h.store._pool.acquire() as conn:
        await conn.execute(
            """CREATE FUNCTION refuse_close() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN RAISE EXCEPTION 'the store failed'; END; $$;
               CREATE TRIGGER refuse_close BEFORE UPDATE ON runs
               FOR EACH ROW WHEN (NEW.resolved_at IS NOT NULL)
               EXECUTE FUNCTION refuse_close();"""
        )
    resolved = alert(LABELS, status="resolved", ends_at=ends_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    await h.intake.accept(notification(resolved))
    (claimed,) = await h.store.claim_events("replica-a", 1, 30.0)
    with pytest.raises(Exception, match="the store failed"):
        await h.pipeline(claimed.event, EventLease(claimed.event.id, "replica-a"))
    dead = await h.store.fail_event(
        claimed.event.id, "replica-a", "the store failed", delay_s=0, max_failures=1
    )
    assert dead == "dead"
    async with h.store._pool.acquire() as conn:
        await conn.execute("DROP TRIGGER refuse_close ON runs; DROP FUNCTION refuse_close()")
    # The verification's deadline job comes due now.
    await _deadline_due(h, run.id)
    await h.drain()
    return h, run, claimed.event.id


async def _deadline_due(h: Harness, run_id: str) -> None:
    """The run's verification deadline job is due now."""
    await h.store._pool.execute(
        """UPDATE jobs SET not_before = remediator_now()
           WHERE run_id = $1::uuid AND kind = 'verify_deadline' AND state = 'pending'""",
        run_id,
    )


async def test_a_dead_resolution_retried_by_the_operator_verifies_the_run(
    make_harness: MakeHarness,
) -> None:
    h, run, event_id = await _dead_resolution(make_harness)
    waiting = await h.only_run()
    # The deadline has passed, but a resolution is stored: no verdict yet, no ladder.
    assert waiting.outcome is RunOutcome.VERIFYING, waiting
    assert waiting.resolved_at is None
    assert [s.phase for s in waiting.steps] == ["run"]

    await h.store.retry_item("event", event_id, actor="ops", reason="the store is back")
    await h.drain()
    done = await h.only_run()
    assert (done.outcome, done.verify_result) == (RunOutcome.VERIFIED, VerifyResult.VERIFIED)
    assert done.resolved_at is not None
    assert done.verify_deadline is not None
    assert done.resolved_at == done.verify_deadline - timedelta(seconds=30)
    assert done.error is None
    assert [s.phase for s in done.steps] == ["run"]  # no escalation
    # The deadline job, when it comes again, finds nothing to do.
    await _deadline_due(h, run.id)
    await h.drain()
    assert (await h.only_run()).outcome is RunOutcome.VERIFIED
    assert await h.store.queue_depth() == 0


async def test_a_dead_resolution_dropped_by_the_operator_no_longer_holds_the_verdict(
    make_harness: MakeHarness,
) -> None:
    h, run, event_id = await _dead_resolution(make_harness)
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
