"""Alert event rows as JSON goes to the store (``event_json``: the documents intake's
statements send) and read back: the columns read (``event_columns``) and the record
(``event_from_row``), refused with ``UnreadableEvent`` for a row whose labels or annotations
were edited, in the database, to what intake never writes (``receiver.store.stored_json``).

Such an event is never matched, nor written about, with its labels guessed (none): the claim
settles it dead on its own (``EventQueue.claim_events``), and a run taken up again whose alert
it is fails the steps it takes up without acting (``receiver.pipeline.runner.read_origin``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson

from receiver.model import AlertEvent, Status
from receiver.store.stored_json import STRINGS, decode_columns
from receiver.unreadable import unreadable_text

__all__ = ["EVENT_SHAPES", "UnreadableEvent", "event_columns", "event_from_row", "event_json"]


def _as_dict(value: object) -> dict[object, object]:
    """Labels and annotations may be any Mapping; JSON encodes only dicts."""
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_std_event_json = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, default=_as_dict
).encode


def event_json(value: object) -> str:
    """Compact JSON of events' values, their labels and annotations (any Mapping) as objects:
    the documents intake's insert and its label-clash check send (events.py,
    label_clashes.py). Raises TypeError for a value JSON cannot write.

    Written by orjson: a batch of ten notifications in 2 µs instead of 21 µs with the standard
    library's encoder, on every intake batch (issue 12). For such values (strings, None,
    string-keyed objects in their order, arrays) the text is the standard library's with
    ``ensure_ascii=False`` and no whitespace, byte for byte (tests/unit/test_event_json.py);
    what orjson refuses (a lone surrogate, an integer beyond 64 bits) goes to the standard
    library, as it always did, so the store's answer to it is unchanged."""
    try:
        return orjson.dumps(value, default=_as_dict).decode()
    except TypeError:
        return _std_event_json(value)


# An event's JSON columns, as intake writes them: label name -> value, both strings.
EVENT_SHAPES = {"labels": STRINGS, "annotations": STRINGS}


class UnreadableEvent(ValueError):
    """The labels, annotations or a time of alert event ``event_id`` cannot be read: ``fields``
    maps each such column to why (``stored_json``). Its text is ``unreadable_text`` of them:
    ``labels cannot be read: it was edited after it was written (...)``."""

    def __init__(self, event_id: int, fields: Mapping[str, str]) -> None:
        self.event_id = event_id
        self.fields = dict(fields)
        super().__init__(unreadable_text(self.fields))


def event_columns(alias: str = "") -> str:
    """The alert_events columns ``event_from_row`` and ClaimedEvent read, optionally qualified."""
    p = f"{alias}." if alias else ""
    return f"""
    {p}id, {p}fingerprint, {p}starts_at, {p}status, {p}ends_at, {p}labels::text AS labels,
    {p}annotations::text AS annotations, {p}generator_url, {p}group_key, {p}receiver,
    {p}received_at, {p}attempts, {p}lease_until, {p}last_error, {p}refire
"""


def event_from_row(row: Mapping[str, Any]) -> AlertEvent:
    """An AlertEvent from a row of ``event_columns()``. UnreadableEvent when its labels or
    annotations cannot be read back or are not an object of strings, or a time of it is
    outside Python's years (``stored_times``; each only an edit of the table writes)."""
    data, unreadable = decode_columns(row, EVENT_SHAPES)
    if unreadable:
        raise UnreadableEvent(row["id"], unreadable)
    return AlertEvent(
        id=row["id"],
        fingerprint=row["fingerprint"],
        starts_at=row["starts_at"],
        status=Status(row["status"]),
        labels=data["labels"],
        annotations=data["annotations"],
        ends_at=row["ends_at"],
        generator_url=row["generator_url"],
        group_key=row["group_key"],
        receiver=row["receiver"],
        received_at=row["received_at"],
        refire=row["refire"],
    )
