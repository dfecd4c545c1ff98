"""The PostgreSQL repository against a real server: migrations, queue, runs, audit chain."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import asyncpg
import pytest

from receiver.alertmanager import ZERO_TIME
from receiver.model import RunOutcome, Status, StepPlan, Target, VerifyResult
from receiver.store import CLAIM_WINDOW, NewEvent, RecordedRefusal, Refused, Store, run_id_of
from receiver.store.announcements import announced_data
from receiver.store.migrate import Migration, MigrationError, load_migrations, migrate
from tests.support.events import alert_event, new_event
from tests.support.polling import eventually

pytestmark = pytest.mark.postgres

TARGET = Target("Deployment", "shop", "checkout")


# -- migrations ---------------------------------------------------------------------------


async def test_migrations_apply_once_and_are_idempotent(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        versions = [m.version for m in load_migrations()]
        assert await migrate(conn) == versions
        assert await migrate(conn) == []
        rows = await conn.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == versions
        assert rows[0]["name"] == "init"
    finally:
        await conn.close()


async def test_two_replicas_migrating_at_once_is_safe(empty_database_url: str) -> None:
    conns = [await asyncpg.connect(empty_database_url) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        applied = sorted(v for result in results for v in result)
        assert applied == [m.version for m in load_migrations()]  # each exactly once
        stores = await asyncio.gather(
            Store.connect(empty_database_url, min_size=1, max_size=2),
            Store.connect(empty_database_url, min_size=1, max_size=2),
        )
        for store in stores:
            await store.ping()
            await store.close()
    finally:
        for c in conns:
            await c.close()


async def test_a_changed_migration_is_refused(database_url: str) -> None:
    first = load_migrations()[0]
    changed = Migration(first.version, first.name, first.sql + "\n-- edited\n")
    conn = await asyncpg.connect(database_url)
    try:
        with pytest.raises(MigrationError, match="changed"):
            await migrate(conn, [changed])
    finally:
        await conn.close()


# -- intake rows --------------------------------------------------------------------------


async def test_insert_events_dedupes_on_fingerprint_starts_at_status(store: Store) -> None:
    events = [
        new_event("aaaaaaaaaaaaaaaa"),
        new_event("bbbbbbbbbbbbbbbb"),
        new_event("aaaaaaaaaaaaaaaa", status=Status.RESOLVED),
    ]
    results = [await store.insert_events(events) for _ in range(5)]
    assert results == [(3, 0)] + [(0, 3)] * 4
    # A new episode (new startsAt) of the same alert is a new event.
    refire = new_event("aaaaaaaaaaaaaaaa", starts_at="2024-05-02T00:00:00Z")
    assert await store.insert_events([refire]) == (1, 0)
    assert await store.queue_depth() == 4


async def test_duplicates_inside_one_batch_count_once(store: Store) -> None:
    a, b, c = new_event("a" * 16), new_event("b" * 16), new_event("c" * 16)
    results = await store.insert_event_groups([[a, b], [a], [b, c], [a, a]])
    assert results == [(2, 0), (0, 1), (1, 1), (0, 2)]


async def test_raw_starts_at_and_labels_survive_round_trip(store: Store) -> None:
    await store.insert_events([new_event()])
    [claim] = await store.claim_events("w1", 10, 30)
    event = claim.event
    assert event.starts_at == "2024-05-01T10:00:00.123456789Z"  # nanoseconds kept verbatim
    assert event.alertname == "HighMemoryUsage"
    assert event.labels["deployment"] == "checkout"
    assert event.group_key == '{}:{alertname="HighMemoryUsage"}'
    assert event.received_at is not None
    assert claim.attempts == 1


async def test_the_queue_depth_counts_pending_and_claimed_events_only(store: Store) -> None:
    # Pending and claimed events are in two partial indexes (migration 0028), each counted.
    await store.insert_events([new_event(f"{i:016x}") for i in range(5)])
    claims = await store.claim_events("w1", 2, 30)
    assert len(claims) == 2
    assert await store.queue_depth() == 5
    assert await store.complete_event(claims[0].event.id, "w1", claims[0].attempts)
    assert await store.queue_depth() == 4
    assert await store.release_event(claims[1].event.id, "w1", claims[1].attempts)
    assert await store.queue_depth() == 4


# Text that JSON escapes, or that PostgreSQL's JSON parser reads as an escape: the batch goes
# to the store as one JSON document (insert_event_groups), and each value must come back as sent.
_AWKWARD = ['"quoted"', "back\\slash", "\\u0041 read literally", "line\nbreak\ttab", "\u2028é€😀"]


async def test_every_field_of_an_event_is_stored_as_sent(store: Store) -> None:
    labels = MappingProxyType(
        {"alertname": "Awkward", **{f"l{i}": v for i, v in enumerate(_AWKWARD)}}
    )
    sent = [
        NewEvent(
            fingerprint=f"{i:016x}",
            starts_at=f"2024-05-01T10:00:0{i}Z",
            status=Status.RESOLVED if i % 2 else Status.FIRING,
            labels=labels,
            annotations=MappingProxyType({"summary": text}),
            ends_at="2024-05-01T11:00:00Z" if i % 2 else ZERO_TIME,
            generator_url=f"http://prometheus/graph?g0.expr={text}",
            group_key=f'{{}}:{{alertname="{text}"}}',
            receiver=text,
            settled_reason=text if i == 0 else None,
        )
        for i, text in enumerate(_AWKWARD)
    ]
    assert await store.insert_event_groups([sent[:2], sent[2:]]) == [(2, 0), (3, 0)]
    rows = await store._pool.fetch(
        """SELECT fingerprint, starts_at, status, ends_at, labels::text, annotations::text,
                  generator_url, alertname, group_key, receiver, settled_reason, state
           FROM alert_events ORDER BY fingerprint"""
    )
    assert [
        (
            r["fingerprint"],
            r["starts_at"],
            r["status"],
            r["ends_at"],
            json.loads(r["labels"]),
            json.loads(r["annotations"]),
            r["generator_url"],
            r["alertname"],
            r["group_key"],
            r["receiver"],
            r["settled_reason"],
            r["state"],
        )
        for r in rows
    ] == [
        (
            e.fingerprint,
            e.starts_at,
            str(e.status),
            e.ends_at,
            dict(e.labels),
            dict(e.annotations),
            e.generator_url,
            "Awkward",
            e.group_key,
            e.receiver,
            e.settled_reason,
            "done" if e.settled_reason else "pending",
        )
        for e in sent
    ]


# -- the queue ----------------------------------------------------------------------------


async def test_concurrent_claimers_never_share_an_event(store: Store) -> None:
    await store.insert_events([new_event(f"{i:016x}") for i in range(300)])
    seen: dict[str, list[int]] = {}

    async def claimer(owner: str) -> None:
        mine = seen.setdefault(owner, [])
        while True:
            claims = await store.claim_events(owner, 7, 30)
            if not claims:
                return
            mine.extend(c.event.id for c in claims)

    await asyncio.gather(*(claimer(f"w{i}") for i in range(8)))
    all_ids = [i for ids in seen.values() for i in ids]
    assert len(all_ids) == 300
    assert len(set(all_ids)) == 300
    assert sum(1 for ids in seen.values() if ids) > 1  # they really ran side by side


async def test_events_of_one_alert_are_claimed_in_order(store: Store) -> None:
    await store.insert_events([new_event("f" * 16), new_event("f" * 16, status=Status.RESOLVED)])
    [first] = await store.claim_events("w1", 10, 30)
    assert first.event.status is Status.FIRING
    # The resolved event waits until the firing one is done, whoever asks.
    assert await store.claim_events("w2", 10, 30) == []
    assert await store.complete_event(first.event.id, "w1", first.attempts)
    [second] = await store.claim_events("w2", 10, 30)
    assert second.event.status is Status.RESOLVED


async def test_expired_lease_is_reclaimed_and_old_owner_cannot_settle(store: Store) -> None:
    await store.insert_events([new_event()])
    [claim] = await store.claim_events("crashed", 10, 0.3)
    assert await store.claim_events("other", 10, 30) == []
    # Real time passing is the behaviour here: the lease runs out on the database's clock.
    [again] = await eventually(lambda: store.claim_events("other", 10, 30))
    assert again.event.id == claim.event.id
    assert again.attempts == 2
    assert not await store.complete_event(claim.event.id, "crashed", claim.attempts)
    assert not await store.release_event(claim.event.id, "crashed", claim.attempts, 0)
    assert not await store.extend_lease(claim.event.id, "crashed", claim.attempts, 30)
    assert await store.complete_event(claim.event.id, "other", again.attempts)
    assert await store.queue_depth() == 0


async def test_extend_lease_keeps_the_claim(database_url: str) -> None:
    # On the store's clock (remediator_now()): time passes when the test says so.
    now = [datetime(2031, 5, 4, 12, 0, tzinfo=UTC)]
    store = await Store.connect(database_url, min_size=1, max_size=2, clock=lambda: now[0])
    try:
        await store.insert_events([new_event()])
        [claim] = await store.claim_events("w1", 10, 0.3)
        assert await store.extend_lease(claim.event.id, "w1", claim.attempts, 30)
        # Past the first lease, the extended one still holds.
        now[0] += timedelta(seconds=0.4)
        assert await store.claim_events("w2", 10, 30) == []
        assert await store.extend_lease(claim.event.id, "w1", claim.attempts, 30)  # still its owner
        # An extension is a lease like the first: once it runs out, the event is free again.
        assert await store.extend_lease(claim.event.id, "w1", claim.attempts, 0.1)
        now[0] += timedelta(seconds=0.2)
        [taken] = await store.claim_events("w2", 10, 30)
        assert (taken.event.id, taken.attempts) == (claim.event.id, 2)
        assert not await store.extend_lease(claim.event.id, "w1", claim.attempts, 30)
    finally:
        await store.close()


async def test_release_delays_the_event_and_keeps_the_error(store: Store) -> None:
    await store.insert_events([new_event()])
    [claim] = await store.claim_events("w1", 10, 30)
    released_at = await store.server_now()
    assert await store.release_event(claim.event.id, "w1", claim.attempts, 0.4, "redis down")
    assert await store.claim_events("w1", 10, 30) == []
    # The delay is real time on the database's clock: claimable again only once it passed.
    [again] = await eventually(lambda: store.claim_events("w1", 10, 30))
    assert (await store.server_now() - released_at).total_seconds() >= 0.4
    assert again.last_error == "redis down"
    assert again.attempts == 2


# -- runs ---------------------------------------------------------------------------------


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
    # still ahead would be dated when it is closed).
    await store._pool.execute(
        """UPDATE runs SET created_at = created_at - interval '100 seconds',
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


# -- audit chain --------------------------------------------------------------------------


async def _some_history(store: Store) -> str:
    run_id = await store.create_run(rule="r", event=alert_event(), target=TARGET, dry_run=False)
    assert run_id is not None
    await store.set_run_outcome(run_id, RunOutcome.RUNNING)
    await store.record_step(run_id, idx=0, action="x.y", outcome="ok", after={"n": 1.5})
    await store.set_run_outcome(run_id, RunOutcome.SUCCEEDED)
    await store.append_audit("config.reload", data={"rules": 4, "name": "ünïcode"})
    return run_id


async def test_audit_chain_verifies_and_is_append_only(store: Store, database_url: str) -> None:
    run_id = await _some_history(store)
    check = await store.verify_audit()
    assert check.ok
    assert check.checked == 5
    ok, bad = check
    assert (ok, bad) == (True, None)
    kinds = [e["kind"] for e in await store.audit_entries(run_id)]
    assert kinds == ["run.created", "run.outcome", "step", "run.outcome"]

    conn = await asyncpg.connect(database_url)
    try:
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await conn.execute("UPDATE audit_log SET kind = 'x'")
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await conn.execute("DELETE FROM audit_log")
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await conn.execute("TRUNCATE audit_log")
    finally:
        await conn.close()


async def test_audit_verify_detects_a_tampered_row(store: Store, database_url: str) -> None:
    await _some_history(store)
    conn = await asyncpg.connect(database_url)
    try:
        target_id = await conn.fetchval("SELECT id FROM audit_log ORDER BY id OFFSET 2 LIMIT 1")
        # What an attacker with owner rights would do: switch the guard off and edit history.
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        await conn.execute(
            "UPDATE audit_log SET data = $2::jsonb WHERE id = $1",
            target_id,
            json.dumps({"outcome": "ok", "message": "nothing to see"}),
        )
        await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    finally:
        await conn.close()
    check = await store.verify_audit()
    assert not check.ok
    assert check.first_bad_id == target_id


async def test_audit_verify_detects_a_deleted_row(store: Store, database_url: str) -> None:
    await _some_history(store)
    conn = await asyncpg.connect(database_url)
    try:
        ids = [r["id"] for r in await conn.fetch("SELECT id FROM audit_log ORDER BY id")]
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        await conn.execute("DELETE FROM audit_log WHERE id = $1", ids[1])
        await conn.execute("DELETE FROM audit_log WHERE id = $1", ids[-1])  # the tail, too
    finally:
        await conn.close()
    check = await store.verify_audit()
    assert not check.ok
    assert check.first_bad_id == ids[2]


async def test_audit_chain_stays_linear_under_concurrent_writers(store: Store) -> None:
    await asyncio.gather(*(store.append_audit("test", data={"i": i}) for i in range(60)))
    await asyncio.gather(
        *(
            store.create_run(
                rule="r", event=alert_event(fingerprint=f"{i:016x}"), target=TARGET, dry_run=False
            )
            for i in range(20)
        )
    )
    check = await store.verify_audit()
    assert check.ok, check
    assert check.checked == 80


async def test_events_blocked_behind_an_older_event_never_hide_it(store: Store) -> None:
    """Guards down: every firing event is released for a retry while its resolved event is
    already stored. The resolved events are due, blocked by the per-alert order, and sort
    before the firing events; more of them than a claim looks at must not stall the queue."""
    n = CLAIM_WINDOW + 20
    await store.insert_events([new_event(f"{i:016x}") for i in range(n)])
    await store.insert_events([new_event(f"{i:016x}", status=Status.RESOLVED) for i in range(n)])
    first = await store.claim_events("a", n, 30)
    assert len(first) == n
    assert {c.event.status for c in first} == {Status.FIRING}
    for c in first:
        assert await store.release_event(c.event.id, "a", c.attempts, 0.0, "guards unavailable")

    again = await store.claim_events("b", 1, 30)
    assert [c.event.status for c in again] == [Status.FIRING]
