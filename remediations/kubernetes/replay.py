"""Write records: what one step of a run wrote to a Kubernetes object, kept on the object.

A run taken up again after a crash between a Kubernetes write and the database recording it
runs that step a second time. A relative step (scale by +2, a factor, a restore that subtracts
its run's delta) would then change the object twice. So every write carries, in the same
request as the change, an annotation named after the step (run id, phase, step index) whose
value is the change it made: the preview (summary, before, after, preconditions) and what the
result reports. A step that finds its own record on the object does not write again; it
reports that record, so the run's record (and a later restore) still know the true before and
after.

One key per step (``write.remediator.io/<run>.<phase>.<step>``) rather than one shared value:
a merge patch adds a key without rewriting the others, so two runs writing the same object do
not erase each other's records. Only the newest ``MAX_RECORDS`` are kept (older keys are
removed by the write that adds a new one), within ``MAX_RECORD_BYTES``. Pure: no client, no I/O.

A Deployment's records do not stay on it alone: its controller copies its annotations onto its
current ReplicaSet (and never removes one there), and ``kubectl rollout undo`` gives the
Deployment the annotations of the ReplicaSet it goes back to. Records of older writes come
back (harmless: each names its step, whose write did happen) and newer ones vanish: a step
whose record such an undo dropped, taken up again after a crash, finds none and writes again.
A scale restore, which would undo a delta twice, refuses without its run's scale record
(``scale.Scale._refuse_changed_since``).
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
    "MAX_RECORDS",
    "MAX_RECORD_BYTES",
    "WRITE_PREFIX",
    "WriteRecord",
    "find_record",
    "record_annotations",
    "record_key",
    "records_of",
]

WRITE_PREFIX = "write.remediator.io/"
# Enough for every step of a run and of its resolve phase, plus an overlapping run's.
MAX_RECORDS = 8
# The API server caps all annotations of an object together at 256 KiB.
MAX_RECORD_BYTES = 96 * 1024

# An annotation key's name part: at most 63 characters, alphanumerics, '-', '_', '.' inside.
_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


def record_key(run_id: str, phase: str, step: int | None) -> str | None:
    """The annotation key of a step's write record; None for a call with no step identity.

    ``write.remediator.io/<run_id>.<phase>.<step>`` when that is a valid annotation name, else
    (an unusually long or odd run id) the same text hashed, so the key stays valid and unique.
    """
    if step is None:
        return None
    name = f"{run_id}.{phase}.{step}"
    if not _NAME.match(name):
        name = hashlib.sha256(name.encode()).hexdigest()[:40]
    return WRITE_PREFIX + name


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
    """Every readable write record on ``obj`` (a plain-dict object), by annotation key."""
    out: dict[str, WriteRecord] = {}
    for key, value in _annotations(obj).items():
        if key.startswith(WRITE_PREFIX):
            record = WriteRecord.from_json(value)
            if record is not None:
                out[key] = record
    return out


def find_record(obj: Mapping[str, Any], key: str | None, action: str) -> WriteRecord | None:
    """The record of the step ``key`` by ``action`` on ``obj``; None when there is none."""
    if key is None:
        return None
    record = records_of(obj).get(key)
    if record is None or record.action != action:
        return None
    return record


def record_annotations(
    obj: Mapping[str, Any], key: str, record: WriteRecord
) -> dict[str, str | None]:
    """Annotations for a merge patch that adds ``record`` under ``key`` to ``obj`` and removes
    (value None) the records past the newest ``MAX_RECORDS`` / ``MAX_RECORD_BYTES``."""
    text = record.to_json()
    patch: dict[str, str | None] = {key: text}
    others = [
        (k, v) for k, v in _annotations(obj).items() if k.startswith(WRITE_PREFIX) and k != key
    ]
    # Newest first: RFC 3339 UTC times sort as text; an unreadable record sorts oldest.
    others.sort(key=lambda kv: _at(kv[1]), reverse=True)
    kept, size = 1, len(key) + len(text)
    for other, value in others:
        size += len(other) + len(value)
        kept += 1
        if kept > MAX_RECORDS or size > MAX_RECORD_BYTES:
            patch[other] = None
    return patch


def _at(value: str) -> str:
    record = WriteRecord.from_json(value)
    return record.at if record is not None else ""


def now_rfc3339() -> str:
    """The current time, UTC, to the microsecond (records of one run follow each other fast)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
