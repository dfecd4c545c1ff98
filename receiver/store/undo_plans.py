"""A run's kept on_resolved plan (``runs.on_resolved``, migration 0025) to and from JSON; read
back by ``kept_undo``, which tells a plan edited in the database since (unreadable, or not the
plan ``undo_as_json`` writes) apart rather than raising."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from receiver.model import StepPlan
from receiver.store.canonical import canonical_json
from receiver.store.stored_json import OBJECTS, unreadable_why

__all__ = ["kept_undo", "undo_as_json", "undo_from_json"]


def undo_as_json(steps: Sequence[StepPlan]) -> str:
    """A run's on_resolved plan as kept in ``runs.on_resolved``: a JSON array of
    ``{index, action, params, needs_approval}``, in order (``[]``: nothing to undo)."""
    return canonical_json(
        [
            {
                "index": s.index,
                "action": s.action,
                "params": dict(s.params),
                "needs_approval": s.needs_approval,
            }
            for s in steps
        ]
    )


def undo_from_json(text: str) -> tuple[StepPlan, ...]:
    """The on_resolved plan ``undo_as_json`` wrote, as the engine plans it."""
    return tuple(
        StepPlan(
            index=int(item["index"]),
            action=str(item["action"]),
            params=dict(item.get("params") or {}),
            needs_approval=bool(item.get("needs_approval", False)),
        )
        for item in json.loads(text)
    )


def kept_undo(text: str | None) -> tuple[tuple[StepPlan, ...] | None, str]:
    """The on_resolved plan kept with a run (``runs.on_resolved`` as text) as the engine plans
    it, and ''; (None, '') for SQL NULL (a run stored before the plan was kept). For a plan
    that cannot be read back, or is not what ``undo_as_json`` writes (an edit of the table:
    not a list of steps, a step without its action, ...), ((), why): never raises, so that
    one edited run does not fail every read of its alert's history."""
    if text is None:
        return None, ""
    value, why = unreadable_why("on_resolved", text, OBJECTS)
    if why is not None:
        return (), why
    try:
        return tuple(_step(item) for item in value), ""
    except ValueError as exc:
        return (), f"the stored on_resolved is not the plan this service writes: {exc}"


def _step(item: dict[str, Any]) -> StepPlan:
    """One step of a kept plan, its fields of the types ``undo_as_json`` writes; ValueError
    naming the first that is not."""
    index: Any = item.get("index")
    action: Any = item.get("action")
    params, approval = item.get("params", {}), item.get("needs_approval", False)
    for name, value, kind in (
        ("index", index, int),
        ("action", action, str),
        ("params", params, dict),
        ("needs_approval", approval, bool),
    ):
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValueError(f"a step's {name} is {type(value).__name__}, not {kind.__name__}")
    return StepPlan(index=index, action=action, params=params, needs_approval=approval)
