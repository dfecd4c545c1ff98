"""What an approval binds: the step's exact change against live state, and its hash.

Pure. The plan is plain JSON (``bound_plan``); ``plan_hash`` is the SHA-256 of its canonical
form. An approval is stored with both, the link token carries the hash, and an approved step
runs only while a fresh preview gives the same hash (research/alertmanager-protocol.md §5.2:
``ph`` binds the action, the target, the parameters and the preconditions).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from remediations.base import Change
from remediations.targets import Target

__all__ = ["StepRequest", "bound_plan", "canonical", "plan_hash"]


def canonical(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 kept (the form ``receiver.store`` hashes too)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def bound_plan(
    *, action: str, target: Target, params: Mapping[str, Any], change: Change
) -> dict[str, Any]:
    """The plan an engineer approves: action, target, the rule's params, and the preview
    (summary, before, after, preconditions). Values that are not JSON become strings, so
    the plan survives the store's jsonb unchanged."""
    plan = {
        "action": action,
        "target": target.as_dict(),
        "params": dict(params),
        "summary": change.summary,
        "before": dict(change.before),
        "after": dict(change.after),
        "preconditions": dict(change.preconditions),
    }
    normalised: dict[str, Any] = json.loads(json.dumps(plan, default=str))
    return normalised


def plan_hash(plan: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the canonical JSON of ``plan``."""
    return hashlib.sha256(canonical(dict(plan)).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class StepRequest:
    """What the approve stage asks an approval for: one step of a run and its bound plan."""

    run_id: str
    step_idx: int
    rule: str
    action: str
    risk: str
    plan: Mapping[str, Any]
    plan_hash: str
    context: Mapping[str, Any]
