"""A run that parks at an approval while Redis does not take its target lock back.

Before, the run parked (``awaiting_approval``) with the lock still held: every run on the
Deployment waited out ``guards.lock_ttl`` (10 minutes) while the approval waited for someone.
Now the run stays running and its event is retried, as when its lock is not given back as it
ends; the retry parks it, asking nobody again, and gives the lock back. Its approval and its
``awaiting_approval`` announcement are each made once. The fault is the one Redis call, the
release, raising as an unreachable Redis makes it raise; PostgreSQL, Redis and the peer that
takes the notices are real.
"""

from __future__ import annotations

import pytest

from receiver.model import ApprovalState, RunOutcome
from tests.support.approvals import POKE_RULES, MakeApprovalEnv, poke_labels
from tests.support.payloads import alert, notification
from tests.support.target_locks import lock_holder, pass_unreleased

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ANNOUNCED = POKE_RULES + "    notify: {channel: ops}\n"


@pytest.mark.parametrize(
    ("desk_notices", "announced"),
    [(True, ["run_started"]), (False, ["run_started", "awaiting_approval"])],
    ids=["the desk asks", "the announcement says it"],
)
async def test_a_run_parked_while_redis_kept_its_lock_gives_it_back_on_retry(
    approval_env: MakeApprovalEnv,
    monkeypatch: pytest.MonkeyPatch,
    desk_notices: bool,
    announced: list[str],
) -> None:
    # With the desk's notices, its request says the run waits; without, the announcement.
    env = await approval_env(rules=ANNOUNCED, notify=desk_notices)
    h = env.harness
    await h.intake.accept(notification(alert(poke_labels("api"))))
    disposition = await pass_unreleased(h, monkeypatch)
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
