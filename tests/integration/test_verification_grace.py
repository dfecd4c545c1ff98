"""The delivery grace after a verification deadline (review stop 28, finding 2), through
intake, on real PostgreSQL and Redis, with a real local HTTP server as the channel.

Alertmanager sends a resolution at the group's next flush after the alert's ``endsAt``
(``group_interval``, plus retries): one dated inside the window can arrive after the deadline.
Before: the deadline job failed the run at the deadline itself (not_resolved, on_failed run,
breaker fed), and the resolution was then recorded beside that verdict. Now the job waits the
grace while no resolution is stored.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from receiver.model import RunOutcome, VerifyResult
from receiver.store import RunRecord
from remediations.notify.notifier import Notifier
from tests.support.payloads import alert, notification
from tests.support.peer import Peer, peer
from tests.support.pipeline import Harness, MakeHarness
from tests.support.polling import eventually
from tests.support.verification import (
    BREAKER,
    HOOK,
    LADDER,
    counter,
    drained,
    events,
    harness,
    labels,
    notifier,
    rules,
)

__all__ = ["notifier", "peer"]


def stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def past_deadline(h: Harness) -> RunRecord:
    """Drain (a due deadline job runs) until the run's deadline has passed on the store's
    clock, the time its deadline was set by."""

    async def probe() -> tuple[RunRecord, datetime]:
        await h.drain()
        now = await h.store._pool.fetchval("SELECT remediator_now()")
        return await h.only_run(), now

    run, _ = await eventually(
        probe,
        lambda found: found[0].verify_deadline is not None and found[1] > found[0].verify_deadline,
    )
    return run


async def test_a_resolution_dated_in_time_and_delivered_after_the_deadline_verifies(
    make_harness: MakeHarness, notifier: Notifier, peer: Peer
) -> None:
    h = await harness(
        make_harness,
        notifier,
        rules("{resolved_within: 1s}", on_failed=LADDER),
        guard_settings=BREAKER,
    )
    h.store.verify_grace_s = 60.0
    await h.deliver(labels())
    run = await past_deadline(h)
    assert run.outcome is RunOutcome.VERIFYING  # within the grace: not failed
    # The alert resolved half a second after the steps; Alertmanager sends it a flush later.
    ends = run.created_at + timedelta(seconds=0.5)
    await h.intake.accept(notification(alert(labels(), status="resolved", ends_at=stamp(ends))))
    await h.drain()
    run = await h.only_run()
    assert (run.outcome, run.verify_result) == (RunOutcome.VERIFIED, VerifyResult.VERIFIED)
    assert run.resolved_at == ends
    assert run.error is None
    assert [s.phase for s in run.steps] == ["run"]  # no on_failed step
    assert run.escalated_at is None
    assert "restart" not in (await h.guards.status())["breakers"]
    assert counter(h, "remediator_verifications_total", rule="restart", result="not_resolved") == 0
    assert counter(h, "remediator_verifications_total", rule="restart", result="verified") == 1
    assert "verification_failed" not in [e for e, _ in events(peer)]


async def test_no_resolution_within_the_grace_fails_saying_so(
    make_harness: MakeHarness, notifier: Notifier, peer: Peer
) -> None:
    h = await harness(make_harness, notifier, rules("{resolved_within: 1s}"))
    h.store.verify_grace_s = 1.0
    await h.deliver(labels())
    run = await drained(h, lambda r: r.outcome is RunOutcome.FAILED)
    assert run.verify_result is VerifyResult.NOT_RESOLVED
    assert run.error is not None
    assert "no resolution came within the delivery grace of 1s after it" in run.error
    assert run.verify_deadline is not None
    assert run.finished_at is not None
    assert run.finished_at >= run.verify_deadline + timedelta(seconds=1)
    assert ("verification_failed", "failed") in events(peer)
    assert peer.seen(HOOK)


async def test_a_resolution_in_time_delivered_after_the_grace_keeps_the_verdict_and_says_so(
    make_harness: MakeHarness, notifier: Notifier
) -> None:
    h = await harness(make_harness, notifier, rules("{resolved_within: 1s}"))
    await h.deliver(labels())  # no grace (the store fixture's): it fails at its deadline
    run = await drained(h, lambda r: r.outcome is RunOutcome.FAILED)
    ends = run.created_at + timedelta(seconds=0.5)
    await h.intake.accept(notification(alert(labels(), status="resolved", ends_at=stamp(ends))))
    await h.drain()
    run = await h.only_run()
    assert (run.outcome, run.verify_result) == (RunOutcome.FAILED, VerifyResult.NOT_RESOLVED)
    assert run.resolved_at == ends
    assert run.error is not None
    assert "(within the window), was delivered only at" in run.error
    assert run.error.endswith("after the deadline and its delivery grace: the verdict stands")
    closed = [a for a in await h.store.audit_entries(run.id) if a["kind"] == "run.closed"]
    assert closed[-1]["data"]["delivered_after_verdict"] is True
