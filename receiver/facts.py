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

__all__ = ["FactKind", "FactReading", "Facts", "Rollout", "can_roll_back", "within"]


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
    nothing.

    ``no_rollback``: why ``kubernetes.rollout_undo`` (no ``to_revision``) has nothing to roll
    back to (``remediations.kubernetes.release.undo_target``); empty when it has, and then
    ``rollback_to``, when given, is the revision it would go back to. A newest release that is
    revision 1 (the Deployment's creation), not known, or a rollback (``returns_to``) never has
    one: when ``no_rollback`` is not given, it is filled in for those, so every reading says
    the same as the action.

    ``returns_to``: the newest release is a rollback to the template of that earlier revision
    (its ReplicaSet held it, or one whose template differs only by a restart); ``created_at``
    is then when that ReplicaSet was created (for an old one: when its template was first
    shipped, not when it was rolled back to)."""

    revision: int
    replicaset: str
    created_at: datetime
    known: bool = True
    bounded: bool = True
    rollback_to: int | None = None
    no_rollback: str = ""
    returns_to: int | None = None

    def __post_init__(self) -> None:
        if self.no_rollback:
            return
        if not self.known:
            why = (
                "no previous revision to roll back to that is known to be before its newest "
                f"release: the ReplicaSet of revision {self.revision - 1} is gone "
                "(spec.revisionHistoryLimit)"
            )
        elif self.returns_to is not None:
            why = (
                "no previous revision to roll back to that a rollback did not replace: its "
                f"newest release, revision {self.revision}, is a rollback to the template of "
                f"revision {self.returns_to}"
            )
        elif self.revision == 1:
            why = (
                "no previous revision to roll back to: revision 1 is its creation, its first "
                "release"
            )
        else:
            return
        # Frozen: the derived reason is set once, here.
        object.__setattr__(self, "no_rollback", why)
        object.__setattr__(self, "rollback_to", None)


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
            if self.value.returns_to is not None:
                data["returns_to"] = self.value.returns_to
            if self.value.no_rollback:
                data["nothing_to_roll_back"] = self.value.no_rollback
            elif self.value.rollback_to is not None:
                data["rollback_to"] = self.value.rollback_to
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
    rollout: Rollout,
    within_s: float,
    now: datetime,
    *,
    negate: bool,
    or_unknown: bool,
    or_no_rollback: bool = False,
) -> tuple[bool | None, str]:
    """Whether ``rollout``'s release is at most ``within_s`` seconds old at ``now`` (``negate``:
    older), and why, as a sentence for the recorded decision; None when it cannot be told.

    A history that cannot tell the newest release (``known`` false) still decides when the
    oldest revision the release could be is older than the window and bounds it (the release
    is older still). Otherwise: True with ``or_unknown`` (the rule asked for that), else None.
    ``or_no_rollback`` (``or_nothing_to_roll_back``): True, rather than False or None, when
    ``kubernetes.rollout_undo`` has nothing to roll back to (``Rollout.no_rollback``). The
    sentence says which, and what was known."""
    holds, why = _within(rollout, within_s, now, negate=negate, or_unknown=or_unknown)
    if holds is not True and or_no_rollback and rollout.no_rollback:
        return True, (
            f"holds, there is nothing to roll back to ({rollout.no_rollback}); by the "
            f"release's age alone it {why}"
        )
    return holds, why


def can_roll_back(rollout: Rollout, wanted: bool) -> tuple[bool, str]:
    """Whether ``kubernetes.rollout_undo`` (no ``to_revision``) has a revision to roll back
    to is ``wanted`` (``when: {can_roll_back: ...}``), and why, as a sentence for the recorded
    decision. Never unknown: a history that cannot tell the newest release has nothing known
    to be before it (``Rollout.no_rollback``)."""
    able = not rollout.no_rollback
    holds = able is wanted
    if able:
        to = f"revision {rollout.rollback_to}" if rollout.rollback_to is not None else "a revision"
        what = f"{to} before the newest release (revision {rollout.revision}) to roll back to"
    else:
        what = rollout.no_rollback
    return holds, f"{'holds' if holds else 'does not hold'} ({what})"


def _within(
    rollout: Rollout, within_s: float, now: datetime, *, negate: bool, or_unknown: bool
) -> tuple[bool | None, str]:
    # A creation time ahead of our clock (skew) is a rollout that just happened.
    age_s = max(0.0, (now - rollout.created_at).total_seconds())
    age = format_duration(round(age_s))
    if rollout.known:
        holds = (age_s <= within_s) != negate
        creation = " (the Deployment's creation)" if rollout.revision == 1 else ""
        if rollout.returns_to is not None:
            creation = f" (a rollback to the template of revision {rollout.returns_to})"
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
