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

from remediations.targets import Target

__all__ = ["FactKind", "FactReading", "Facts", "Rollout"]


class FactKind(StrEnum):
    """What a live condition reads about the target before the plan is made."""

    ROLLOUT = "rollout"  # the Deployment's newest release and when it was created


@dataclass(frozen=True, slots=True)
class Rollout:
    """A Deployment's newest release among its revisions as ``kubectl rollout history`` lists
    them (not a restart, not remediator's own edit: ``remediations.kubernetes.release``): the
    revision annotation of its ReplicaSet, that ReplicaSet, and its creationTimestamp."""

    revision: int
    replicaset: str
    created_at: datetime


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
