"""The worker's calls made together go together (receiver.batching): the runs it writes in one
transaction (store/group.py), the pasts it reads in one round trip (store/history.py), the
admissions it asks in one Redis pipeline (guards/redis_guards.py). Each call still does, and
answers, exactly what it would alone; one that fails fails alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, MutableMapping
from typing import Any

import asyncpg
import pytest
import redis.asyncio
import structlog

from receiver.guards.policy import AdmissionRequest, GuardSettings, GuardUnavailable
from receiver.guards.redis_guards import Guards
from receiver.model import GuardSpec, NamespacePolicy, StepPlan, Target
from receiver.store import EventLease, LeaseFence, LeaseLost, Refused, Store, StoreUnavailable
from receiver.store.group import GroupCommit
from tests.support.events import alert_event, new_event
from tests.support.redis import RedisServer

pytestmark = [pytest.mark.postgres]

STEPS = (
    StepPlan(index=0, action="kubernetes.rollout_restart", params={}, needs_approval=False),
    StepPlan(index=1, action="notify", params={"text": "x"}, needs_approval=False),
)


async def _claimed(store: Store, count: int) -> list[Any]:
    """``count`` alert events stored and claimed by ``owner``, as the worker holds them."""
    for n in range(count):
        labels = {"alertname": "HighMemoryUsage", "namespace": "shop", "deployment": f"web-{n}"}
        await store.insert_events([new_event(f"{n:016x}", labels=labels)])
    claims = await store.claim_events("owner", count, 60.0)
    assert len(claims) == count
    return [c.event for c in claims]


async def _refuse(store: Store, event: Any) -> tuple[str | None, EventLease]:
    lease = EventLease(event.id, "owner", 1)
    run = await store.create_run(
        rule="restart",
        event=event,
        target=Target("Deployment", "shop", event.labels["deployment"]),
        dry_run=True,
        steps=STEPS,
        refusal=Refused("rate", "3 runs an hour", None),
        complete=lease,
    )
    return run, lease


async def test_runs_written_together_are_one_transaction_each_whole(store: Store) -> None:
    events = await _claimed(store, 6)
    before = store._grouped.transactions

    results = await asyncio.gather(*(_refuse(store, e) for e in events))

    assert store._grouped.transactions == before + 1
    xmins = set()
    for (run_id, lease), event in zip(results, events, strict=True):
        assert run_id is not None
        assert lease.completed
        run = await store.get_run(run_id)
        assert run is not None
        assert run.outcome == "refused"
        assert run.event_id == event.id
        assert [s.outcome for s in run.steps] == ["not_run", "not_run"]
        row = await store.get_event(event.id)
        assert row is not None
        assert row["state"] == "done"
        xmins.add(
            await store._pool.fetchval("SELECT xmin::text FROM runs WHERE id = $1::uuid", run_id)
        )
        xmins.add(
            await store._pool.fetchval(
                "SELECT xmin::text FROM alert_events WHERE id = $1", event.id
            )
        )
        kinds = await store._pool.fetch(
            "SELECT kind FROM audit_log WHERE run_id = $1::uuid ORDER BY id", run_id
        )
        assert [k["kind"] for k in kinds] == ["run.created"]  # the refusal in its data
    assert len(xmins) == 1  # every run and every completion: one transaction
    check = await store.verify_audit()
    assert check.ok, check


async def test_writing_a_run_again_together_with_others_changes_nothing(store: Store) -> None:
    events = await _claimed(store, 4)
    first = await asyncio.gather(*(_refuse(store, e) for e in events[:2]))
    again = await asyncio.gather(*(_refuse(store, e) for e in events), return_exceptions=True)
    # The two stored already are not stored again: their events' claims ended with them
    # (completed), so the copies are refused by the lease fence (receiver/store/fence.py),
    # alone; the two new ones are stored, in the same group.
    for refused, event in zip(again[:2], events, strict=False):
        assert isinstance(refused, LeaseLost), refused
        assert refused.fence == LeaseFence("event", event.id, "owner", 1)
    assert all(not isinstance(result, BaseException) and result[0] for result in again[2:])
    assert all(lease.completed for _, lease in first)
    runs = await store._pool.fetchval("SELECT count(*) FROM runs")
    assert runs == 4


async def test_a_statement_that_fails_fails_alone(database_url: str, store: Store) -> None:
    await store._pool.execute("CREATE TABLE grouped_probe (a int PRIMARY KEY)")
    await store._pool.execute("INSERT INTO grouped_probe VALUES (2)")
    warnings: list[dict[str, Any]] = []

    def capture(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
        warnings.append(dict(event))
        raise structlog.DropEvent

    log = structlog.wrap_logger(None, processors=[capture])
    group = GroupCommit(store._pool, log=log)
    sql = "INSERT INTO grouped_probe VALUES ($1) RETURNING a"

    results = await asyncio.gather(
        *(group.fetchrow(sql, n) for n in (1, 2, 3)), return_exceptions=True
    )

    first, failed, third = results
    assert not isinstance(first, BaseException)
    assert not isinstance(third, BaseException)
    assert first["a"] == 1
    assert third["a"] == 3
    assert isinstance(failed, asyncpg.UniqueViolationError)
    stored = await store._pool.fetch("SELECT a FROM grouped_probe ORDER BY a")
    assert [r["a"] for r in stored] == [1, 2, 3]
    assert warnings
    assert warnings[0]["event"].startswith("group commit failed")
    assert warnings[0]["statements"] == 3
    # The error is described without the values of the other statements.
    assert warnings[0]["error"] == "UniqueViolationError (SQLSTATE 23505)"


async def test_a_group_that_cannot_reach_the_store_fails_every_statement(
    store: Store,
) -> None:
    pool = await asyncpg.create_pool(store.dsn, min_size=1, max_size=1)
    group = GroupCommit(pool)
    await pool.close()
    results = await asyncio.gather(
        *(group.fetchrow("SELECT $1::int AS a", n) for n in range(3)), return_exceptions=True
    )
    assert len(results) == 3
    assert all(isinstance(r, StoreUnavailable | asyncpg.InterfaceError) for r in results)


async def test_pasts_read_together_are_each_what_they_are_alone(store: Store) -> None:
    events = await _claimed(store, 3)
    target = Target("Deployment", "shop", "web-0")
    await _refuse(store, events[0])
    asks = [
        (alert_event(10, "a" * 16), [("restart", target)]),
        (alert_event(11, "b" * 16), [("restart", Target("Deployment", "shop", "web-1"))]),
        (events[0], [("restart", target), ("other", target)]),
        (alert_event(12, "c" * 16), []),
    ]
    alone = [await store.history(e, 3600, repeats=pairs) for e, pairs in asks]
    before = store._history_reads.batches

    together = await asyncio.gather(*(store.history(e, 3600, repeats=p) for e, p in asks))

    assert list(together) == alone
    assert store._history_reads.batches == before + 1  # one round trip for the four
    assert len(alone[0].recent_runs) == 1
    assert alone[1].recent_runs == ()
    assert len(alone[2].episode_runs) == 1


@pytest.mark.redis
async def test_admissions_asked_together_are_one_pipeline_and_each_atomic(
    redis_client: redis.asyncio.Redis,
) -> None:
    guards = Guards(redis_client, NamespacePolicy(), GuardSettings(key_prefix="coalesced:"))
    spec = GuardSpec(None, 3, 3600)
    requests = [
        AdmissionRequest(
            run_id=f"run-{n}",
            rule="restart",
            target=Target("Deployment", "shop", f"web-{n}"),
            disruptive=False,
            spec=spec,
        )
        for n in range(10)
    ]
    # A server that forgot the script (restarted, failed over) is sent it again.
    await redis_client.script_flush()
    assert guards._admit.batches is not None
    before = guards._admit.batches.batches

    admissions = await asyncio.gather(*(guards.admit(r) for r in requests))

    assert guards._admit.batches.batches == before + 1
    assert [a.admitted for a in admissions] == [True] * 3 + [False] * 7
    assert {a.refusal.guard for a in admissions[3:] if a.refusal} == {"rate"}
    # Asked again, each answers the same (a run's own entries never refuse it).
    again = await asyncio.gather(*(guards.admit(r) for r in requests[:3]))
    assert all(a.admitted for a in again)


@pytest.mark.redis
async def test_an_admission_whose_caller_gave_up_while_it_was_queued_is_not_made(
    redis_controlled: RedisServer, redis_client: redis.asyncio.Redis
) -> None:
    """A caller that timed out (GuardUnavailable: its run stays pending) before its admission
    was sent must not find it made afterwards: its target locked and its slots taken by a run
    that was told the guards did not answer."""
    guards = Guards(redis_client, NamespacePolicy(), GuardSettings(timeout_s=0.3))
    await guards.probe()
    assert guards._admit.batches is not None

    def ask(n: int) -> AdmissionRequest:
        return AdmissionRequest(
            run_id=f"run-{n}",
            rule="restart",
            target=Target("Deployment", "shop", f"web-{n}"),
            disruptive=False,
            spec=GuardSpec(None, None, None),
        )

    redis_controlled.freeze()
    try:
        # Two admissions on their way (the most there are), a third queued behind them.
        asked = []
        for n in range(3):
            asked.append(asyncio.ensure_future(guards.admit(ask(n))))
            for _ in range(5):
                await asyncio.sleep(0)
        results = await asyncio.gather(*asked, return_exceptions=True)
        assert all(isinstance(r, GuardUnavailable) for r in results)
    finally:
        redis_controlled.thaw()
    # What was on its way is answered now (a request sent cannot be taken back).
    for _ in range(100):
        if not any(not s.done() for s in guards._admit.batches._senders):
            break
        await asyncio.sleep(0.02)
    assert not await redis_client.exists(guards._keys.lock(ask(2).target))
    assert guards._admit.batches.calls == 2


async def test_a_run_on_its_way_when_its_caller_left_is_written_before_the_caller_is_gone(
    store: Store,
) -> None:
    """A worker that stops (or loses its lease) cancels the event's work, then releases the
    event. A run the work had sent must be written, or not, by the time the work has ended:
    committed after the release, the event's next holder may plan the same run first, find
    it stored by "another worker" and drop the event, leaving the run running with no one to
    run its steps (and an admitted run's target lock held)."""
    (event,) = await _claimed(store, 1)
    blocker = await asyncpg.connect(store.dsn)
    try:
        holding = blocker.transaction()
        await holding.start()
        # Every write that appends to the audit chain waits for this lock at its commit.
        await blocker.execute("SELECT 1 FROM audit_head FOR UPDATE")
        writing = asyncio.ensure_future(
            store.create_run(
                rule="restart",
                event=event,
                target=Target("Deployment", "shop", "web-0"),
                dry_run=True,
                steps=STEPS,
                admitted={"guards": ["lock"], "fence": 1},
            )
        )
        for _ in range(200):
            if await store._pool.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted"):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the run was never on its way")
        writing.cancel()

        async def unblock() -> None:
            await asyncio.sleep(0.3)
            await holding.rollback()

        unblocking = asyncio.ensure_future(unblock())
        with pytest.raises(asyncio.CancelledError):
            await writing
        # The work has ended: here the worker releases the event.
        when_left = await store._pool.fetchval("SELECT count(*) FROM runs")
        await unblocking
    finally:
        await blocker.close()
    for _ in range(100):
        if not any(not s.done() for s in store._grouped._coalescer._senders):
            break
        await asyncio.sleep(0.02)
    assert await store._pool.fetchval("SELECT count(*) FROM runs") == when_left == 1


async def test_a_group_that_committed_is_never_written_again(store: Store) -> None:
    """A statement that breaks the one-row rule is found out once the group has committed:
    writing each statement again then would run every other one twice."""
    await store._pool.execute("CREATE TABLE grouped_counter (id int PRIMARY KEY, n int)")
    await store._pool.execute("INSERT INTO grouped_counter VALUES (1, 0), (2, 0)")
    group = GroupCommit(store._pool)
    sql = "UPDATE grouped_counter SET n = n + 1 WHERE id = $1 RETURNING n"

    results = await asyncio.gather(
        *(group.fetchrow(sql, n) for n in (1, 2, 3)), return_exceptions=True
    )

    assert all(isinstance(r, RuntimeError) for r in results)
    counts = await store._pool.fetch("SELECT id, n FROM grouped_counter ORDER BY id")
    assert [(r["id"], r["n"]) for r in counts] == [(1, 1), (2, 1)]
