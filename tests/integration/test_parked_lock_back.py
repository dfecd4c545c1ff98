"""A run that parks at an approval while Redis does not take its target lock back.

Before, the run parked (``awaiting_approval``) with the lock still held: every run on the
Deployment waited out ``guards.lock_ttl`` (10 minutes) while the approval waited for someone.
Now the run stays running and its event is retried, as when its lock is not given back as it
ends; the retry parks it, asking nobody again, and gives the lock back. Its approval and its
``awaiting_approval`` announcement are each made once. The fault is Redis holding every write
(``CLIENT PAUSE WRITE``) once the held step's preview has been read, the lock's release
included; PostgreSQL, Redis and the peer that takes the notices are real.
"""

from __future__ import annotations

from typing import ClassVar

import pytest
import redis.asyncio
from pydantic import BaseModel

from receiver.guards.policy import GuardSettings
from receiver.model import ApprovalState, RunOutcome
from remediations.base import ActionContext, Change
from remediations.targets import Target
from tests.support.approvals import POKE_RULES, MakeApprovalEnv, Peer, Poke, poke_labels
from tests.support.payloads import alert, notification
from tests.support.target_locks import lock_holder, pass_writes_held

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


class PreviewHoldsWrites(Poke):
    """``test.poke`` whose first preview, once read, makes the real Redis behind ``client``
    hold every write back (``CLIENT PAUSE WRITE``, as ``writes_held``): the rest of the pass,
    the lock's release as the run parks, meets a Redis that does not answer, until
    ``pass_writes_held`` lifts it."""

    name: ClassVar[str] = "test.poke_holds_writes"

    def __init__(
        self, base_url: str, client: redis.asyncio.Redis | redis.asyncio.RedisCluster
    ) -> None:
        super().__init__(base_url)
        self.client = client
        self.previews = 0

    async def preview(self, ctx: ActionContext, target: Target, params: BaseModel) -> Change:
        change = await super().preview(ctx, target, params)
        self.previews += 1
        if self.previews == 1:
            await self.client.execute_command("CLIENT", "PAUSE", 60_000, "WRITE")
        return change


ANNOUNCED = POKE_RULES.replace(Poke.name, PreviewHoldsWrites.name) + "    notify: {channel: ops}\n"


@pytest.mark.parametrize(
    ("desk_notices", "announced"),
    [(True, ["run_started"]), (False, ["run_started", "awaiting_approval"])],
    ids=["the desk asks", "the announcement says it"],
)
async def test_a_run_parked_while_redis_kept_its_lock_gives_it_back_on_retry(
    approval_env: MakeApprovalEnv,
    peer: Peer,
    redis_client: redis.asyncio.Redis,
    desk_notices: bool,
    announced: list[str],
) -> None:
    # With the desk's notices, its request says the run waits; without, the announcement.
    holds = PreviewHoldsWrites(peer.url, redis_client)
    env = await approval_env(
        rules=ANNOUNCED,
        notify=desk_notices,
        actions=[holds],
        guard_settings=GuardSettings(timeout_s=0.5),
    )
    h = env.harness
    await h.intake.accept(notification(alert(poke_labels("api"))))
    disposition = await pass_writes_held(h)
    (run,) = await h.runs()
    assert not disposition.is_done, "the run parked with its target lock held"
    assert "could not be given back" in (disposition.error or "")
    assert run.outcome is RunOutcome.RUNNING
    assert await lock_holder(h) == run.id

    await h.drain()
    parked = await h.store.get_run(run.id)
    assert parked is not None
    assert parked.outcome is RunOutcome.AWAITING_APPROVAL, (parked.outcome, parked.error)
    assert await lock_holder(h) is None
    approval = await env.desk.store.latest_approval(run.id, 0)
    assert approval is not None
    assert approval.state is ApprovalState.PENDING
    trail = await h.store.audit_entries(run.id)
    requested = [e for e in trail if e["kind"] == "approval.requested"]
    assert len(requested) == 1  # asked once
    assert env.peer.kinds() == (["approval.requested"] if desk_notices else [])
    assert env.peer.announced() == announced
    assert env.peer.pokes == 0
