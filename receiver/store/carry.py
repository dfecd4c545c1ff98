"""Carrying a deferred undo out when its alert resolved (``carry``), inside the caller's
transaction: by ``Verification.carry_undo`` (the resolution's own pass) and by
``Withdrawals.withdraw_refired_undo`` (a withdrawal that committed after the resolution it
waits for was processed)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from receiver.model import StepPlan
from receiver.store.audit import append_in_tx
from receiver.store.jobs import enqueue
from receiver.store.pending_steps import append_pending_steps, resolve_steps_done, was_done
from receiver.store.phase_stop import stopped_step
from receiver.store.records import JobKind

__all__ = ["carry"]


async def carry(
    conn: Any,
    run_id: str,
    steps: Sequence[StepPlan],
    *,
    event_id: int,
    retry_s: float,
    why: str = "",
) -> bool:
    """Record ``steps`` (the run's on_resolved steps, numbered after every step the run has)
    pending in phase ``resolve`` and clear ``undo_deferred``, with a ``resume_resolve`` job due
    in ``retry_s`` seconds and a ``run.undo_carried`` audit row naming the resolution
    (``event_id``). False, and nothing written, when the run's undo is not deferred: carried
    already, so two passes that both see the resolution carry it once (the conditional UPDATE
    takes the run's row lock).

    A step of ``steps`` that the run's resolve phase already did (or may have) is left out;
    an undo that stopped at a step is not planned again (``stopped_at`` in the audit row).
    ``why``: why the undo carries none of its steps (they cannot be read), in the audit row as
    ``not_carried``."""
    fingerprint = await conn.fetchval(
        """UPDATE runs SET undo_deferred = false
           WHERE id = $1::uuid AND undo_deferred RETURNING fingerprint""",
        run_id,
    )
    if fingerprint is None:
        return False
    done = await resolve_steps_done(conn, run_id)
    # An undo that stopped at a step ended there, as its announcement says: none of it is
    # planned again (``PhaseStops.stop_phase``).
    stopped = await stopped_step(conn, run_id, "resolve")
    skipped = [s for s in steps if was_done(s, done)]
    steps = [] if stopped is not None else [s for s in steps if not was_done(s, done)]
    # The job before the first audit row (write_step appends one), as in _fail.
    if steps:
        await enqueue(conn, JobKind.RESUME_RESOLVE, run_id, delay_s=retry_s)
    await append_pending_steps(conn, run_id, "resolve", steps)
    await append_in_tx(
        conn,
        "run.undo_carried",
        run_id,
        fingerprint,
        {
            "resolved_event_id": event_id,
            "steps": len(steps),
            **({"done_before": [s.action for s in skipped]} if skipped else {}),
            **({"stopped_at": stopped["idx"]} if stopped is not None else {}),
            **({"not_carried": why} if why else {}),
        },
    )
    return True
