"""The guards decide on Redis's clock (its TIME), the pipeline waits on its own: a refusal's
wait is measured on the clock that made it, so a Redis whose clock is behind the service's
does not turn a wait for the target lock into a loop of asks. Real PostgreSQL and Redis; the
Redis clock's skew is the guards' injected clock (``Guards(clock=...)``), set behind the
service's."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from receiver.guards.policy import AdmissionRequest
from receiver.model import GuardSpec, RunOutcome
from remediations.targets import Target
from tests.support.payloads import alert, notification
from tests.support.pipeline import RESTART_WEB, MakeHarness
from tests.support.pipeline_restart import BUMP, Bump, labels

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

LABELS = {"alertname": "HighMemoryUsage", "namespace": "shop", "deployment": "web"}
WEB = Target("Deployment", "shop", "web")
# The guards' Redis clock, this far behind the service's: more than the lock's life left.
BEHIND = timedelta(hours=1)


def _behind() -> datetime:
    return datetime.now(UTC) - BEHIND


async def test_a_lock_wait_is_measured_on_the_guards_clock_not_the_services(
    make_harness: MakeHarness,
) -> None:
    h = await make_harness(RESTART_WEB, lock_wait_s=3.0, guard_clock=_behind)
    other = AdmissionRequest(
        "00000000-0000-0000-0000-00000000abcd", "other-rule", WEB, False, GuardSpec()
    )
    assert (await h.guards.admit(other)).admitted  # held for lock_ttl (10 min) on Redis's clock
    await h.intake.accept(notification(alert(LABELS)))
    await h.drain()
    waiting = await h.only_run()
    assert waiting.outcome is RunOutcome.PENDING

    # Its job is due after lock_wait_s (the lock has 10 minutes left), not at once: on the
    # service's clock the lock's expiry had passed an hour ago, and the job came due every
    # 0.1 s, each a refusal and an audit row, until the lock was released.
    deadline = asyncio.get_running_loop().time() + 1.5
    while asyncio.get_running_loop().time() < deadline:
        await h.drain()
        await asyncio.sleep(0.05)
    audit = await h.store.audit_entries(waiting.id)
    waits = [e for e in audit if e["data"].get("waiting_for") == "lock"]
    assert len(waits) == 1, waits


async def test_an_undo_held_by_a_timed_pause_waits_on_the_guards_clock(
    make_harness: MakeHarness,
) -> None:
    rules = BUMP + "    on_resolved:\n      - action: test.bump\n"
    h = await make_harness(
        rules, dry_run=False, extra_actions=[Bump()], guard_clock=_behind, resolve_retry_s=60.0
    )
    await h.intake.accept(notification(alert(labels())))
    await h.drain()
    # Ten minutes of pause on Redis's clock: the held step is asked again at most a minute
    # later (resolve_retry_s), not every second (on the service's clock it ended an hour ago).
    await h.guards.pause(600, "deploy freeze")
    await h.intake.accept(notification(alert(labels(), status="resolved")))
    await h.drain()
    undo = [s for s in (await h.only_run()).steps if s.phase == "resolve"]
    assert [s.outcome for s in undo] == ["pending"]
    assert undo[0].message is not None
    assert "held by the pause guard" in undo[0].message
    assert undo[0].message.endswith("tried again in 60s"), undo[0].message
