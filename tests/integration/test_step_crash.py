"""A worker that stops between a step's action and its record, and the run taken up again.

The crash is made where a dying process makes it: the step's record write raises a
BaseException (nothing in the pipeline catches it), after the action acted. Another worker then
processes the same claimed event, as it does once the first one's lease ran out. An action that
must not act twice (``replay_safe`` False: PostgreSQL signals, the Redis requeue) is not called
again: its step reads ``interrupted`` and the run fails, saying why; one that may (Kubernetes,
notify) runs again as before.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis.asyncio
from kubernetes_asyncio import client as k8s
from pydantic import BaseModel

from receiver.model import RunOutcome
from receiver.store import EventLease, RunRecord, StepStart, StoreUnavailable
from remediations.base import ActionContext, Clients, Outcome, Result
from remediations.postgres.connection import PostgresConnection
from remediations.postgres.sessions import TerminateIdle, TerminateIdleParams
from remediations.redis_queue.queues import Layout, QueueSpec, RedisQueues
from remediations.targets import Target
from tests.support.kube_fixtures import MakeDeployment
from tests.support.leases import take_over
from tests.support.payloads import alert, notification
from tests.support.pipeline import Harness, MakeHarness
from tests.support.polling import eventually
from tests.support.postgres import PostgresServer
from tests.support.rules import Restart
from tests.support.sessions import Sessions

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


class WorkerDied(BaseException):
    """What the process's death looks like from inside: nothing catches it."""


class Count(Restart):
    """A step that changes something each time it is called, and counts the calls."""

    name: ClassVar[str] = "test.count"
    replay_safe: ClassVar[bool] = False
    disruptive: ClassVar[bool] = True

    def __init__(self) -> None:
        self.calls = 0

    async def run(self, ctx: ActionContext, target: Target, params: BaseModel) -> Result:
        self.calls += 1
        return Result(Outcome.OK, f"counted to {self.calls}", {"n": self.calls - 1}, {})


class SafeCount(Count):
    """The same, declared safe to call again (as the Kubernetes actions are)."""

    name: ClassVar[str] = "test.safe_count"
    replay_safe: ClassVar[bool] = True


def _rule(action: str, params: str = "{}", on_resolved: str = "") -> str:
    return f"""
rules:
  - name: once
    match: ['alertname="HighMemoryUsage"']
    target: {{kind: TARGET}}
    steps:
      - action: {action}
        params: {params}
{on_resolved}"""


DEPLOYMENT = 'Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"'
TARGET_DB = Target("PostgresDatabase", "", "orders")
LABELS = {"alertname": "HighMemoryUsage", "namespace": "shop", "deployment": "web"}


async def _crash_then_take_up(
    h: Harness, monkeypatch: pytest.MonkeyPatch, action: str, labels: dict[str, str]
) -> RunRecord:
    """Worker A runs the event and dies as it records ``action``'s end; worker B then takes
    the event over (A's lease ran out) and processes it. The run as the store holds it
    afterwards."""
    await h.intake.accept(notification(alert(labels)))
    (claimed,) = await h.store.claim_events("worker-a", 1, 30.0)
    record_step = h.store.record_step

    async def dying(run_id: str, **fields: Any) -> None:
        if fields["action"] == action and fields["outcome"] != "pending":
            raise WorkerDied(f"worker-a died before recording {action}")
        await record_step(run_id, **fields)

    monkeypatch.setattr(h.store, "record_step", dying)
    with pytest.raises(WorkerDied):
        await h.pipeline(claimed.event, EventLease(claimed.event.id, "worker-a", claimed.attempts))
    monkeypatch.setattr(h.store, "record_step", record_step)
    lease = await take_over(h.store, claimed.event.id, "worker-b")
    disposition = await h.pipeline(claimed.event, lease)
    assert disposition.is_done
    return await h.only_run()


async def _step_trail(h: Harness, run_id: str) -> list[str]:
    """The outcomes the run's step audit rows recorded, in order."""
    entries = await h.store.audit_entries(run_id)
    return [e["data"]["outcome"] for e in entries if e["kind"] == "step"]


async def test_a_step_that_must_not_act_twice_is_recorded_interrupted(
    make_harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = Count()
    rules = _rule("test.count").replace("TARGET", DEPLOYMENT)
    h = await make_harness(rules, dry_run=False, extra_actions=[count])

    run = await _crash_then_take_up(h, monkeypatch, "test.count", LABELS)

    assert count.calls == 1
    assert run.outcome is RunOutcome.FAILED
    assert run.error is not None
    assert "a worker stopped while a step ran" in run.error
    (step,) = run.steps
    assert step.outcome == Outcome.INTERRUPTED
    assert "it may have acted" in step.message
    assert "started (attempt " in step.message  # the attempt the stopped worker made
    trail = [
        e["data"]["outcome"] for e in await h.store.audit_entries(run.id) if e["kind"] == "step"
    ]
    assert trail == ["pending", "started", "interrupted"]


async def test_a_step_safe_to_replay_runs_again_as_before(
    make_harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = SafeCount()
    rules = _rule("test.safe_count").replace("TARGET", DEPLOYMENT)
    h = await make_harness(rules, dry_run=False, extra_actions=[count])

    run = await _crash_then_take_up(h, monkeypatch, "test.safe_count", LABELS)

    assert count.calls == 2  # its own replay guard (a write record) makes the second a no-op
    assert run.outcome is RunOutcome.SUCCEEDED
    assert [s.outcome for s in run.steps] == [Outcome.OK]
    trail = [
        e["data"]["outcome"] for e in await h.store.audit_entries(run.id) if e["kind"] == "step"
    ]
    assert trail == ["pending", "ok"]  # no mark: no extra write for it


async def test_a_mark_whose_answer_was_lost_is_the_retry_s_own_and_it_acts(
    make_harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The mark commits, but its answer never comes (the store went away, or the statement
    # outlived the command timeout): the event is retried, in this process. No worker stopped
    # and nothing acted: the retry finds its own attempt's mark and acts, once.
    count = Count()
    h = await make_harness(
        _rule("test.count").replace("TARGET", DEPLOYMENT), dry_run=False, extra_actions=[count]
    )
    await h.intake.accept(notification(alert(LABELS)))
    (claimed,) = await h.store.claim_events("worker-a", 1, 30.0)
    start_step = h.store.start_step

    async def answer_lost(run_id: str, **fields: Any) -> StepStart:
        await start_step(run_id, **fields)
        raise StoreUnavailable("connection lost: the answer to the statement never came")

    monkeypatch.setattr(h.store, "start_step", answer_lost)
    with pytest.raises(StoreUnavailable):
        await h.pipeline(claimed.event, EventLease(claimed.event.id, "worker-a", claimed.attempts))
    assert count.calls == 0
    assert [s.outcome for s in (await h.only_run()).steps] == ["started"]
    monkeypatch.setattr(h.store, "start_step", start_step)

    disposition = await h.pipeline(
        claimed.event, EventLease(claimed.event.id, "worker-a", claimed.attempts)
    )

    assert disposition.is_done
    assert count.calls == 1
    run = await h.only_run()
    assert run.outcome is RunOutcome.SUCCEEDED, run.error
    assert [(s.outcome, s.message) for s in run.steps] == [(Outcome.OK, "counted to 1")]
    assert await _step_trail(h, run.id) == ["pending", "started", "ok"]


async def test_a_started_step_is_not_planned_again_by_a_retried_resolve(
    make_harness: MakeHarness,
) -> None:
    # A retried resolved event records its on_resolved steps pending again: a step a worker
    # stopped in keeps its mark, or the take-up would act a second time.
    h = await make_harness(
        _rule("test.count").replace("TARGET", DEPLOYMENT), extra_actions=[Count()]
    )
    await h.intake.accept(notification(alert(LABELS)))
    (claimed,) = await h.store.claim_events("worker-a", 1, 30.0)
    run_id = await h.store.create_run(
        rule="once", event=claimed.event, target=Target("Deployment", "shop", "web"), dry_run=False
    )
    assert run_id is not None

    async def pending() -> None:
        await h.store.record_step(
            run_id, idx=0, phase="resolve", action="test.count", outcome="pending"
        )

    async def start(attempt: str) -> StepStart:
        return await h.store.start_step(
            run_id,
            phase="resolve",
            idx=0,
            action="test.count",
            attempt=attempt,
            what="",
            started_at=datetime.now(UTC),
        )

    await pending()
    assert (await start("a1")).started
    await pending()
    again = await start("a2")
    assert not again.started
    assert (again.outcome, again.message) == ("started", "started (attempt a1)")


@pytest.fixture
async def app_role(pg_server: PostgresServer) -> AsyncIterator[tuple[str, str]]:
    """(the README's least-privilege remediator role, an application role), made for the test."""
    suffix = os.urandom(3).hex()
    remediator, app = f"remediator_{suffix}", f"app_{suffix}"
    admin = await asyncpg.connect(pg_server.url("postgres"))
    try:
        await admin.execute(f"CREATE ROLE {remediator} LOGIN NOSUPERUSER")
        await admin.execute(f"GRANT pg_signal_backend, pg_read_all_stats TO {remediator}")
        await admin.execute(f"CREATE ROLE {app} LOGIN")
        yield remediator, app
    finally:
        for role in (remediator, app):
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role
            )
            await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()


def _as(url: str, role: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(
        (parts.scheme, f"{role}@{parts.netloc.rpartition('@')[2]}", parts.path, "", "")
    )


async def test_terminate_idle_taken_up_after_a_crash_ends_no_more_than_its_cap(
    make_harness: MakeHarness,
    monkeypatch: pytest.MonkeyPatch,
    empty_database_url: str,
    app_role: tuple[str, str],
) -> None:
    # The reviewer's reproduction: 4 sessions idle in transaction, max_sessions 2; worker A
    # dies after the signal, before its record. Worker B must not end the other two.
    remediator, app = app_role
    connection = PostgresConnection("orders", _as(empty_database_url, remediator))
    sessions = Sessions()
    try:
        idle = [
            await sessions.idle(_as(empty_database_url, app), transaction=True) for _ in range(4)
        ]
        action, params = TerminateIdle(), TerminateIdleParams(roles=(app,), idle_for="1s")
        ctx = ActionContext("probe", False, Clients({"postgres:orders": connection}))
        await eventually(
            lambda: action.preview(ctx, TARGET_DB, params), lambda c: len(c.before["sessions"]) == 4
        )
        rules = _rule(
            "postgres.terminate_idle", f"{{roles: [{app}], idle_for: 1s, max_sessions: 2}}"
        ).replace("TARGET", 'PostgresDatabase, name: "{{ labels.database }}"')
        h = await make_harness(rules, dry_run=False, clients={"postgres:orders": connection})

        run = await _crash_then_take_up(
            h, monkeypatch, "postgres.terminate_idle", {**LABELS, "database": "orders"}
        )

        alive = [
            not s.is_closed() and await _alive(empty_database_url, s.get_server_pid()) for s in idle
        ]
        assert alive.count(True) == 2  # the cap held across the crash
        assert run.outcome is RunOutcome.FAILED
        (step,) = run.steps
        assert step.outcome == Outcome.INTERRUPTED
        assert "check PostgresDatabase/orders by hand" in step.message
    finally:
        await sessions.close()
        await connection.close()


async def _alive(url: str, pid: int) -> bool:
    admin = await asyncpg.connect(url)
    try:
        return bool(
            await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid)
        )
    finally:
        await admin.close()


async def test_requeue_taken_up_after_a_crash_moves_no_more_than_its_cap(
    make_harness: MakeHarness,
    monkeypatch: pytest.MonkeyPatch,
    redis_client: redis.asyncio.Redis,
    redis_url: str,
) -> None:
    await redis_client.rpush("crash:dead", *[f"m{i}" for i in range(10)])
    queues = RedisQueues(
        "jobs",
        redis.asyncio.Redis.from_url(redis_url),
        {"emails": QueueSpec(Layout.LIST, "crash:work", "crash:dead")},
    )
    try:
        rules = _rule("redis.requeue_dead_letters", "{max_messages: 3}").replace(
            "TARGET", 'RedisQueue, name: "jobs/{{ labels.queue }}"'
        )
        h = await make_harness(rules, dry_run=False, clients={"redis:jobs": queues})

        run = await _crash_then_take_up(
            h, monkeypatch, "redis.requeue_dead_letters", {**LABELS, "queue": "emails"}
        )

        assert await redis_client.llen("crash:work") == 3
        assert await redis_client.llen("crash:dead") == 7
        assert run.outcome is RunOutcome.FAILED
        assert [s.outcome for s in run.steps] == [Outcome.INTERRUPTED]
    finally:
        await queues.close()


@pytest.mark.kube
async def test_a_kubernetes_step_taken_up_after_a_crash_resumes_as_before(
    make_harness: MakeHarness,
    monkeypatch: pytest.MonkeyPatch,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    # No mark, no interruption: the take-up finds its own write record on the Deployment,
    # writes nothing more and records the first attempt's change.
    await make_deployment("web")
    rules = _rule("kubernetes.scale", "{delta: 2, max: 5}").replace("TARGET", DEPLOYMENT)
    h = await make_harness(rules, kube=kube_admin, dry_run=False)

    run = await _crash_then_take_up(
        h, monkeypatch, "kubernetes.scale", {**LABELS, "namespace": kube_namespace}
    )

    assert run.outcome is RunOutcome.SUCCEEDED
    (step,) = run.steps
    assert step.outcome == Outcome.OK
    assert "already applied by this run before a restart" in step.message
    dep = await k8s.AppsV1Api(kube_admin).read_namespaced_deployment("web", kube_namespace)
    assert dep.spec.replicas == 3  # 1 + 2, once
    assert await _step_trail(h, run.id) == ["pending", "ok"]
