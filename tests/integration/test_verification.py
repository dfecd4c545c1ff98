"""Verification and the escalation ladder through the real pipeline, on real PostgreSQL and Redis,
with a real local HTTP server as the notification channel.

The steps here are the rules tests' small actions (``tests.support.rules``) and the real
``notify`` action: what is under test is what happens around them: verified, failed (not
resolved in time), failed (recurred), the breaker counting those failures, and on_failed
steps. What a channel receives is test_run_announcements.py."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest

from receiver.model import RunOutcome, VerifyResult
from remediations.notify.notifier import Notifier
from tests.support.payloads import alert, notification
from tests.support.peer import Peer, peer
from tests.support.pipeline import MakeHarness
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
    run_of,
)

__all__ = ["notifier", "peer"]

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


# --------------------------------------------------------------------------------------------
# verified
async def test_verified_when_the_alert_resolves_in_time(
    make_harness: MakeHarness, notifier: Notifier, peer: Peer
) -> None:
    h = await harness(make_harness, notifier, rules("{resolved_within: 10m}"))
    await h.deliver(labels())
    run = await h.only_run()
    assert run.outcome is RunOutcome.VERIFYING
    assert run.verify_result is None

    await h.deliver(labels(), status="resolved")
    run = await h.only_run()
    assert (run.outcome, run.verify_result) == (RunOutcome.VERIFIED, VerifyResult.VERIFIED)
    assert run.finished_at is not None
    assert counter(h, "remediator_runs_total", rule="restart", outcome="verified") == 1
    assert counter(h, "remediator_verifications_total", rule="restart", result="verified") == 1
    assert events(peer) == [("run_started", "running"), ("run_finished", "verifying")]


async def test_with_a_settle_period_it_is_verified_only_once_the_alert_stayed_resolved(
    make_harness: MakeHarness, notifier: Notifier
) -> None:
    h = await harness(make_harness, notifier, rules("{resolved_within: 10m, settle: 1s}"))
    await h.deliver(labels())
    await h.deliver(labels(), status="resolved")
    run = await h.only_run()
    # Resolved in time, but it may still come back: settling.
    assert run.outcome is RunOutcome.VERIFYING
    assert run.resolved_at is not None
    assert run.settle_until is not None
    run = await drained(h, lambda r: r.outcome is not RunOutcome.VERIFYING)
    assert (run.outcome, run.verify_result) == (RunOutcome.VERIFIED, VerifyResult.VERIFIED)
    audit = [a["kind"] for a in await h.store.audit_entries(run.id)]
    assert audit[-1] == "run.verified"


# --------------------------------------------------------------------------------------------
# failed: not resolved in time
async def test_not_resolved_in_time_fails_counts_in_the_breaker_and_climbs_the_ladder(
    make_harness: MakeHarness, notifier: Notifier, peer: Peer
) -> None:
    h = await harness(
        make_harness,
        notifier,
        rules("{resolved_within: 1s}", on_failed=LADDER),
        guard_settings=BREAKER,
    )
    await h.deliver(labels())
    run = await drained(h, lambda r: r.outcome is RunOutcome.FAILED)
    assert run.verify_result is VerifyResult.NOT_RESOLVED
    assert run.error is not None
    assert "did not resolve within 1s" in run.error
    assert run.escalated_at is not None
    # The ladder ran, after the run's own step, through the same execute stage.
    assert [(s.phase, s.action, s.outcome) for s in run.steps] == [
        ("run", "test.restart", "noop"),
        ("on_failed", "notify", "ok"),
        ("on_failed", "test.restart", "noop"),
    ]
    assert [s.idx for s in run.steps] == [0, 1, 2]  # never the index of a run step
    assert counter(h, "remediator_verifications_total", rule="restart", result="not_resolved") == 1
    assert events(peer) == [
        ("run_started", "running"),
        ("run_finished", "verifying"),
        ("verification_failed", "failed"),
        ("step", ""),  # the on_failed notify step's own message
    ]
    failed = peer.seen(HOOK)[2].body
    assert failed["text"].startswith("not resolved in time: the alert did not resolve")
    # The ladder's own message speaks of the alert, though a job (not the alert) ran it.
    assert peer.seen(HOOK)[3].body["text"] == "HighMemoryUsage: restart did not help"
    assert failed["links"]["run"] == f"https://remediator.example/api/v1/runs/{run.id}"

    # The failure opened the breaker (threshold 1): the next episode is refused by it.
    status = await h.guards.status()
    assert status["breakers"]["restart"]["failures"] == 1
    await h.intake.accept(notification(alert(labels(), starts_at="2026-11-25T11:00:00Z")))
    await h.drain()
    refused = await run_of(h, outcome="refused")
    assert refused.refusal_guard == "breaker"
    assert ("run_refused", "refused") in events(peer)


async def test_a_retried_escalation_job_counts_the_failure_once_and_says_it_once(
    make_harness: MakeHarness, notifier: Notifier, peer: Peer
) -> None:
    h = await harness(make_harness, notifier, rules("{resolved_within: 1s}"))
    await h.deliver(labels())
    run = await drained(h, lambda r: r.outcome is RunOutcome.FAILED)
    # As if the job ran again (a crash after its work, a retry by an operator).
    await h.store.enqueue_job("resume_run", run.id)
    await h.drain()
    status = await h.guards.status()
    assert status["breakers"]["restart"]["failures"] == 1
    assert [e for e, _ in events(peer)].count("verification_failed") == 1


async def test_resolving_after_the_deadline_is_not_verified(
    make_harness: MakeHarness, notifier: Notifier
) -> None:
    h = await harness(make_harness, notifier, rules("{resolved_within: 1s}"))
    await h.deliver(labels())
    run = await h.only_run()
    # As if it had been created a minute ago, so that a resolution 5 s after its deadline has
    # passed (one still ahead would be dated when it is read).
    await h.store._pool.execute(
        """UPDATE runs SET created_at = created_at - interval '1 minute',
                          verify_deadline = verify_deadline - interval '1 minute'
           WHERE id = $1::uuid""",
        run.id,
    )
    run = await h.only_run()
    assert run.verify_deadline is not None
    # It resolves (its endsAt) after the deadline, and the worker sees that before the job.
    late = (run.verify_deadline + timedelta(seconds=5)).astimezone(UTC)
    ends_at = late.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    await h.intake.accept(notification(alert(labels(), status="resolved", ends_at=ends_at)))
    run = await drained(h, lambda r: r.outcome is not RunOutcome.VERIFYING)
    assert run.resolved_at == late
    assert (run.outcome, run.verify_result) == (RunOutcome.FAILED, VerifyResult.NOT_RESOLVED)


# --------------------------------------------------------------------------------------------
# failed: recurred
async def test_a_refire_while_settling_fails_it_as_recurred_before_its_own_run_is_admitted(
    make_harness: MakeHarness, notifier: Notifier, peer: Peer
) -> None:
    h = await harness(
        make_harness,
        notifier,
        rules("{resolved_within: 10m, settle: 30m}", on_failed=LADDER),
        guard_settings=BREAKER,
    )
    # Re-fires with the same startsAt count as a new occurrence at once (no late copies here).
    h.store.late_delivery_window_s = 0.0
    await h.deliver(labels())
    await h.deliver(labels(), status="resolved")
    first = await h.only_run()
    assert first.outcome is RunOutcome.VERIFYING
    assert first.settle_until is not None

    await h.deliver(labels())  # Alertmanager fires it again: the restart did not stick
    first = await run_of(h, outcome="failed")
    assert first.verify_result is VerifyResult.RECURRED
    assert first.error is not None
    assert "fired again on the target" in first.error
    assert [(s.phase, s.outcome) for s in first.steps if s.phase == "on_failed"] == [
        ("on_failed", "ok"),
        ("on_failed", "noop"),
    ]
    # The escalation's admission is audited as the on_failed phase's: it was "resolve", and the
    # review said "Guards passed (on_resolved steps)" of a rule with no on_resolved step.
    admitted = [
        row["data"]["phase"]
        async for row in h.store.export_audit()
        if row["kind"] == "run.admitted" and row["run_id"] == first.id
    ]
    assert admitted == ["run", "on_failed"]
    # Counted in the breaker before the re-fire's own run asked it: refused by the breaker.
    second = await run_of(h, outcome="refused")
    assert second.refire == 1
    assert second.refusal_guard == "breaker"
    assert counter(h, "remediator_verifications_total", rule="restart", result="recurred") == 1
    assert counter(h, "remediator_runs_total", rule="restart", outcome="failed") == 1
    failed = [r.body for r in peer.seen(HOOK) if r.body["event"] == "verification_failed"]
    assert len(failed) == 1
    assert failed[0]["run_id"] == first.id
    assert failed[0]["text"].startswith("recurred: the alert fired again")


async def test_a_late_copy_of_the_firing_is_not_a_recurrence(
    make_harness: MakeHarness, notifier: Notifier
) -> None:
    h = await harness(make_harness, notifier, rules("{resolved_within: 10m, settle: 30m}"))
    await h.deliver(labels())
    await h.deliver(labels(), status="resolved")
    await h.deliver(labels())  # within the late-delivery window: an HA peer's copy
    run = await h.only_run()
    assert run.outcome is RunOutcome.VERIFYING
    assert run.verify_result is None


async def test_another_target_firing_is_not_a_recurrence(
    make_harness: MakeHarness, notifier: Notifier
) -> None:
    h = await harness(make_harness, notifier, rules("{resolved_within: 10m, settle: 30m}"))
    await h.deliver(labels("web"))
    await h.deliver(labels("web"), status="resolved")
    await h.deliver(labels("api"))
    web = await run_of(h, target="Deployment/shop/web")
    assert web.outcome is RunOutcome.VERIFYING
