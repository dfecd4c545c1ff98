"""An undo carried over from an earlier episode is the one its run was planned with.

Review stop 28, findings 3 and 4 together: run R1 (episode S1) is open when its rule is
reloaded with another ``on_resolved``; the alert then fires as a new episode S2 (a later
``startsAt``: S1's resolution was lost), which closes R1 with its undo deferred, and S2
resolves. R1's carried undo must be the steps kept with R1 (``runs.on_resolved``), through the
same resolve stages as any undo (an approval it needs is asked for), not the rule as loaded
when S2 resolves. Before, the carried undo was planned from the loaded rule: an edited undo ran
the new steps, a renamed rule left R1 with nothing undone, and an undo planned as needing an
approval ran without one when the reload dropped it.

Real PostgreSQL, Redis and a local HTTP peer (``tests.support.approvals``): each step is a bump
of a counter on the peer, so "the undo ran" is counted by a server.
"""

from __future__ import annotations

import pytest

from receiver.model import ApprovalState
from receiver.store import RunRecord
from tests.support.approvals import ApprovalEnv, MakeApprovalEnv, poke_labels
from tests.support.payloads import alert, notification

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

S1 = "2026-11-25T10:00:00Z"
S2 = "2026-11-25T10:00:07Z"

RULE = """
rules:
  - name: {name}
    match: ['alertname="Poke"']
    target:
      kind: Deployment
      namespace: "{{{{ labels.namespace }}}}"
      name: "{{{{ labels.deployment }}}}"
    steps:
      - action: test.poke
        approval: never
    on_resolved:
{undo}"""

POKE_BACK = """      - action: test.poke
        approval: never
"""

# An edited undo: the counter is at 0 or more already, so it is a noop that changes nothing.
NOOP_BACK = """      - action: test.poke
        params: {up_to: 0}
        approval: never
"""

# test.poke is high-risk: without `approval: never` its undo waits for an engineer.
ASKED_BACK = """      - action: test.poke
        approval: required
"""


async def send(env: ApprovalEnv, starts_at: str, status: str = "firing") -> None:
    """One Poke alert of episode ``starts_at`` in through intake, processed to the end."""
    h = env.harness
    await h.intake.accept(notification(alert(poke_labels(), starts_at=starts_at, status=status)))
    await h.drain()
    assert await h.store.queue_depth() == 0


async def run_of(env: ApprovalEnv, starts_at: str) -> RunRecord:
    (found,) = [r for r in await env.harness.runs() if r.starts_at == starts_at]
    run = await env.harness.store.get_run(found.id)
    assert run is not None
    return run


def undo_steps(run: RunRecord) -> list[tuple[int, str, object, str]]:
    """The run's resolve steps: index, action, its ``up_to`` param (None: a plain poke) and
    outcome."""
    return [
        (s.idx, s.action, (s.params or {}).get("up_to"), s.outcome)
        for s in run.steps
        if s.phase == "resolve"
    ]


async def two_episodes(env: ApprovalEnv, reloaded: str) -> RunRecord:
    """R1 acts for S1; the rules are reloaded; S2 fires (closing R1, its undo deferred) and
    resolves. Returns R1 as it is after S2's resolution."""
    await send(env, S1)
    assert env.peer.pokes == 1
    env.harness.reload_rules(reloaded)
    await send(env, S2)
    first = await run_of(env, S1)
    assert first.resolution_inferred_from == S2
    assert first.undo_deferred
    await send(env, S2, status="resolved")
    return await run_of(env, S1)


@pytest.mark.parametrize(
    "reloaded",
    [
        pytest.param(RULE.format(name="poke", undo=NOOP_BACK), id="edited"),
        pytest.param(RULE.format(name="poke-v2", undo=NOOP_BACK), id="renamed"),
    ],
)
async def test_a_carried_undo_is_the_one_its_run_was_planned_with(
    approval_env: MakeApprovalEnv, reloaded: str
) -> None:
    env = await approval_env(rules=RULE.format(name="poke", undo=POKE_BACK))
    first = await two_episodes(env, reloaded)
    second = await run_of(env, S2)
    # S2's run was planned under the reloaded rule: its undo is the noop, changing nothing.
    assert undo_steps(second) == [(1, "test.poke", 0, "noop")]
    # R1's carried undo is its own plain poke (not the loaded noop, nor nothing for a rule
    # renamed since), numbered after its run step.
    assert first.rule == "poke"
    assert not first.undo_deferred
    assert undo_steps(first) == [(1, "test.poke", None, "ok")]
    assert env.peer.pokes == 3  # R1, R2, and R1's undo


async def test_a_carried_undo_planned_to_need_approval_waits_for_it(
    approval_env: MakeApprovalEnv,
) -> None:
    env = await approval_env(rules=RULE.format(name="poke", undo=ASKED_BACK))
    # The reload says the undo needs no approval; R1 was planned with one.
    first = await two_episodes(env, RULE.format(name="poke", undo=POKE_BACK))
    assert env.peer.pokes == 3  # R1, R2, and R2's own undo (planned without an approval)
    assert undo_steps(first) == [(1, "test.poke", None, "awaiting_approval")]
    approval = await env.desk.store.latest_approval(first.id, 1)
    assert approval is not None
    assert approval.state is ApprovalState.PENDING
    assert approval.action == "test.poke"
