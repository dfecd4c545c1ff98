"""How large one write record, and the annotations it joins, may be: checked before a write
that adds a record is sent, so a write that would break either bound is refused without acting.

The API server refuses an object whose annotations, keys and values together, exceed 256 KiB
(``TotalAnnotationSizeLimitB`` in apimachinery's ``ValidateAnnotationsSize``, counted in
bytes). A Deployment's controller copies the Deployment's annotations onto its current
ReplicaSet and never removes one there (``copyDeploymentAnnotationsToReplicaSet``; only its
``annotationsToSkip``, ``NOT_COPIED`` here, stay behind): a ReplicaSet past the cap can no
longer be updated, and the Deployment stalls. ``replay`` bounds the number of record keys
(``MAX_RECORDS`` slots), and this module the size of each record (``RECORD_CAP``), so a
ReplicaSet's copies of the slots take at most ``RECORD_ROOM`` bytes however the slots' values
came and went; and it refuses a write after which the object, or what its ReplicaSet could
hold, would pass ``ANNOTATION_BUDGET``: a new ReplicaSet (``check_room``), or an old one a
template write can return to, or a rollback goes back to, which keeps what the Deployment has
dropped since, old per-step write records included (``check_replica_sets``). Pure: no client,
no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from remediations.base import ActionRefused
from remediations.kubernetes.replay import MAX_RECORDS, SLOT_KEYS, WRITE_PREFIX, WriteRecord

__all__ = [
    "ANNOTATION_BUDGET",
    "ANNOTATION_LIMIT",
    "NOT_COPIED",
    "RECORD_CAP",
    "RECORD_ROOM",
    "AnnotationsTooLarge",
    "RecordTooLarge",
    "annotations_size",
    "check_record",
    "check_replica_sets",
    "check_room",
    "escaped_size",
    "fitting_bytes",
    "largest_parts",
    "merged",
]

# The API server's cap on all annotations of one object (keys and values, in bytes).
ANNOTATION_LIMIT = 256 * 1024
# What a write may leave at most, on the object or (for a Deployment) on its ReplicaSet: 7/8 of
# the cap. The last 32 KiB stay for what comes after the write: the controller's own
# annotations on a ReplicaSet (revision, revision-history, desired- and max-replicas) and the
# user's next edits, which the API server would otherwise refuse.
ANNOTATION_BUDGET = 224 * 1024
# One record's encoded value (JSON, ASCII: bytes = characters; every non-ASCII character is
# escaped, 6 bytes for one of 2 or 3 UTF-8 bytes, 12 for one of 4). 8 slots at the cap take
# RECORD_ROOM, about 128 KiB, on a ReplicaSet at worst: ANNOTATION_BUDGET leaves about 96 KiB
# beside them for the user's own annotations (kubectl's last-applied-configuration is not
# copied). A set_env record keeps the variable's old and new values twice each (about 500
# bytes besides): an ASCII value of up to about 7,900 bytes replacing a short one fits (a
# third to a half of that of other text), about 3,900 replacing one as long; a larger one is
# refused (set it by hand).
RECORD_CAP = 16 * 1024
# What the slot keys can take on a ReplicaSet at worst: every slot holding a record at the cap.
RECORD_ROOM = MAX_RECORDS * (len(SLOT_KEYS[0]) + RECORD_CAP)
# The Deployment controller's annotationsToSkip (kubernetes
# pkg/controller/deployment/util/deployment_util.go): never copied onto a ReplicaSet.
NOT_COPIED = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        "deployment.kubernetes.io/revision",
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)


class RecordTooLarge(ActionRefused):
    """The step's write record would be larger than ``RECORD_CAP``: nothing was written.

    ``size``: the record's encoded size in bytes; ``cap``: ``RECORD_CAP``; ``parts``: its
    largest fields as (path in the record, bytes), largest first, e.g.
    ``("change.after.value", 32770)``. Never acted (``may_have_acted`` False)."""

    def __init__(self, message: str, *, size: int, cap: int, parts: list[tuple[str, int]]) -> None:
        super().__init__(message, may_have_acted=False)
        self.size = size
        self.cap = cap
        self.parts = parts


class AnnotationsTooLarge(ActionRefused):
    """After the write, the object's annotations, or what its ReplicaSet could hold of them,
    would pass ``ANNOTATION_BUDGET``: nothing was written.

    ``size``: the bytes counted against the budget; ``budget``: ``ANNOTATION_BUDGET``;
    ``largest``: the largest annotations counted (the slots' write records left out, counted
    at their most; remediator's stamp in, and, on a ReplicaSet, the old per-step write records
    it keeps) as (key, bytes), largest first.
    Never acted (``may_have_acted`` False)."""

    def __init__(
        self, message: str, *, size: int, budget: int, largest: list[tuple[str, int]]
    ) -> None:
        super().__init__(message, may_have_acted=False)
        self.size = size
        self.budget = budget
        self.largest = largest


def annotations_size(annotations: Mapping[str, str]) -> int:
    """Bytes of ``annotations`` as the API server counts them: every key's and value's UTF-8
    length, summed."""
    return sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items())


def escaped_size(text: str) -> int:
    """Bytes ``text`` takes in a record, without its quotes: the record's JSON is ASCII, so
    every non-ASCII character is escaped (``\\u00e9``: 6 bytes; 12 for a surrogate pair)."""
    return len(json.dumps(text)) - 2


def fitting_bytes(room: int, sample: str) -> int:
    """The most UTF-8 bytes of text with ``sample``'s mix of characters that takes at most
    ``room`` bytes in a record (``escaped_size``): what to advise a user whose ``sample`` was
    too long, in the unit they count. ``room`` itself for ASCII (or empty) text."""
    escaped = escaped_size(sample)
    if escaped == 0 or room <= 0:
        return max(room, 0)
    return room * len(sample.encode()) // escaped


def merged(annotations: Mapping[str, str], patch: Mapping[str, str | None]) -> dict[str, str]:
    """``annotations`` after a merge patch of them: ``patch``'s values set, its None removed."""
    out = dict(annotations)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def _leaves(value: Any, path: str) -> Iterator[tuple[str, int]]:
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            yield from _leaves(item, f"{path}.{key}")
    else:
        # As the record encodes it (WriteRecord.to_json).
        yield path, len(json.dumps(value, separators=(",", ":"), default=str))


def largest_parts(record: WriteRecord, n: int = 3) -> list[tuple[str, int]]:
    """The ``n`` largest fields of ``record``'s change, after and extra, as (dotted path,
    encoded bytes), largest first: what makes a record large (an env var's values)."""
    parts = [
        *_leaves(record.change, "change"),
        *_leaves(record.after, "after"),
        *_leaves(record.extra, "extra"),
    ]
    return sorted(parts, key=lambda p: p[1], reverse=True)[:n]


def check_record(ref: str, record: WriteRecord) -> None:
    """Raise RecordTooLarge when ``record`` encodes to more than ``RECORD_CAP`` bytes. ``ref``
    names the object it was to be written on (``Deployment shop/web``)."""
    size = len(record.to_json().encode())
    if size <= RECORD_CAP:
        return
    parts = largest_parts(record)
    listed = ", ".join(f"{path} {n:,} bytes" for path, n in parts)
    raise RecordTooLarge(
        f"not written: the step's write record on {ref} (the annotation that lets a retry and "
        f"a restore read this change back) would take {size:,} bytes, over the cap of "
        f"{RECORD_CAP:,} bytes per record; largest parts: {listed}. Nothing was changed; "
        "make the step's change smaller, or make it by hand",
        size=size,
        cap=RECORD_CAP,
        parts=parts,
    )


def _own(annotations: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in annotations.items() if not k.startswith(WRITE_PREFIX)}


def _largest(annotations: Mapping[str, str], n: int = 3) -> list[tuple[str, int]]:
    sizes = [(k, len(k.encode()) + len(v.encode())) for k, v in annotations.items()]
    return sorted(sizes, key=lambda s: s[1], reverse=True)[:n]


def check_room(ref: str, after: Mapping[str, str], *, copied: bool) -> None:
    """Raise AnnotationsTooLarge when ``after`` (the object's annotations once the write
    lands: ``merged``) would pass ``ANNOTATION_BUDGET``, or, for a Deployment (``copied``),
    when its annotations the controller copies onto its ReplicaSet, with every slot there
    holding a record at the cap (``RECORD_ROOM``), would: the ReplicaSet keeps slot values
    the Deployment has since dropped."""
    total = annotations_size(after)
    own = _own(after)
    if total > ANNOTATION_BUDGET:
        raise _too_large(f"{ref} would carry", total, own)
    copies = {k: v for k, v in own.items() if k not in NOT_COPIED}
    worst = annotations_size(copies) + RECORD_ROOM
    if copied and worst > ANNOTATION_BUDGET:
        where = (
            f"a ReplicaSet of {ref} could carry (its copies of remediator's write records "
            f"counted at their most, {RECORD_ROOM:,} bytes)"
        )
        raise _too_large(where, worst, copies)


def check_replica_sets(
    ref: str, after: Mapping[str, str], replica_sets: Iterable[tuple[str, Mapping[str, str]]]
) -> None:
    """Raise AnnotationsTooLarge when one of ``replica_sets`` (name, annotations) of the
    Deployment ``ref``, whose annotations become ``after``, could pass ``ANNOTATION_BUDGET``
    once the template returns to its own (set_env back to an old value, a revert, a
    rollout_undo to it): the controller then reuses it and copies ``after``'s copyable
    annotations on top of what it keeps, among them annotations the Deployment has dropped
    since and old per-step write records (``write.remediator.io/<run>.<phase>.<step>``: the
    controller never removes a key there, and no write displaces them). Counted: what it keeps
    (its annotations less the keys the copy overwrites and the slots), the copies, and every
    slot at the cap (``RECORD_ROOM``)."""
    copies = {k: v for k, v in _own(after).items() if k not in NOT_COPIED}
    for name, held in replica_sets:
        kept = {k: v for k, v in held.items() if k not in copies and k not in SLOT_KEYS}
        worst = annotations_size(kept) + annotations_size(copies) + RECORD_ROOM
        if worst > ANNOTATION_BUDGET:
            where = (
                f"ReplicaSet {name} of {ref} (it keeps annotations the Deployment has dropped "
                "since, and gets the Deployment's on top when the template returns to its own: "
                "a rollback to it, or a template write back to its template; the slots' write "
                f"records counted at their most, {RECORD_ROOM:,} bytes) could carry"
            )
            raise _too_large(where, worst, {**kept, **copies}, remedy=f"from ReplicaSet {name}")


def _too_large(
    where: str, size: int, own: Mapping[str, str], *, remedy: str = ""
) -> AnnotationsTooLarge:
    largest = _largest(own)
    listed = ", ".join(f"{k} {n:,} bytes" for k, n in largest) or "none"
    return AnnotationsTooLarge(
        f"not written: after this write {where} {size:,} bytes of annotations, over "
        f"{ANNOTATION_BUDGET:,} bytes (7/8 of the API server's {ANNOTATION_LIMIT:,}-byte cap, "
        f"past which it refuses the object or the Deployment stalls); its largest own "
        f"annotations: {listed}. Nothing was changed; remove or shrink some of them"
        + (f" {remedy}" if remedy else ""),
        size=size,
        budget=ANNOTATION_BUDGET,
        largest=largest,
    )
