"""A new run whose admission the store refuses to record, while Redis does not take its target
lock back either.

Redis admits the run (its target lock now under the run's id); storing the run admitted then
fails, and the lock's release, Redis holding every write by then, fails too. Before, that
second failure was swallowed unsaid: the target stayed locked for ``guards.lock_ttl`` by a run
with no admission on record, and nothing named it. Now it is logged with the run's id and both
errors; the store's error is still the one raised (the event is kept for its retry), and the
lock stays held, the safe side. Real PostgreSQL and Redis: the store's fault is a trigger that
refuses the run, the test choosing when (it waits on an advisory lock the test holds); Redis's,
``CLIENT PAUSE WRITE`` set while the trigger waits.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
import redis.asyncio
from structlog.testing import capture_logs

from receiver.guards.policy import GuardSettings
from receiver.store import EventLease
from tests.support.payloads import alert, notification
from tests.support.pipeline import MakeHarness
from tests.support.polling import eventually
from tests.support.target_locks import lock_holder, writes_held

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

RULE = """
rules:
  - name: restart-web
    match: ['alertname="HighMemoryUsage"']
    target: {kind: Deployment, namespace: shop, name: web}
    steps:
      - action: kubernetes.rollout_restart
"""
LABELS = {"alertname": "HighMemoryUsage", "namespace": "shop", "pod": "web-1"}
# The advisory lock the trigger waits on: the test holds it until Redis holds its writes.
GATE = 740_021


async def _waiting_on_the_gate(conn: asyncpg.Connection) -> bool:
    return bool(
        await conn.fetchval(
            """SELECT EXISTS (SELECT 1 FROM pg_locks
                              WHERE locktype = 'advisory' AND objid = $1 AND NOT granted)""",
            GATE,
        )
    )


async def test_a_lock_kept_after_an_unrecorded_admission_is_logged_with_its_run(
    make_harness: MakeHarness, redis_client: redis.asyncio.Redis
) -> None:
    h = await make_harness(RULE, GuardSettings(timeout_s=0.5))
    async with h.store._pool.acquire() as gate:
        await gate.execute(
            f"""CREATE FUNCTION refuse_run() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN PERFORM pg_advisory_xact_lock({GATE});
                      RAISE EXCEPTION 'the run cannot be stored'; END; $$;
                CREATE TRIGGER refuse_run BEFORE INSERT ON runs
                FOR EACH ROW EXECUTE FUNCTION refuse_run();"""
        )
        await gate.execute("SELECT pg_advisory_lock($1)", GATE)
        await h.intake.accept(notification(alert(LABELS)))
        (claimed,) = await h.store.claim_events(h.owner, 1, 30.0)
        with capture_logs() as logs:
            passed = asyncio.create_task(
                h.pipeline(claimed.event, EventLease(claimed.event.id, h.owner, claimed.attempts))
            )
            try:
                # Redis admitted the run; the store's insert of it waits at the gate.
                await eventually(lambda: _waiting_on_the_gate(gate), what="the run's insert")
                async with writes_held(redis_client):
                    await gate.execute("SELECT pg_advisory_unlock($1)", GATE)
                    with pytest.raises(asyncpg.RaiseError, match="the run cannot be stored"):
                        await passed
            finally:
                passed.cancel()

    [kept] = [e for e in logs if e.get("release_error") is not None]
    assert kept["log_level"] == "warning"
    assert "nor its target lock given back" in kept["event"]
    assert "the run cannot be stored" in kept["error"]
    assert "release" in kept["release_error"]
    # Fail closed: the lock stays with the run the log names, no other run acts meanwhile.
    assert kept["run_id"]
    assert await lock_holder(h) == kept["run_id"]
    assert await h.runs() == []
