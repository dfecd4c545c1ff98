"""The store's runs against a real PostgreSQL server: one per rule and episode, their steps and
outcomes, refusals, verification deadlines, the history a plan reads, and listing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from receiver.model import RunOutcome, Status, StepPlan, Target, VerifyResult
from receiver.store import RecordedRefusal, Refused, Store, run_id_of
from receiver.store.announcements import announced_data
from tests.support.events import TARGET, alert_event, new_event
from tests.support.polling import eventually

pytestmark = pytest.mark.postgres


async def test_create_run_is_once_per_rule_and_episode(store: Store) -> None:
    event = alert_event()
    first = await store.create_run(rule="restart", event=event, target=TARGET, dry_run=False)
    assert first is not None
    assert await store.create_run(rule="restart", event=event, target=TARGET, dry_run=False) is None
    # Another rule, or a new episode, is a new run.
    assert await store.create_run(rule="scale", event=event, target=TARGET, dry_run=False)
    later = alert_event(starts_at="2024-05-02T00:00:00Z")
    assert await store.create_run(rule="restart", event=later, target=TARGET, dry_run=False)


async def test_concurrent_create_run_yields_exactly_one(store: Store) -> None:
    event = alert_event()
    ids = await asyncio.gather(
        *(
            store.create_run(rule="restart", event=event, target=TARGET, dry_run=False)
            for _ in range(20)
        )
    )
    assert sum(1 for i in ids if i is not None) == 1


async def test_run_lifecycle_steps_and_close(store: Store) -> None:
    event = alert_event()
    run_id = await store.create_run(
        rule="restart", event=event, target=TARGET, dry_run=False, verify_within_s=600
    )
    assert run_id is not None
    assert await store.set_run_outcome(run_id, RunOutcome.RUNNING)
    await store.record_step(
        run_id, idx=0, action="kubernetes.rollout_restart", outcome="running", params={"a": 1}
    )
    await store.record_step(
        run_id,
        idx=0,
        action="kubernetes.rollout_restart",
        outcome="ok",
        message="restarted",
        before={"generation": 3},
        after={"generation": 4},
        attempts=2,
        finished_at=datetime.now(UTC),
    )
    await store.record_step(run_id, idx=0, phase="resolve", action="kubernetes.scale", outcome="ok")
    assert await store.set_run_outcome(run_id, RunOutcome.VERIFYING)

    run = await store.get_run(run_id)
    assert run is not None
    assert run.outcome is RunOutcome.VERIFYING
    assert run.started_at is not None
    assert run.verify_deadline is not None
    assert run.target == TARGET
    assert [(s.phase, s.idx, s.outcome) for s in run.steps] == [
        ("run", 0, "ok"),
        ("resolve", 0, "ok"),
    ]
    assert run.steps[0].after == {"generation": 4}
    assert run.steps[0].params == {"a": 1}
    assert run.steps[0].attempts == 2

    # As if the run had been created 100 s ago: it resolved 90 s after that, 10 s ago (one
    # still ahead would be dated when it is closed). It started then too: with no step start
    # recorded, a resolution dated before the run's start is not credited to it.
    await store._pool.execute(
        """UPDATE runs SET created_at = created_at - interval '100 seconds',
                          started_at = started_at - interval '100 seconds',
                          verify_deadline = verify_deadline - interval '100 seconds'
           WHERE id = $1::uuid""",
        run_id,
    )
    resolved_at = run.created_at - timedelta(seconds=100) + timedelta(seconds=90)
    assert await store.close_run(run_id, resolved_at)
    assert not await store.close_run(run_id, resolved_at)  # idempotent
    run = await store.get_run(run_id)
    assert run is not None
    assert run.outcome is RunOutcome.VERIFIED
    assert run.time_to_resolve_s == pytest.approx(90, abs=0.01)
    assert run.finished_at is not None
    assert await store.get_run("not-a-uuid") is None
    assert await store.get_run("00000000-0000-0000-0000-000000000000") is None


async def test_refusal_is_recorded_with_guard_and_retry_time(store: Store) -> None:
    run_id = await store.create_run(rule="r", event=alert_event(), target=TARGET, dry_run=False)
    assert run_id is not None
    retry_at = datetime.now(UTC) + timedelta(minutes=15)
    assert await store.record_refusal(run_id, "cooldown", "ran 3m ago", retry_at) == (
        RecordedRefusal(True, [])
    )
    assert await store.record_refusal(
        "00000000-0000-0000-0000-000000000000", "cooldown", "ran 3m ago", retry_at
    ) == RecordedRefusal(False, [])
    run = await store.get_run(run_id)
    assert run is not None
    assert run.outcome is RunOutcome.REFUSED
    assert run.refusal_guard == "cooldown"
    assert run.retry_at == retry_at


async def test_a_run_created_refused_reads_as_one_created_then_refused(store: Store) -> None:
    """The worker asks a new run's guards first; refused, the run is stored refused in one
    statement, with the rows and the audit trail a create and then a refusal would give."""
    steps = [
        StepPlan(
            index=0, action="kubernetes.restart", params={"reason": "leak"}, needs_approval=False
        ),
        StepPlan(index=1, action="notify.send", params={}, needs_approval=False),
    ]
    event = alert_event()
    run_id = run_id_of("r", event.fingerprint, event.starts_at, event.refire)
    assert run_id == run_id_of("r", event.fingerprint, event.starts_at, event.refire)
    retry_at = datetime.now(UTC) + timedelta(minutes=15)
    refused = Refused("cooldown", "ran 3m ago", retry_at)
    made = await store.create_run(
        rule="r", event=event, target=TARGET, dry_run=False, steps=steps, run_id=run_id,
        refusal=refused,
    )  # fmt: skip
    assert made == run_id
    run = await store.get_run(run_id)
    assert run is not None
    assert (run.outcome, run.refusal_guard, run.retry_at) == (
        RunOutcome.REFUSED, "cooldown", retry_at,
    )  # fmt: skip
    assert run.finished_at is not None
    assert [(s.idx, s.outcome, s.message) for s in run.steps] == [
        (0, "not_run", "not run: the cooldown guard refused the run"),
        (1, "not_run", "not run: the cooldown guard refused the run"),
    ]
    trail = await store.audit_entries(run_id)
    # One row, not one a step and one for the refusal: the steps of a refused run never
    # change, and its run.created row lists them as they are stored and holds its refusal
    # (receiver/audit_folds.py).
    assert [e["kind"] for e in trail] == ["run.created"]
    assert [
        (s["idx"], s["action"], s["params"], s["outcome"], s["message"])
        for s in trail[0]["data"]["steps"]
    ] == [
        (0, "kubernetes.restart", {"reason": "leak"}, "not_run", run.steps[0].message),
        (1, "notify.send", {}, "not_run", run.steps[1].message),
    ]
    assert trail[0]["data"]["refused"] == {
        "guard": "cooldown",
        "reason": refused.reason,
        "retry_at": retry_at.isoformat(),
    }
    assert "announced" not in trail[0]["data"]
    assert (await store.verify_audit()).ok
    # The same occurrence again (a retry, another worker): nothing new.
    again = await store.create_run(
        rule="r", event=event, target=TARGET, dry_run=False, steps=steps, run_id=run_id,
        refusal=refused,
    )  # fmt: skip
    assert again is None
    assert len(await store.audit_entries(run_id)) == 1


async def test_a_refused_runs_announcement_is_in_its_one_row_and_counts_as_announced(
    store: Store,
) -> None:
    """The announcement a run stored refused had nothing to send is held by its run.created
    row (receiver/audit_folds.py): a job taken up again finds it said, as it found the
    run.announced row of the old form."""
    event = alert_event()
    announced = announced_data(
        event="refused", channel="oncall", delivered=False, detail="no channels configured"
    )
    run_id = await store.create_run(
        rule="r", event=event, target=TARGET, dry_run=False,
        refusal=Refused("rate", "5 runs in 1h", None), announced=announced,
    )  # fmt: skip
    assert run_id is not None
    (row,) = await store.audit_entries(run_id)
    assert row["kind"] == "run.created"
    assert row["data"]["announced"] == announced
    assert row["data"]["refused"] == {"guard": "rate", "reason": "5 runs in 1h", "retry_at": None}
    assert await store.was_announced(run_id, "refused")
    assert not await store.was_announced(run_id, "started")
    assert (await store.verify_audit()).ok


async def test_a_verification_past_its_deadline_fails_once_and_records_its_escalation(
    store: Store,
) -> None:
    overdue = await store.create_run(
        rule="a", event=alert_event(), target=TARGET, dry_run=False, verify_within_s=0.001
    )
    patient = await store.create_run(
        rule="b", event=alert_event(), target=TARGET, dry_run=False, verify_within_s=3600
    )
    assert overdue is not None
    assert patient is not None
    await store.set_run_outcome(overdue, RunOutcome.VERIFYING)
    await store.set_run_outcome(patient, RunOutcome.VERIFYING)
    ladder = [StepPlan(0, "notify", {"channel": "oncall"}, needs_approval=False)]
    run = await store.get_run(overdue)
    assert run is not None
    assert run.verify_deadline is not None
    # Concurrent deadline jobs (two replicas): one ends it, the other finds nothing to do.
    # The deadline is 1 ms after the outcome's commit: poll it rather than sleep past it.
    ended = await eventually(
        lambda: asyncio.gather(
            store.conclude_verification(overdue, ladder),
            store.conclude_verification(overdue, ladder),
        ),
        lambda pair: any(c is not None and c.result is not None for c in pair),
    )
    results = [c.result for c in ended if c is not None and c.result is not None]
    assert results == [VerifyResult.NOT_RESOLVED]
    run = await store.get_run(overdue)
    assert run is not None
    assert (run.outcome, run.verify_result) == (RunOutcome.FAILED, VerifyResult.NOT_RESOLVED)
    assert [(s.phase, s.action, s.outcome) for s in run.steps] == [
        ("on_failed", "notify", "pending")
    ]
    assert await store.conclude_verification(overdue, ladder) is None
    waiting = await store.conclude_verification(patient, ladder)
    assert waiting is not None
    assert waiting.result is None
    assert waiting.wait_s is not None
    assert 3500 < waiting.wait_s <= 3600
    still = await store.get_run(patient)
    assert still is not None
    assert still.outcome is RunOutcome.VERIFYING


async def test_history_sees_episode_recent_runs_and_resolution(store: Store) -> None:
    event = alert_event(fingerprint="1" * 16)
    await store.insert_events([new_event("1" * 16)])
    run_id = await store.create_run(rule="restart", event=event, target=TARGET, dry_run=False)
    other_episode = alert_event(fingerprint="1" * 16, starts_at="2024-04-30T00:00:00Z")
    await store.create_run(rule="restart", event=other_episode, target=TARGET, dry_run=False)
    elsewhere = Target("Deployment", "shop", "cart")
    await store.create_run(
        rule="other",
        event=alert_event(fingerprint="2" * 16, alertname="X"),
        target=elsewhere,
        dry_run=False,
    )

    history = await store.history(event, 3600)
    assert [r.run_id for r in history.episode_runs] == [run_id]
    assert history.recent_runs == ()  # no (rule, target) asked for: not read at all
    assert not history.episode_resolved

    same = await store.history(event, 3600, repeats=[("restart", TARGET)])
    assert {r.starts_at for r in same.recent_runs} == {event.starts_at, "2024-04-30T00:00:00Z"}
    both = await store.history(event, 3600, repeats=[("restart", TARGET), ("other", elsewhere)])
    assert sorted(r.rule for r in both.recent_runs) == ["other", "restart", "restart"]
    # Pairs, not "this rule or this target".
    assert (await store.history(event, 3600, repeats=[("restart", elsewhere)])).recent_runs == ()
    assert (await store.history(event, 0.000001, repeats=[("restart", TARGET)])).recent_runs == ()

    await store.insert_events([new_event("1" * 16, status=Status.RESOLVED)])
    assert (await store.history(event, 3600)).episode_resolved
    assert run_id is not None
    await store.close_run(run_id, datetime.now(UTC))
    assert (await store.history(event, 3600)).episode_runs[0].closed


async def test_list_runs_filters_and_paginates(store: Store) -> None:
    ids = []
    for i in range(25):
        run_id = await store.create_run(
            rule="restart" if i % 2 else "scale",
            event=alert_event(fingerprint=f"{i:016x}", alertname="A" if i < 20 else "B"),
            target=TARGET,
            dry_run=True,
        )
        assert run_id is not None
        ids.append(run_id)

    pages = []
    cursor = None
    while True:
        rows, cursor = await store.list_runs(limit=10, cursor=cursor)
        pages.append([r.id for r in rows])
        if cursor is None:
            break
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [i for p in pages for i in p] == list(reversed(ids))  # newest first, no overlap

    rows, _ = await store.list_runs(alertname="B")
    assert len(rows) == 5
    rows, _ = await store.list_runs(rule="restart", alertname="A")
    assert len(rows) == 10
    rows, _ = await store.list_runs(target=TARGET.key, outcome="pending", limit=100)
    assert len(rows) == 25
    rows, _ = await store.list_runs(since=datetime.now(UTC) + timedelta(hours=1))
    assert rows == []
    with pytest.raises(ValueError, match="cursor"):
        await store.list_runs(cursor="!!garbage")
