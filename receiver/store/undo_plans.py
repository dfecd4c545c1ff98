"""A run's kept on_resolved plan (``runs.on_resolved``, migration 0025) to and from JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence

from receiver.model import StepPlan
from receiver.store.canonical import canonical_json

__all__ = ["undo_as_json", "undo_from_json"]


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
