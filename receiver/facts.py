"""Live facts about a target, read before the plan is made, as plain data. Pure.

A step's live condition (``when: {rolled_out_within: 30m}``) is decided on a fact the pipeline
read just before ``engine.plan`` (``receiver.pipeline.facts`` runs one probe per fact kind, from
``remediations``); the engine only looks at the readings it is given, so a rule test can supply
them as fixtures. A fact that could not be read carries why, and a condition on it is never
guessed: the step is left out, with that reason recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from receiver.durations import format_duration
from remediations.targets import Target

__all__ = ["FactKind", "FactReading", "Facts", "Rollout", "within"]


class FactKind(StrEnum):
    """What a live condition reads about the target before the plan is made."""

    ROLLOUT = "rollout"  # the Deployment's newest release and when it was created


@dataclass(frozen=True, slots=True)
class Rollout:
    """A Deployment's newest release among its revisions as ``kubectl rollout history`` lists
    them (not a restart, not remediator's own edit: ``remediations.kubernetes.release``): the
    revision annotation of its ReplicaSet, that ReplicaSet, and its creationTimestamp.

    ``known`` false: the kept ReplicaSets cannot tell which revision is the newest release (the
    one before ``revision`` is gone: ``revisionHistoryLimit``); it is ``revision`` or an earlier
    one. ``bounded``: it was then rolled out at or before ``created_at`` (so it is at least as
    old); false when ``revision``'s ReplicaSet was rolled back to and its creation bounds
    nothing."""

    revision: int
    replicaset: str
    created_at: datetime
    known: bool = True
    bounded: bool = True


@dataclass(frozen=True, slots=True)
class FactReading:
    """One fact about one target, read before planning: its value, or why it could not be
    read (``error``: no cluster, target missing, API unreachable). Never guessed."""

    kind: FactKind
    target: Target
    value: Rollout | None = None
    error: str | None = None
    read_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for the run's recorded decision."""
        data: dict[str, Any] = {"kind": str(self.kind), "target": self.target.key}
        if self.value is not None:
            data.update(
                revision=self.value.revision,
                replicaset=self.value.replicaset,
                created_at=self.value.created_at.isoformat(),
            )
            if not self.value.known:
                data.update(known=False, bounded=self.value.bounded)
        if self.error is not None:
            data["error"] = self.error
        if self.read_at is not None:
            data["read_at"] = self.read_at.isoformat()
        return data


@dataclass(frozen=True, slots=True)
class Facts:
    """The live facts the pipeline read for one event, by (kind, target key). Plain data:
    whoever calls ``engine.plan`` (the pipeline, a rule test with fixtures) supplies them."""

    readings: Mapping[tuple[FactKind, str], FactReading] = field(default_factory=dict)

    @classmethod
    def of(cls, *readings: FactReading) -> Facts:
        return cls({(r.kind, r.target.key): r for r in readings})

    def get(self, kind: FactKind, target: Target) -> FactReading | None:
        return self.readings.get((kind, target.key))


def within(
    rollout: Rollout, within_s: float, now: datetime, *, negate: bool, or_unknown: bool
) -> tuple[bool | None, str]:
    """Whether ``rollout``'s release is at most ``within_s`` seconds old at ``now`` (``negate``:
    older), and why, as a sentence for the recorded decision; None when it cannot be told.

    A history that cannot tell the newest release (``known`` false) still decides when the
    oldest revision the release could be is older than the window and bounds it (the release
    is older still). Otherwise: True with ``or_unknown`` (the rule asked for that), else None.
    The sentence says which, and what was known."""
    # A creation time ahead of our clock (skew) is a rollout that just happened.
    age_s = max(0.0, (now - rollout.created_at).total_seconds())
    age = format_duration(round(age_s))
    if rollout.known:
        holds = (age_s <= within_s) != negate
        creation = " (the Deployment's creation)" if rollout.revision == 1 else ""
        return holds, (
            f"{'holds' if holds else 'does not hold'} (newest release: revision "
            f"{rollout.revision}{creation}, ReplicaSet {rollout.replicaset}, created {age} ago)"
        )
    unknown = (
        f"newest release not known: revision {rollout.revision} (ReplicaSet "
        f"{rollout.replicaset}, created {age} ago) or an earlier one, whose ReplicaSets "
        "Kubernetes deleted (revisionHistoryLimit); the kept revisions after it are restarts "
        "or remediator's own edits"
    )
    if rollout.bounded and age_s > within_s:
        return negate, (
            f"{'holds' if negate else 'does not hold'} ({unknown}; so the release is at least "
            f"{age} old)"
        )
    if rollout.bounded:
        unknown += f"; so the release is at least {age} old, maybe older"
    else:
        unknown += (
            f"; revision {rollout.revision}'s ReplicaSet was rolled back to, so its age says "
            "nothing of the release's"
        )
    if or_unknown:
        return True, f"holds, the release's age cannot be told ({unknown})"
    return None, f"cannot tell ({unknown})"
