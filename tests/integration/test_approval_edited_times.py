"""An approval whose times were edited in the database outside Python's years (year 20000,
BC, 'infinity', '-infinity'): asyncpg raised OverflowError reading it, so the job that takes
its run up (to expire it) failed on every attempt and every read of approvals that met it
failed. Now it is read as stored: its run is taken up alone, as the stored time says (past:
expired; far ahead: still waiting), and every other run's approval is decided and run."""

from __future__ import annotations

import asyncpg
import pytest

from receiver.approvals.state import Decision
from receiver.model import ApprovalState, RunOutcome
from tests.support.approval_deciders import ALICE, API
from tests.support.approvals import MakeApprovalEnv, poke_labels
from tests.support.payloads import alert, notification
from tests.support.polling import eventually

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

# The stored expiry, and whether it has passed (PostgreSQL's clock decides).
TIMES = {"year 20000": ("20000-01-01 00:00:00+00", False),
         "BC": ("0100-01-01 00:00:00+00 BC", True),
         "infinity": ("infinity", False), "-infinity": ("-infinity", True)}  # fmt: skip


@pytest.mark.parametrize(("at", "past"), TIMES.values(), ids=TIMES.keys())
async def test_an_approval_whose_expiry_was_edited_holds_no_other_run(
    approval_env: MakeApprovalEnv, database_url: str, at: str, past: bool
) -> None:
    env = await approval_env()
    h = env.harness
    await h.intake.accept(notification(alert(poke_labels("api")), alert(poke_labels("cart"))))
    await h.drain()
    runs = {r.target.name: r for r in await h.runs()}
    assert {r.outcome for r in runs.values()} == {RunOutcome.AWAITING_APPROVAL}
    edited = await h.store.latest_approval(runs["api"].id, 0)
    other = await h.store.latest_approval(runs["cart"].id, 0)
    assert edited is not None
    assert other is not None
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE approvals SET expires_at = $2::text::timestamptz WHERE id = $1::uuid",
            edited.id,
            at,
        )
        # Its run's job (the expiry's) is due now.
        await conn.execute(
            "UPDATE jobs SET not_before = now() WHERE run_id = $1::uuid", runs["api"].id
        )
    finally:
        await conn.close()

    await env.desk.decide(other.id, Decision.APPROVE, ALICE, API)

    async def outcomes() -> dict[str, RunOutcome]:
        await h.drain()
        return {r.target.name: r.outcome for r in await h.runs()}

    expected = RunOutcome.EXPIRED if past else RunOutcome.AWAITING_APPROVAL
    found = await eventually(
        outcomes, lambda o: o == {"api": expected, "cart": RunOutcome.SUCCEEDED}
    )
    assert found["cart"] == RunOutcome.SUCCEEDED
    approval = await h.store.get_approval(edited.id)
    assert approval is not None
    assert approval.state == (ApprovalState.EXPIRED if past else ApprovalState.PENDING)
    assert approval.unreadable["expires_at"] == (
        f"the stored time {at} is outside the years 1 to 9999 Python can hold"
    )
    assert await h.store.dead_counts() == {"events": 0, "jobs": 0}
