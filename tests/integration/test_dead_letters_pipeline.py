"""Dead letters with the real pipeline behind the real worker (PostgreSQL, Redis, dry-run).

Case 11's worker half: an event whose endsAt is past year 9999 in UTC failed in the worker on
every attempt; it now closes its run like any resolution. An event that fails every attempt
(here a database trigger refusing to close its run) ends dead instead of blocking its alert for
ever. And a pipeline that raises for a cause that goes away: dead, retried by an operator,
then processed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from receiver.model import RunOutcome
from receiver.store import Store
from tests.support.payloads import alert, notification
from tests.support.pipeline import RESTART_WEB, Harness, MakeHarness
from tests.support.polling import eventually, eventually_not_none

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

LABELS = {"alertname": "HighMemoryUsage", "namespace": "shop", "deployment": "cart"}


@pytest.fixture
async def served(make_harness: MakeHarness) -> AsyncIterator[Harness]:
    """The harness with a real worker on its pipeline: 3 failed attempts make an item dead."""
    h = await make_harness(RESTART_WEB)
    worker = h.worker(concurrency=2, poll_interval_s=0.1)
    await worker.start()
    try:
        yield h
    finally:
        await worker.stop(2)


async def event_in(store: Store, state: str) -> dict[str, Any] | None:
    rows, _ = await store.list_events(state=state)
    return rows[0] if rows else None


async def test_case_11_an_end_past_year_9999_in_utc_closes_its_run(served: Harness) -> None:
    h = served
    firing = alert(LABELS, starts_at="2026-01-05T08:00:00Z")
    await h.intake.accept(notification(firing))
    [run] = await eventually(lambda: h.runs(outcome=RunOutcome.DRY_RUN))
    # endsAt in year 9999 at -01:00: past year 9999 in UTC. Alertmanager accepts and sends it;
    # Python could not compare it, and the worker failed on it on every retry.
    resolved = {**firing, "status": "resolved", "endsAt": "9999-12-31T23:30:00-01:00"}
    await h.intake.accept(notification(resolved))
    await eventually(h.store.queue_depth, lambda depth: depth == 0)
    assert await h.store.dead_counts() == {"events": 0, "jobs": 0}
    closed = await h.store.get_run(run.id)
    assert closed is not None
    assert closed.resolved_at is not None  # "no end known": dated now
    rows, _ = await h.store.list_events(state="done")
    assert {(r["status"], r["ends_at"]) for r in rows} >= {
        ("resolved", "9999-12-31T23:30:00-01:00")  # the text as sent
    }


async def test_an_event_that_fails_every_attempt_ends_dead_and_the_alert_goes_on(
    served: Harness,
) -> None:
    h = served
    firing = alert(LABELS, starts_at="2026-01-05T08:00:00Z")
    await h.intake.accept(notification(firing))
    await eventually(lambda: h.runs(outcome=RunOutcome.DRY_RUN))
    async with h.store._pool.acquire() as conn:
        # A real database fault for one episode only: closing its run raises, every time.
        await conn.execute(
            """CREATE FUNCTION refuse_episode() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN RAISE EXCEPTION 'this episode cannot be closed'; END; $$;
               CREATE TRIGGER refuse_episode BEFORE UPDATE ON runs
               FOR EACH ROW WHEN (OLD.starts_at = '2026-01-05T08:00:00Z'
                                  AND NEW.resolved_at IS NOT NULL)
               EXECUTE FUNCTION refuse_episode();"""
        )
    await h.intake.accept(notification({**firing, "status": "resolved"}))
    dead = await eventually_not_none(lambda: event_in(h.store, "dead"))
    assert (dead["status"], dead["failures"]) == ("resolved", 3)
    assert "this episode cannot be closed" in dead["last_error"]

    # The alert fires again (a new episode): it is processed, not queued behind the dead one.
    await h.intake.accept(notification(alert(LABELS, starts_at="2026-01-05T09:00:00Z")))

    await eventually(lambda: h.runs(outcome=RunOutcome.DRY_RUN), lambda runs: len(runs) == 2)
    # The run's outcome is recorded before the worker marks its event done: wait for that,
    # the queue then holds nothing (the dead event is out of it).
    await eventually(h.store.queue_depth, lambda depth: depth == 0)
    h.metrics.track_dead_letters(h.store.dead_counts)
    await h.metrics.refresh()
    text = h.metrics.render()[0].decode()
    assert 'remediator_dead_letters{queue="events"} 1.0' in text
    assert 'remediator_dead_letters{queue="jobs"} 0.0' in text

    # It can never be processed: an operator drops it, on the record.
    await h.store.drop_item("event", dead["id"], actor="ops", reason="episode cannot be stored")
    assert await h.store.dead_counts() == {"events": 0, "jobs": 0}


async def test_a_run_that_cannot_be_stored_leaves_no_lock_on_its_target(served: Harness) -> None:
    """The guards admit the run (its target lock taken), then storing it fails on every
    attempt: the event ends dead, and the lock goes with it instead of holding the target
    until its TTL, which kept the alert's next episode waiting behind a run that never was."""
    h = served
    async with h.store._pool.acquire() as conn:
        await conn.execute(
            """CREATE FUNCTION refuse_run() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN RAISE EXCEPTION 'this run cannot be stored'; END; $$;
               CREATE TRIGGER refuse_run BEFORE INSERT ON runs
               FOR EACH ROW WHEN (NEW.starts_at = '2026-01-05T08:00:00Z')
               EXECUTE FUNCTION refuse_run();"""
        )
    await h.intake.accept(notification(alert(LABELS, starts_at="2026-01-05T08:00:00Z")))
    dead = await eventually_not_none(lambda: event_in(h.store, "dead"))
    assert "this run cannot be stored" in dead["last_error"]
    await h.intake.accept(notification(alert(LABELS, starts_at="2026-01-05T09:00:00Z")))
    [run] = await eventually(lambda: h.runs(outcome=RunOutcome.DRY_RUN))
    assert run.starts_at == "2026-01-05T09:00:00Z"


async def test_one_rules_run_that_cannot_be_stored_does_not_hold_back_another_rules(
    make_harness: MakeHarness,
) -> None:
    """Two rules match one alert, and the first one's run can never be stored: the second
    rule's run is carried out at once, exactly once, while the event is retried for the first
    and ends dead with its error. Before, the event's attempts all stopped at the first run."""
    first = RESTART_WEB.replace("restart-web", "restart-web-first").replace("rules:\n", "")
    h = await make_harness(RESTART_WEB.replace("rules:\n", "rules:\n" + first.lstrip("\n")))
    worker = h.worker(concurrency=2, poll_interval_s=0.1)
    async with h.store._pool.acquire() as conn:
        await conn.execute(
            """CREATE FUNCTION refuse_first() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN RAISE EXCEPTION 'this rule''s run cannot be stored'; END; $$;
               CREATE TRIGGER refuse_first BEFORE INSERT ON runs
               FOR EACH ROW WHEN (NEW.rule = 'restart-web-first')
               EXECUTE FUNCTION refuse_first();"""
        )
    await worker.start()
    try:
        await h.intake.accept(notification(alert(LABELS)))
        dead = await eventually_not_none(lambda: event_in(h.store, "dead"))
    finally:
        await worker.stop(2)
    assert (dead["failures"], dead["last_error"]) == (
        3,
        "RaiseError: this rule's run cannot be stored",
    )
    [run] = await h.runs()
    assert (run.rule, run.outcome, run.event_id) == ("restart-web", RunOutcome.DRY_RUN, dead["id"])
    steps = (await h.store.get_run(run.id)).steps  # type: ignore[union-attr]
    assert [(s.action, s.outcome) for s in steps] == [("kubernetes.rollout_restart", "dry_run")]


async def test_a_pipeline_that_raises_ends_dead_and_succeeds_when_retried_after_the_fix(
    served: Harness,
) -> None:
    h = served
    async with h.store._pool.acquire() as conn:
        # A real database fault under the pipeline: creating a run raises, every time.
        await conn.execute(
            """CREATE FUNCTION refuse_runs() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN RAISE EXCEPTION 'runs are frozen for maintenance'; END; $$;
               CREATE TRIGGER refuse_runs BEFORE INSERT ON runs
               FOR EACH ROW EXECUTE FUNCTION refuse_runs();"""
        )
    await h.intake.accept(notification(alert(LABELS)))
    dead = await eventually_not_none(lambda: event_in(h.store, "dead"))
    assert dead["last_error"] == "RaiseError: runs are frozen for maintenance"
    assert await h.runs() == []

    async with h.store._pool.acquire() as conn:
        await conn.execute("DROP TRIGGER refuse_runs ON runs")
    await h.store.retry_item("event", dead["id"], actor="ops", reason="runs unfrozen")
    [run] = await eventually(lambda: h.runs(outcome=RunOutcome.DRY_RUN))
    assert run.event_id == dead["id"]
    # The run is recorded before the worker settles its event: wait for the event's end.
    done = await eventually(
        lambda: h.store.event_view(dead["id"]),
        lambda view: view is not None and view["state"] != "claimed",
    )
    assert done is not None  # for the type checker: the probe accepted it
    # Processed once more: a retry counts failures afresh but never lowers attempts (a late
    # statement of a claim before the death must not settle the new one: store/fence.py).
    assert (done["state"], done["failures"], done["attempts"]) == (
        "done",
        0,
        dead["attempts"] + 1,
    )
