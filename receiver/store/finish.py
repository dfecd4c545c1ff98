"""What follows the end of a run or of its approvals beyond the store, queued with that end.

A run or an approval that ends (an operator's drop of the job a run waited on, an approval
approved (its run goes on, but the approvers' message must stop saying "waiting"), expired,
rejected or cancelled by its alert's resolution, an undo's approval withdrawn because
its alert fired again, an approval superseded, a run its alert's resolution overtook or a
guard refused as it was taken up again, an escalation overtaken, stopped or refused for good)
leaves work outside the store:
the budget slot the run never used given back (Redis), the approvers told (their channel), the
target lock its last admission took released (Redis).
Done only by the process after its commit, a crash, Redis or the channel failing in between
lost it: the slot stayed spent for the budget's window, the approval message said "waiting"
for good, the lock held the target until ``guards.lock_ttl``. So the transaction that writes
the end also queues a ``finish_end`` job on the run (every ending queues the same kind),
whose payload says
what to do, one key per thing so that a second ending on the run while the job is open adds
its own (payloads are merged, ``enqueue``):

- ``refund`` (``FINISH_REFUND``): the slot given back when the run's records say none of its
  steps may have acted (``pipeline.budget.BudgetRefund``);
- ``notice:<approval id>`` (``FINISH_NOTICE``): the approvers told of the approval's end, the
  notice's kind read from its state (approved, expired, rejected, cancelled, superseded: an approved
  plan the target no longer matches, asked again, ``Store.supersede_approval``);
- ``token:<token>`` (``FINISH_RELEASE``): the target lock given back if it still holds exactly
  that token (compare-and-delete); ``held_by_run`` (``FINISH_HELD_BY_RUN``): the lock the
  ended run holds under any token, for a run the store never saw admitted. Queued by every
  ending that may leave the run holding its lock (a drop, an overtaken run, a refusal).

Each is idempotent, so the process that ended the run still does them at once, as before, and
the job, due ``FINISH_AFTER_S`` later, finds them done (pipeline/finish_end.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from receiver.store.jobs import enqueue
from receiver.store.records import JobKind

__all__ = [
    "FINISH_AFTER_S",
    "FINISH_HELD_BY_RUN",
    "FINISH_NOTICE",
    "FINISH_REFUND",
    "FINISH_RELEASE",
    "admitted_release",
    "admitted_token",
    "drew_budget",
    "left_undone",
    "queue_finish",
    "release_entry",
]

FINISH_REFUND = "refund"
FINISH_NOTICE = "notice:"
FINISH_RELEASE = "token:"
FINISH_HELD_BY_RUN = "held_by_run"

# How long after an ending its job comes due (seconds) when the ending's process does the
# work itself at once: long enough that the job, in the usual case, finds it done rather
# than racing it (a notice sent twice), short against the budget's window and the lock's TTL.
FINISH_AFTER_S = 30.0


async def admitted_token(conn: Any, run_id: str, phase: str = "run") -> str | None:
    """On ``conn`` (a connection in a transaction, or the pool: ``Store.admitted_lock``): the
    target lock's token the last admission of run ``run_id``'s ``phase`` took ("" none taken
    or not written; None never admitted as the store knows)."""
    found = await conn.fetchval(
        """SELECT coalesce(data->>'lock_token', '') FROM audit_log
           WHERE run_id = $1::uuid AND kind = 'run.admitted' AND data->>'phase' = $2
           ORDER BY id DESC LIMIT 1""",
        run_id,
        phase,
    )
    return None if found is None else str(found)


async def drew_budget(conn: Any, run_id: str, phase: str) -> bool:
    """On ``conn`` (in the caller's transaction): whether an admission of run ``run_id``'s
    follow-up ``phase`` drew a budget slot of its own (``Store.follow_up_drew_budget``): only
    then has the end of that follow-up a slot to give back (a ``refund`` entry)."""
    found = await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM audit_log
           WHERE run_id = $1::uuid AND kind = 'run.admitted'
             AND data->>'phase' = $2 AND data->>'budget_drawn' = 'true')""",
        run_id,
        phase,
    )
    return bool(found)


def release_entry(token: str | None) -> dict[str, bool]:
    """The payload entry that releases the lock ``admitted_token`` found: by its exact token,
    by the run (None: never admitted as the store knows), or nothing ("")."""
    if token is None:
        return {FINISH_HELD_BY_RUN: True}
    return {FINISH_RELEASE + token: True} if token else {}


async def admitted_release(conn: Any, run_id: str) -> dict[str, bool]:
    """On ``conn`` (in the ending's transaction): the payload entry that releases the lock the
    last admission of run ``run_id``'s own steps took (``release_entry`` of
    ``admitted_token``), the one read every ending that may leave that lock held makes."""
    return release_entry(await admitted_token(conn, run_id))


async def queue_finish(
    conn: Any,
    run_id: str,
    *,
    refund: bool = True,
    notices: Iterable[str] = (),
    release: dict[str, bool] | None = None,
    delay_s: float = FINISH_AFTER_S,
) -> int | None:
    """Queue, inside the caller's transaction on ``conn``, the ``finish_end`` job of run
    ``run_id`` (module docstring): the slot back when ``refund``, a notice of each approval
    id in ``notices``, the lock entries of ``release`` (``release_entry``); due in
    ``delay_s`` seconds. Its id; None when the run does not exist."""
    payload: dict[str, bool] = {FINISH_NOTICE + a: True for a in notices}
    if refund:
        payload[FINISH_REFUND] = True
    payload.update(release or {})
    return await enqueue(conn, JobKind.FINISH_END, run_id, delay_s=delay_s, payload=payload)


def left_undone(payload: Mapping[str, Any]) -> str | None:
    """What a ``finish_end`` job of ``payload`` leaves undone when an operator drops it, unless
    it was done already (each is idempotent, and a drop cannot ask Redis or the channel
    which): the unused budget slot (it comes back once the budget's window has passed), the
    target lock (it frees itself at ``guards.lock_ttl``), the approvers' notices. None when
    the payload asks for nothing."""
    undone: list[str] = []
    if payload.get(FINISH_REFUND):
        undone.append(
            "the run's budget slot, if none of its steps may have acted, not given back "
            "(it comes back once the budget's window has passed)"
        )
    if any(key.startswith(FINISH_RELEASE) or key == FINISH_HELD_BY_RUN for key in payload):
        undone.append("its target lock not released (it frees itself at guards.lock_ttl)")
    notices = sorted(key[len(FINISH_NOTICE) :] for key in payload if key.startswith(FINISH_NOTICE))
    if notices:
        undone.append("the approvers not told of the end of approval " + ", ".join(notices))
    if not undone:
        return None
    return "unless its finish_end job did it before the drop: " + "; ".join(undone)
