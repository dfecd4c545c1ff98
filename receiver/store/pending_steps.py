"""A follow-up's steps (``resolve``, ``on_failed``), written after the run's own, and which of a
run's resolve steps are done already. Inside the caller's transaction; used by
``receiver.store.verification``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from receiver.model import StepPlan
from receiver.store.canonical import canonical_json
from receiver.store.steps import write_step
from receiver.store.stored_json import decode_object

# The params of a ``step_key`` whose stored params cannot be read (an edit of the table): no
# canonical JSON is empty, so it names no params, and stands for any (``was_done``).
_ANY_PARAMS = ""

__all__ = ["append_pending_steps", "resolve_steps_done", "step_key", "was_done"]


async def append_pending_steps(
    conn: Any, run_id: str, phase: str, steps: Sequence[StepPlan], *, base: int | None = None
) -> None:
    """Write ``steps`` (a follow-up's plan: ``resolve`` or ``on_failed``) as the run's pending
    ``phase`` steps, numbered from ``base``, by default after every step the run has:
    approvals are keyed by run and step index, so a follow-up step's approval never meets
    that of another step of the run. One audit row each (``write_step``)."""
    if base is None:
        base = await conn.fetchval(
            "SELECT coalesce(max(idx), -1) + 1 FROM steps WHERE run_id = $1::uuid", run_id
        )
    for offset, step in enumerate(steps):
        await write_step(
            conn,
            run_id,
            idx=base + offset,
            phase=phase,
            action=step.action,
            outcome="pending",
            params=step.params,
            needs_approval=step.needs_approval,
        )


def step_key(step: StepPlan) -> tuple[str, str]:
    """A planned step's action and params (canonical JSON), to compare with a stored one."""
    return step.action, canonical_json(dict(step.params or {}))


async def resolve_steps_done(conn: Any, run_id: str) -> set[tuple[str, str]]:
    """The ``step_key`` of each resolve-phase step of the run that did something, or may have:
    recorded ok, simulated, started, interrupted, or failed having maybe acted. One whose
    params cannot be read back has a key of its action alone (``was_done``)."""
    rows = await conn.fetch(
        """SELECT action, params::text AS params FROM steps
           WHERE run_id = $1::uuid AND phase = 'resolve'
             AND (outcome IN ('ok', 'simulated', 'started', 'interrupted')
                  OR (outcome = 'failed' AND may_have_acted))""",
        run_id,
    )
    done: set[tuple[str, str]] = set()
    for row in rows:
        params, why = decode_object("params", row["params"])
        done.add((row["action"], _ANY_PARAMS if why else canonical_json(params or {})))
    return done


def was_done(step: StepPlan, done: set[tuple[str, str]]) -> bool:
    """Whether planned ``step`` is one of the steps ``done`` (``resolve_steps_done``): the same
    action and params, or the same action done with params that cannot be read (edited
    since): it may be this one, and an undo done twice is the worse guess."""
    return step_key(step) in done or (step.action, _ANY_PARAMS) in done
