"""A resolution dated before the run's first step acted is not credited to the rule, on a real
PostgreSQL and Redis, through the real pipeline where the verification tests drive it
(``tests.support.verification``) and through the store where a path needs an order the
pipeline does not choose (a resolution taken up while the run still runs, an inferred one).

During a storm the firing waits in the queue; the alert resolves by itself (its endsAt); the
worker creates the run and its step acts later; the resolution arrives. Before, ``close_run``
ended such a run ``verified`` (time to resolve 0) and the report counted it as the rule's
success. Now it ends ``succeeded`` with verify_result ``resolved_before_action``, its error
saying when each happened; only a resolution strictly before the first step's start counts.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from receiver.model import RunOutcome, StepPlan, Target, VerifyResult
from receiver.review.loader import Review
from receiver.store import RunRecord, Store
from remediations.notify.notifier import Notifier
from tests.support.events import alert_event
from tests.support.payloads import alert, notification
from tests.support.peer import peer
from tests.support.pipeline import Harness, MakeHarness
from tests.support.verification import counter, harness, labels, notifier, rules

__all__ = ["notifier", "peer"]

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

NOT_CREDITED = "; not credited to the rule"


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ms(at: datetime) -> str:
    """``at`` as the run's error writes it (UTC, milliseconds)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def _first_acted(run: RunRecord) -> datetime:
    started = [s.started_at for s in run.steps if s.phase == "run" and s.started_at is not None]
    assert started, run.steps
    return min(started)


async def _resolved_at(h: Harness, ends_at: datetime) -> RunRecord:
    """Deliver the resolution of the run's alert dated ``ends_at``; the run after it."""
    await h.intake.accept(
        notification(alert(labels(), status="resolved", ends_at=_rfc3339(ends_at)))
    )
    await h.drain()
    return await h.only_run()


async def _acted(h: Harness) -> tuple[RunRecord, datetime]:
    """The alert fired and the run's step acted: the run (verifying) and when it acted."""
    await h.deliver(labels())
    run = await h.only_run()
    assert run.outcome is RunOutcome.VERIFYING
    return run, _first_acted(run)


# --------------------------------------------------------------------------------------------
# through the pipeline
async def test_a_resolution_dated_before_the_first_step_is_not_credited(
    make_harness: MakeHarness, notifier: Notifier
) -> None:
    h = await harness(make_harness, notifier, rules("{resolved_within: 10m}"))
    run, acted = await _acted(h)
    resolved = acted - timedelta(seconds=15)

    run = await _resolved_at(h, resolved)

    assert (run.outcome, run.verify_result) == (
        RunOutcome.SUCCEEDED,
        VerifyResult.RESOLVED_BEFORE_ACTION,
    )
    assert run.resolved_at == resolved
    assert run.finished_at is not None
    assert run.settle_until is None
    assert run.error == (
        f"resolved at {_ms(resolved)}, before the first step acted at {_ms(acted)}{NOT_CREDITED}"
    )
    closed = [a for a in await h.store.audit_entries(run.id) if a["kind"] == "run.closed"]
    assert [a["data"]["verify_result"] for a in closed] == ["resolved_before_action"]
    assert closed[0]["data"]["first_step_acted_at"] == acted.isoformat()
    assert closed[0]["data"]["error"] == run.error
    assert closed[0]["data"]["outcome"] == "succeeded"
    # Counted apart: its own label, never verified; its time to resolve not observed.
    verifications = "remediator_verifications_total"
    assert counter(h, verifications, rule="restart", result="resolved_before_action") == 1
    assert counter(h, verifications, rule="restart", result="verified") == 0
    assert counter(h, "remediator_runs_total", rule="restart", outcome="verified") == 0
    assert counter(h, "remediator_runs_total", rule="restart", outcome="succeeded") == 1
    assert counter(h, "remediator_time_to_resolve_seconds_count", rule="restart") == 0

    # The report does not count it as the rule's success, nor as a failure.
    report = await Review(h.store).report(
        run.created_at - timedelta(minutes=1), run.created_at + timedelta(minutes=10)
    )
    [row] = report["effectiveness"]
    assert (row["verified"], row["failed"], row["resolved_before_action"]) == (0, 0, 1)
    assert (row["verified_pct"], row["failed_pct"]) == (None, None)
    [incident] = report["incidents"]
    assert [r["category"] for r in incident["runs"]] == ["resolved_before_action"]
    assert incident["outcomes"] == {"resolved_before_action": 1}


async def test_a_resolution_dated_after_the_first_step_is_verified(
    make_harness: MakeHarness, notifier: Notifier
) -> None:
    h = await harness(make_harness, notifier, rules("{resolved_within: 10m}"))
    _, acted = await _acted(h)

    run = await _resolved_at(h, acted + timedelta(milliseconds=1))

    assert (run.outcome, run.verify_result) == (RunOutcome.VERIFIED, VerifyResult.VERIFIED)
    assert run.error is None
    assert counter(h, "remediator_verifications_total", rule="restart", result="verified") == 1


async def test_a_resolution_dated_as_the_first_step_acted_is_verified(
    make_harness: MakeHarness, notifier: Notifier
) -> None:
    """Strictly before only: the same microsecond may be the step's own doing."""
    h = await harness(make_harness, notifier, rules("{resolved_within: 10m}"))
    _, acted = await _acted(h)

    run = await _resolved_at(h, acted)

    assert run.resolved_at == acted
    assert (run.outcome, run.verify_result) == (RunOutcome.VERIFIED, VerifyResult.VERIFIED)


async def test_with_a_settle_period_it_ends_at_once_without_settling(
    make_harness: MakeHarness, notifier: Notifier
) -> None:
    h = await harness(make_harness, notifier, rules("{resolved_within: 10m, settle: 30m}"))
    _, acted = await _acted(h)

    run = await _resolved_at(h, acted - timedelta(seconds=1))

    assert (run.outcome, run.verify_result) == (
        RunOutcome.SUCCEEDED,
        VerifyResult.RESOLVED_BEFORE_ACTION,
    )
    assert run.settle_until is None
    # Nothing settles, so a later firing on the target fails nothing.
    h.store.late_delivery_window_s = 0.0
    await h.intake.accept(notification(alert(labels(), starts_at="2026-11-25T11:00:00Z")))
    await h.drain()
    first = await h.store.get_run(run.id)
    assert first is not None
    assert (first.outcome, first.verify_result) == (
        RunOutcome.SUCCEEDED,
        VerifyResult.RESOLVED_BEFORE_ACTION,
    )
    assert counter(h, "remediator_verifications_total", rule="restart", result="recurred") == 0


async def test_a_settling_run_resolved_after_its_step_still_settles(
    make_harness: MakeHarness, notifier: Notifier
) -> None:
    h = await harness(make_harness, notifier, rules("{resolved_within: 10m, settle: 30m}"))
    _, acted = await _acted(h)

    run = await _resolved_at(h, acted + timedelta(seconds=1))

    assert run.outcome is RunOutcome.VERIFYING
    assert run.settle_until is not None
    assert run.verify_result is None


# --------------------------------------------------------------------------------------------
# through the store: taken up while running, inferred from a later episode
RESTART = StepPlan(index=0, action="kubernetes.rollout_restart", params={}, needs_approval=False)


async def _running(store: Store, i: int, *, settle_s: float | None = None) -> tuple[str, datetime]:
    """A running run (verify within 10 minutes) whose step 0 started 10 s after its own start
    and is done; its id and when the step started."""
    run_id = await store.create_run(
        rule="r",
        event=alert_event(i + 1, i),
        target=Target("Deployment", "shop", f"w{i}"),
        dry_run=False,
        verify_within_s=600.0,
        settle_s=settle_s,
        steps=[RESTART],
    )
    assert run_id is not None
    assert await store.set_run_outcome(run_id, RunOutcome.RUNNING)
    run = await store.get_run(run_id, with_steps=False)
    assert run is not None
    assert run.started_at is not None
    acted = run.started_at + timedelta(seconds=10)
    await store.record_step(
        run_id, idx=0, action=RESTART.action, outcome="ok", started_at=acted, finished_at=acted
    )
    return run_id, acted


async def _verifying_after_resolution(store: Store, run_id: str, resolved: datetime) -> None:
    """The resolution is taken up while the run runs; then its steps end and it verifies."""
    assert await store.close_run(run_id, resolved) == RunOutcome.RUNNING
    assert await store.set_run_outcome(run_id, RunOutcome.VERIFYING)


@pytest.mark.parametrize("settle_s", [None, 1800.0])
async def test_resolved_while_running_before_the_step_ends_at_the_deadline_job(
    store: Store, settle_s: float | None
) -> None:
    run_id, acted = await _running(store, 1, settle_s=settle_s)
    resolved = acted - timedelta(seconds=5)
    await _verifying_after_resolution(store, run_id, resolved)

    ended = await store.conclude_verification(run_id)

    assert ended is not None
    assert ended.result is VerifyResult.RESOLVED_BEFORE_ACTION
    assert ended.escalation == 0
    run = await store.get_run(run_id, with_steps=False)
    assert run is not None
    assert (run.outcome, run.verify_result) == (
        RunOutcome.SUCCEEDED,
        VerifyResult.RESOLVED_BEFORE_ACTION,
    )
    assert run.error == (
        f"resolved at {_ms(resolved)}, before the first step acted at {_ms(acted)}{NOT_CREDITED}"
    )
    assert run.escalated_at is None
    last = (await store.audit_entries(run_id))[-1]
    assert last["kind"] == "run.outcome"
    assert last["data"] == {
        "outcome": "succeeded",
        "verify_result": "resolved_before_action",
        "resolved_at": resolved.isoformat(),
        "first_step_acted_at": acted.isoformat(),
        "error": run.error,
    }
    assert await store.conclude_verification(run_id) is None  # ended once


async def test_resolved_while_running_after_the_step_is_verified(store: Store) -> None:
    run_id, acted = await _running(store, 2)
    await _verifying_after_resolution(store, run_id, acted + timedelta(seconds=5))

    ended = await store.conclude_verification(run_id)

    assert ended is not None
    assert ended.result is VerifyResult.VERIFIED
    run = await store.get_run(run_id, with_steps=False)
    assert run is not None
    assert (run.outcome, run.verify_result, run.error) == (
        RunOutcome.VERIFIED,
        VerifyResult.VERIFIED,
        None,
    )
    assert (await store.audit_entries(run_id))[-1]["kind"] == "run.verified"


async def test_with_no_step_started_the_runs_own_start_counts(store: Store) -> None:
    run_id = await store.create_run(
        rule="r",
        event=alert_event(4, 3),
        target=Target("Deployment", "shop", "w3"),
        dry_run=False,
        verify_within_s=600.0,
        steps=[RESTART],
    )
    assert run_id is not None
    assert await store.set_run_outcome(run_id, RunOutcome.RUNNING)
    await store.record_step(run_id, idx=0, action=RESTART.action, outcome="noop")
    assert await store.set_run_outcome(run_id, RunOutcome.VERIFYING)
    run = await store.get_run(run_id, with_steps=False)
    assert run is not None
    assert run.started_at is not None

    assert await store.close_run(run_id, run.started_at - timedelta(seconds=1)) == "succeeded"
    run = await store.get_run(run_id, with_steps=False)
    assert run is not None
    assert run.verify_result is VerifyResult.RESOLVED_BEFORE_ACTION


@pytest.mark.parametrize(
    ("offset_s", "result", "outcome"),
    [
        (-1.0, VerifyResult.RESOLVED_BEFORE_ACTION, RunOutcome.SUCCEEDED),
        (1.0, VerifyResult.VERIFIED, RunOutcome.VERIFIED),
    ],
)
async def test_an_inferred_resolution_counts_by_the_latest_it_can_have_been(
    store: Store, offset_s: float, result: VerifyResult, outcome: RunOutcome
) -> None:
    """A later episode began at ``acted + offset_s``: the run's episode ended by then, perhaps
    long before; only when even that latest time is before the step is it not credited."""
    run_id, acted = await _running(store, 5 if offset_s < 0 else 6)
    assert await store.set_run_outcome(run_id, RunOutcome.VERIFYING)
    began = acted + timedelta(seconds=offset_s)

    assert await store.close_run(run_id, began, inferred_from=_rfc3339(began)) == outcome
    run = await store.get_run(run_id, with_steps=False)
    assert run is not None
    assert (run.verify_result, run.resolution_inferred_from) == (result, _rfc3339(began))
    if result is VerifyResult.RESOLVED_BEFORE_ACTION:
        assert run.error == (
            f"resolved at {_ms(began)} at the latest (a later episode of the alert began "
            f"then), before the first step acted at {_ms(acted)}{NOT_CREDITED}"
        )
    else:
        assert run.error is None


# --------------------------------------------------------------------------------------------
# resolved while running, after the step: verified without waiting out the deadline, and
# settled like any other (before, the verdict waited for the deadline and its grace, and a
# settle period was skipped: the run was verified at once when the job came)


async def _verify_job_due_now(store: Store, run_id: str) -> bool:
    async with store._pool.acquire() as conn:
        due = await conn.fetchval(
            """SELECT not_before <= remediator_now() FROM jobs
               WHERE run_id = $1::uuid AND kind = 'verify_deadline' AND state = 'pending'""",
            run_id,
        )
    return bool(due)


async def test_resolved_while_running_the_verdict_is_due_when_the_steps_end(
    store: Store,
) -> None:
    run_id, acted = await _running(store, 7)
    assert await store.close_run(run_id, acted + timedelta(seconds=5)) == RunOutcome.RUNNING
    # As the pipeline records it (record.py): the job due after the deadline and its grace.
    due = 600.0 + store.delivery_grace_s
    assert await store.set_run_outcome(
        run_id, RunOutcome.VERIFYING, schedule=[("verify_deadline", due)]
    )
    assert await _verify_job_due_now(store, run_id)


async def test_resolved_while_running_a_settle_period_is_settled_from_then(
    store: Store,
) -> None:
    run_id, acted = await _running(store, 8, settle_s=1800.0)
    await _verifying_after_resolution(store, run_id, acted + timedelta(seconds=5))

    ended = await store.conclude_verification(run_id)

    assert ended is not None
    assert (ended.result, ended.wait_s) == (None, 1800.0)
    run = await store.get_run(run_id, with_steps=False)
    assert run is not None
    assert run.outcome is RunOutcome.VERIFYING
    assert run.settle_until is not None
    again = await store.conclude_verification(run_id)  # still settling: it waits again
    assert again is not None
    assert again.result is None
    assert again.wait_s is not None
    assert 0 < again.wait_s <= 1800.0
