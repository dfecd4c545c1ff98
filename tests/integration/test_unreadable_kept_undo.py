"""A run's kept on_resolved steps (``runs.on_resolved``) edited in the database to hold what
Python cannot read back (an integer of more than 4,300 digits, arrays nested 3,000 deep) or
another shape than the service writes (not a list of steps).

The resolution's history read decoded them with json.loads: the resolved event raised on every
attempt until it was dead, its run never closed. Planning the rule's on_resolved steps as loaded
now would undo on a guess. Now the resolution closes the run as usual, nothing undone, and the
event records why (a skip of the rule, audited ``event.skipped``); a withdrawn undo carried to
a resolution at once (``Withdrawals._carry_if_resolved``) carries nothing, audited
``run.undo_carried`` saying why (``not_carried``)."""

from __future__ import annotations

from typing import Any

import pytest

import receiver.store.withdrawal as withdrawal
from receiver.approvals.state import Decision
from receiver.model import RunOutcome
from tests.integration.test_approved_undo_refire import ALICE, API, take_up_jobs
from tests.integration.test_kept_undo import POKE_BACK
from tests.integration.test_kept_undo import RULE as KEPT
from tests.integration.test_refire_withdraws_undo import (
    RULES,
    SetValue,
    held_approval,
    runs_in_order,
    send,
)
from tests.integration.test_withdrawn_undo_races import accept, events_only
from tests.support.approvals import MakeApprovalEnv, Peer, poke_labels
from tests.support.unreadable import audit_of_kind, edit

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

HUGE = "('[{\"index\": 1' || repeat('0', 5000) || '}]')::jsonb"
DEEP = "('[{\"x\": ' || repeat('[', 3000) || repeat(']', 3000) || '}]')::jsonb"
EDITS = {
    "a huge number": HUGE,
    "deep nesting": DEEP,
    "an object": "'{\"index\": 0}'::jsonb",
    "a list of numbers": "'[1, 2]'::jsonb",
    "a step without its action": '\'[{"index": 1, "params": {}}]\'::jsonb',
}
SAID = "on_resolved steps kept with the run cannot be read: it was edited after it was written"
RULE = KEPT.format(name="poke", undo=POKE_BACK)


@pytest.mark.parametrize("value", EDITS.values(), ids=EDITS.keys())
async def test_a_kept_undo_that_cannot_be_read_is_not_done_and_the_run_closes(
    approval_env: MakeApprovalEnv, database_url: str, value: str
) -> None:
    env = await approval_env(rules=RULE)
    await env.harness.deliver(poke_labels())
    assert env.peer.pokes == 1
    await edit(database_url, f"UPDATE runs SET on_resolved = {value}")

    await env.harness.deliver(poke_labels(), status="resolved")

    run = await env.harness.only_run()
    assert run.resolved_at is not None
    assert run.outcome is RunOutcome.SUCCEEDED
    assert [(s.phase, s.outcome) for s in run.steps] == [("run", "ok")]
    assert env.peer.pokes == 1  # not undone from the rule as loaded: a guess
    events, _ = await env.harness.store.list_events(state="done")
    [resolved] = [e for e in events if e["status"] == "resolved"]
    [skip] = resolved["skips"]
    assert skip["rule"] == "poke"
    assert skip["reason"].startswith(f"the {SAID} (")
    assert skip["reason"].endswith("; run closed without them, nothing undone")
    [audited] = await audit_of_kind(env.harness.store, "event.skipped")
    assert audited["data"]["skips"] == [skip]


async def test_an_undo_withdrawn_and_carried_at_once_carries_nothing_it_cannot_read(
    approval_env: MakeApprovalEnv, peer: Peer, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As test_withdrawn_undo_races: the approved undo's job withdraws it while another worker
    # processes the resolution it is deferred to, so the withdrawal carries it at once.
    peer.value = 20
    env = await approval_env(rules=RULES, actions=[SetValue(peer.url)])
    await send(env, "firing", "2026-11-25T10:00:00Z")
    await send(env, "resolved", "2026-11-25T10:00:00Z", "2026-11-25T10:05:00Z")
    [first] = await runs_in_order(env)
    approval = await held_approval(env, first)
    await env.desk.decide(approval.id, Decision.APPROVE, ALICE, API)
    await accept(env, "firing", "2026-11-25T10:10:00Z")
    await events_only(env)
    await edit(database_url, f"UPDATE runs SET on_resolved = {DEEP} WHERE id = '{first.id}'")
    real = withdrawal._withdraw

    async def racing(*args: Any, **kwargs: Any) -> Any:
        await accept(env, "resolved", "2026-11-25T10:10:00Z", "2026-11-25T10:15:00Z")
        await events_only(env)
        return await real(*args, **kwargs)

    monkeypatch.setattr(withdrawal, "_withdraw", racing)
    assert await take_up_jobs(env) == 1
    await env.harness.drain()

    assert peer.value == 5  # neither the withdrawn undo nor a guess at it ran
    first, _ = await runs_in_order(env)
    assert not first.undo_deferred
    assert [s.outcome for s in first.steps if s.phase == "resolve"] == ["not_run"]
    carried = [a["data"] for a in await audit_of_kind(env.harness.store, "run.undo_carried")]
    assert [(d["steps"], d["not_carried"].split(" (")[0]) for d in carried] == [(0, f"the {SAID}")]
