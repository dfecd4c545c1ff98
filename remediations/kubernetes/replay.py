"""Write records: what one step of a run wrote to a Kubernetes object, kept on the object.

A run taken up again after a crash between a Kubernetes write and the database recording it
runs that step a second time. A relative step (scale by +2, a factor, a restore that subtracts
its run's delta) would then change the object twice. So every write carries, in the same
request as the change, an annotation whose value is the step's record: which step it is (run
id, phase, step index) and the change it made (the preview: summary, before, after,
preconditions) and what the result reports. A step that finds its own record on the object
does not write again; it reports that record, so the run's record (and a later restore) still
know the true before and after.

The records sit in a fixed set of ``MAX_RECORDS`` slot keys, ``write.remediator.io/slot-0`` to
``slot-<MAX_RECORDS - 1>`` (``SLOT_KEYS``), each holding one record; the value, not the key,
names the step. A write takes a free slot or one whose record it drops, within
``MAX_RECORD_BYTES`` (``record_annotations``). Dropped first, once all slots are taken: records of
runs whose resolve phase has written the object (closed: an undone scale's record is no longer
needed), oldest first; then other records, oldest first; a scale record whose run has not
restored it yet only last, since that restore refuses without it (``needs``). The
``FRESH_RECORDS`` newest stay whatever they are: a step taken up again after a crash, or a run
writing at the same time as another, finds its record. Why fixed keys: a Deployment's
controller copies its annotations onto its current ReplicaSet and never removes one there
(``copyDeploymentAnnotationsToReplicaSet`` in kubernetes'
``pkg/controller/deployment/util/deployment_util.go``; only its ``annotationsToSkip`` are not
copied). A scale makes no new ReplicaSet, so with one key per
step (the previous form, ``write.remediator.io/<run>.<phase>.<step>``) every record ever
written while a ReplicaSet was current stayed on it, about 650 writes from the API server's
256 KiB cap on an object's annotations, past which the controller can no longer update it.
With slot keys a copied slot overwrites the ReplicaSet's copy, so at most ``MAX_RECORDS``
record keys ever reach it (plus per-step keys the previous version left, which no longer
grow).
Their values stay there until overwritten, so each record's size is capped as well, and a
write that would leave too little room for the annotations is refused before it is sent
(``record_size``, checked by ``KubeApi.record``).

Reusing a key means a write can overwrite another run's record: so every write that adds a
record is conditioned on the ``resourceVersion`` of the object it chose the slot from
(``KubeApi.patch_read``; scale's own patch too). Two runs that pick the same slot at once:
one write lands, the other gets 409 and is planned again from the object as the first left
it, so overlapping runs' records do not erase each other.

Records of the previous per-step form are still read (``records_of``, ``find_record``: a step
taken up again after an upgrade finds its record), and the next write moves those it keeps
into slots and removes every per-step key from the object.

A Deployment's records do not stay on it alone: besides the copy above, ``kubectl rollout
undo`` gives the Deployment the annotations of the ReplicaSet it goes back to. Records of
older writes come back (harmless: each names its step, whose write did happen) and newer ones
vanish: a step whose record such an undo dropped, taken up again after a crash, finds none and
writes again. A scale restore, which would undo a delta twice, refuses without its run's scale
record (``scale.Scale._refuse_changed_since``). Pure: no client, no I/O.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FRESH_RECORDS",
    "MAX_RECORDS",
    "MAX_RECORD_BYTES",
    "SCALE_ACTION",
    "SLOT_KEYS",
    "WRITE_PREFIX",
    "StepId",
    "WriteRecord",
    "find_record",
    "needs",
    "record_annotations",
    "records_of",
]

WRITE_PREFIX = "write.remediator.io/"
# Enough for every step of a run and of its resolve phase, plus an overlapping run's.
MAX_RECORDS = 8
# The newest records kept whatever else is on the object: a step taken up again after a crash,
# and a run writing the object at the same time as another, find their records although every
# older slot holds a record still needed (``needs``).
FRESH_RECORDS = 3
# The action whose records a later restore needs (``scale.Scale``; named here, as replay
# imports no action).
SCALE_ACTION = "kubernetes.scale"
# The only keys a record is written under: bounded, whatever the number of writes.
SLOT_KEYS = tuple(f"{WRITE_PREFIX}slot-{i}" for i in range(MAX_RECORDS))
# The records kept on one object together (the API server caps all annotations of an object
# together at 256 KiB); each one is capped on its own at record_size.RECORD_CAP.
MAX_RECORD_BYTES = 96 * 1024

# An annotation key's name part: at most 63 characters, alphanumerics, '-', '_', '.' inside.
_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")


@dataclass(frozen=True, slots=True)
class StepId:
    """Which step of which run wrote: the run id, its phase (``run``, ``resolve``, ...) and
    the step's index in that phase."""

    run_id: str
    phase: str
    step: int

    @classmethod
    def of(cls, run_id: str, phase: str, step: int | None) -> StepId | None:
        """The step's identity; None for a call with no step identity (outside a run)."""
        return None if step is None else cls(run_id, phase, step)

    def legacy_key(self) -> str:
        """The key the previous version wrote this step's record under:
        ``write.remediator.io/<run_id>.<phase>.<step>`` when that is a valid annotation name,
        else (an unusually long or odd run id) the same text hashed."""
        name = f"{self.run_id}.{self.phase}.{self.step}"
        if not _NAME.fullmatch(name):
            name = hashlib.sha256(name.encode()).hexdigest()[:40]
        return WRITE_PREFIX + name

    def wrote(self, key: str, record: WriteRecord) -> bool:
        """Whether ``record`` (found under annotation ``key``) is this step's."""
        named = (record.run_id, record.phase, record.step) == (self.run_id, self.phase, self.step)
        return named or key == self.legacy_key()


@dataclass(frozen=True, slots=True)
class WriteRecord:
    """One step's write, as stored in its annotation (JSON).

    ``change``: the preview the write carried out (``summary``, ``before``, ``after``,
    ``preconditions``), returned again by a replayed preview so an approval's hash still
    matches. ``after``: what the step's Result reports as after (e.g. the restart time).
    ``extra``: action-specific facts (a restore's flag, the uids of deleted pods).
    ``at``: when it was written (RFC 3339, UTC), for keeping the newest records.
    """

    action: str
    change: Mapping[str, Any]
    after: Mapping[str, Any]
    run_id: str = ""
    phase: str = ""
    step: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    at: str = ""

    def to_json(self) -> str:
        return json.dumps(
            {
                "action": self.action,
                "run": self.run_id,
                "phase": self.phase,
                "step": self.step,
                "change": dict(self.change),
                "after": dict(self.after),
                "extra": dict(self.extra),
                "at": self.at,
            },
            sort_keys=True,
            separators=(",", ":"),
            default=str,
        )

    @classmethod
    def from_json(cls, text: str) -> WriteRecord | None:
        """The record in ``text``; None when it is not one (edited by hand, truncated)."""
        try:
            data = json.loads(text)
            return cls(
                action=str(data["action"]),
                change=dict(data["change"]),
                after=dict(data["after"]),
                run_id=str(data.get("run") or ""),
                phase=str(data.get("phase") or ""),
                step=data.get("step"),
                extra=dict(data.get("extra") or {}),
                at=str(data.get("at") or ""),
            )
        except (ValueError, KeyError, TypeError):
            return None


def _annotations(obj: Mapping[str, Any]) -> Mapping[str, str]:
    annotations: Mapping[str, str] = (obj.get("metadata") or {}).get("annotations") or {}
    return annotations


def records_of(obj: Mapping[str, Any]) -> dict[str, WriteRecord]:
    """Every readable write record on ``obj`` (a plain-dict object), by annotation key: those
    in slots and those in the previous per-step keys alike."""
    out: dict[str, WriteRecord] = {}
    for key, value in _annotations(obj).items():
        if key.startswith(WRITE_PREFIX):
            record = WriteRecord.from_json(value)
            if record is not None:
                out[key] = record
    return out


def find_record(obj: Mapping[str, Any], step: StepId | None, action: str) -> WriteRecord | None:
    """The record of ``step`` by ``action`` on ``obj``, in a slot or in the step's previous
    per-step key; None when there is none (or ``step`` is None)."""
    if step is None:
        return None
    for key, record in records_of(obj).items():
        if record.action == action and step.wrote(key, record):
            return record
    return None


def record_annotations(obj: Mapping[str, Any], record: WriteRecord) -> dict[str, str | None]:
    """Annotations for a merge patch that adds ``record`` to ``obj`` (a plain-dict object, as
    read), as ``{key: value}`` with None for a key to remove.

    Kept: ``record``, then the ``FRESH_RECORDS`` newest other records on ``obj`` (by their
    RFC 3339 ``at``), then the others by ``needs`` (most needed first) and newest first,
    ``MAX_RECORDS`` in all and within ``MAX_RECORD_BYTES``. An unreadable value goes, and so
    does a copy of a record already kept (an undo can bring back both the per-step key and the
    slot a record was moved to), and this step's own earlier record, which ``record`` replaces.
    Kept slot records stay where they are; the new record and kept per-step ones go into the
    slots of dropped records first (the least needed's, once all are taken), then free ones. Every
    other ``write.remediator.io/`` key is removed, per-step keys included. The patch is only
    right for ``obj`` as read: send it conditioned on its ``resourceVersion``, or a write in
    between could lose a record."""
    text = record.to_json()
    mine = StepId.of(record.run_id, record.phase, record.step)
    others: list[tuple[str, WriteRecord, str]] = []  # (key, record, value)
    for key, value in _annotations(obj).items():
        if not key.startswith(WRITE_PREFIX):
            continue
        other = WriteRecord.from_json(value)
        if other is None or (mine is not None and mine.wrote(key, other)):
            continue  # unreadable, or this step's own (replaced)
        others.append((key, other, value))
    need = needs([r for _k, r, _v in others] + [record])

    def newest(i: int) -> tuple[str, bool]:
        # RFC 3339 UTC times sort as text. Ties: slot records first, so a record that sits in
        # a slot and in a per-step key keeps its slot.
        return others[i][1].at, others[i][0] in SLOT_KEYS

    order = sorted(range(len(others)), key=newest, reverse=True)
    fresh = set(order[:FRESH_RECORDS])
    # In the order they are kept: the newest few, then the most needed, newest first.
    order.sort(key=lambda i: (i in fresh, need[i], *newest(i)), reverse=True)
    held = [(others[i][1].at, others[i][0], others[i][2]) for i in order]
    kept: dict[str, str] = {}
    values, size = {text}, len(SLOT_KEYS[0]) + len(text)
    for _at, key, value in held:
        if value in values:
            continue
        size += len(SLOT_KEYS[0]) + len(value)
        if len(kept) + 1 >= MAX_RECORDS or size > MAX_RECORD_BYTES:
            break
        kept[key] = value
        values.add(value)
    held_keys = {key for _at, key, _value in held}
    present = set(_annotations(obj))
    # Slots to fill: those of dropped records first (overwritten rather than removed, so a
    # ReplicaSet's copy follows), the least needed first, then the free ones.
    dropped = [key for _at, key, _v in reversed(held) if key in SLOT_KEYS and key not in kept]
    free = dropped + [k for k in SLOT_KEYS if k not in present or k not in held_keys]
    free = list(dict.fromkeys(k for k in free if k not in kept))
    patch: dict[str, str | None] = {free.pop(0): text}
    for key, value in kept.items():
        if key not in SLOT_KEYS:
            patch[free.pop(0)] = value
    for key in present:
        stays = key in kept and key in SLOT_KEYS
        if key.startswith(WRITE_PREFIX) and not stays and key not in patch:
            patch[key] = None
    return patch


def needs(records: list[WriteRecord]) -> list[int]:
    """How long each of ``records`` (the records on one object, the one being written among
    them) is still needed, in the same order: 2 for a scale record whose run has no restore
    record on the object (its restore will need it: ``scale.Scale`` refuses a restore without
    its run's scale record), 0 for any other record of a run that has a resolve-phase record
    on the object (its run is closed: an undone scale's record is no longer needed), 1 for
    every other. ``record_annotations`` evicts the least needed first."""
    closed = {r.run_id for r in records if r.run_id and r.phase == "resolve"}
    restored = {r.run_id for r in records if r.run_id and _is_scale(r) and r.extra.get("restore")}
    return [
        2
        if _is_scale(r) and not r.extra.get("restore") and r.run_id not in restored
        else 0
        if r.run_id in closed
        else 1
        for r in records
    ]


def _is_scale(record: WriteRecord) -> bool:
    return record.action == SCALE_ACTION


def now_rfc3339() -> str:
    """The current time, UTC, to the microsecond (records of one run follow each other fast)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
