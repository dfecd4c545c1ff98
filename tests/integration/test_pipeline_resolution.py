"""When a run's alert resolved, through the whole pipeline on real PostgreSQL and Redis (dry-run,
no cluster): the resolution closes the run, dated by its endsAt whatever the worker's clock;
an endsAt a little ahead is kept as sent, one still further ahead is dated when it is read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from receiver.store.verification import CLOCK_SKEW_S
from tests.support.payloads import alert, notification
from tests.support.pipeline import Harness, MakeHarness
from tests.support.pipeline_restart import RESTART, labels


async def test_resolve_closes_the_run_with_its_time_to_resolve(make_harness: MakeHarness) -> None:
    rules = RESTART + "    verify: {resolved_within: 10m}\n"
    h = await make_harness(rules)
    await h.intake.accept(notification(alert(labels())))
    await h.drain()
    (created,) = await h.runs()
    # As if the run had been created 100 s ago: the alert resolves (its endsAt, now past)
    # 95.5 s after that, which is the time to resolve. (An endsAt before the run's creation
    # would be clamped to 0, and one still ahead dated now: neither would prove anything.)
    await backdate(h, created.id, seconds=100)
    ends_at = created.created_at - timedelta(seconds=100) + timedelta(seconds=95.5)
    resolved = alert(labels(), status="resolved", ends_at=ends_at.isoformat())
    await h.intake.accept(notification(resolved))
    await h.drain()
    (run,) = await h.runs()
    assert run.resolved_at == ends_at
    assert run.time_to_resolve_s == pytest.approx(95.5, abs=0.001)


async def backdate(h: Harness, run_id: str, *, seconds: float) -> None:
    """Move a run's creation and verification deadline ``seconds`` into the past."""
    await h.store._pool.execute(
        """UPDATE runs SET created_at = created_at - make_interval(secs => $2),
                          verify_deadline = verify_deadline - make_interval(secs => $2)
           WHERE id = $1::uuid""",
        run_id,
        seconds,
    )


async def test_the_resolution_is_dated_by_its_ends_at_whatever_the_workers_clock(
    make_harness: MakeHarness,
) -> None:
    """The store dates a resolution no later than its own now, not the worker's: a worker
    clock an hour behind keeps a resolution that has passed where the alert put it."""
    rules = RESTART + "    verify: {resolved_within: 10m}\n"
    h = await make_harness(rules, clock=lambda: datetime.now(UTC) - timedelta(hours=1))
    await h.intake.accept(notification(alert(labels())))
    await h.drain()
    (created,) = await h.runs()
    await backdate(h, created.id, seconds=60)
    ends_at = created.created_at - timedelta(seconds=30)
    await h.intake.accept(
        notification(alert(labels(), status="resolved", ends_at=ends_at.isoformat()))
    )
    await h.drain()
    (run,) = await h.runs()
    assert run.resolved_at == ends_at
    assert run.time_to_resolve_s == pytest.approx(30, abs=0.001)


async def test_an_ends_at_a_little_ahead_is_kept_as_sent(make_harness: MakeHarness) -> None:
    """Within CLOCK_SKEW_S of the store's clock an endsAt ahead is a sender's clock running a
    little ahead of ours: the resolution keeps its time."""
    rules = RESTART + "    verify: {resolved_within: 10m}\n"
    h = await make_harness(rules)
    await h.intake.accept(notification(alert(labels())))
    await h.drain()
    (created,) = await h.runs()
    ends_at = created.created_at + timedelta(seconds=CLOCK_SKEW_S / 2)
    await h.intake.accept(
        notification(alert(labels(), status="resolved", ends_at=ends_at.isoformat()))
    )
    await h.drain()
    (run,) = await h.runs()
    assert run.resolved_at == ends_at
    assert run.time_to_resolve_s == pytest.approx(CLOCK_SKEW_S / 2, abs=0.001)


@pytest.mark.parametrize(
    "ends_at",
    [
        # Python's largest datetime: asyncpg sends it as PostgreSQL's infinity, whose time to
        # resolve jsonb cannot hold (closing the run failed until the event was dead).
        "9999-12-31T23:59:59.999999Z",
        "9999-12-31T23:59:59.999999999Z",
        "2999-01-01T00:00:00+01:00",
        # Just past the skew a sender's clock may have: computed when the test runs.
        "past the skew",
    ],
)
async def test_an_ends_at_still_ahead_dates_the_resolution_when_it_is_read(
    make_harness: MakeHarness, ends_at: str
) -> None:
    rules = RESTART + "    verify: {resolved_within: 10m}\n"
    h = await make_harness(rules)
    await h.intake.accept(notification(alert(labels())))
    await h.drain()
    if ends_at == "past the skew":
        ends_at = (datetime.now(UTC) + timedelta(seconds=CLOCK_SKEW_S + 60)).isoformat()
    before = datetime.now(UTC)
    result = await h.intake.accept(
        notification(alert(labels(), status="resolved", ends_at=ends_at))
    )
    assert result.accepted == 1
    assert await h.drain() == 1
    after = datetime.now(UTC)
    (run,) = await h.runs()
    assert run.resolved_at is not None
    assert before <= run.resolved_at <= after
    assert run.time_to_resolve_s is not None
    assert 0 <= run.time_to_resolve_s <= (after - run.created_at).total_seconds()
    assert await h.store.dead_counts() == {"events": 0, "jobs": 0}
