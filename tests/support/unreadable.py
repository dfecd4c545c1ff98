"""What the tests of stored JSON edited in the database share: values jsonb holds that Python
cannot read back (an integer of 5,000 digits, arrays nested 3,000 deep: no write of the service
makes either) or of another shape than the service writes; the edit, made as an operator would,
on a connection of its own; the approver and the audit rows of one kind."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from receiver.approvals.policy import Identity
from receiver.approvals.state import Channel, Decision, Origin
from receiver.model import ApprovalRecord
from receiver.store import Store
from tests.support.approvals import ApprovalEnv

__all__ = ["ALICE", "API", "DEEP", "EDITS", "HUGE", "approve", "audit_of_kind", "edit", "jobs_done"]

# An object holding the number, or the nesting (SQL expressions of jsonb).
HUGE = "('{\"x\": 1' || repeat('0', 5000) || '}')::jsonb"
DEEP = "('{\"x\": ' || repeat('[', 3000) || repeat(']', 3000) || '}')::jsonb"
EDITS = {"a huge number": HUGE, "deep nesting": DEEP, "another shape": "'[1, 2]'::jsonb"}
ALICE = Identity("alice", "operator-token", "alice")
API = Origin(Channel.API, "10.1.1.1", "pytest")


async def edit(database_url: str, sql: str) -> None:
    """Run ``sql`` on a connection of its own (not the store's pool)."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def audit_of_kind(store: Store, kind: str) -> list[dict[str, Any]]:
    """The audit rows of ``kind``, oldest first: their fingerprint and data (decoded)."""
    async with store._pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT fingerprint, data::text AS data FROM audit_log WHERE kind = $1 ORDER BY id",
            kind,
        )
    return [{"fingerprint": r["fingerprint"], "data": json.loads(r["data"])} for r in rows]


async def approve(env: ApprovalEnv, approval: ApprovalRecord) -> None:
    """Approve as alice over the API, then process what that makes due."""
    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API, reason="go")
    await env.harness.drain()


async def jobs_done(env: ApprovalEnv, run_id: str) -> bool:
    """Whether every job of the run is done (none left to fail again, or dead); but the
    ``finish_end`` job an approval queues for its notice (due 30 s after the decision: it
    sends the notice only if the deciding process could not), which may still wait."""
    jobs, _ = await env.harness.store.list_jobs(run_id=run_id)
    states = {j["state"] for j in jobs if j["kind"] != "finish_end"}
    waiting = {j["state"] for j in jobs if j["kind"] == "finish_end"}
    return states == {"done"} and waiting <= {"pending", "done"}
