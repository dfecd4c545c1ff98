"""Reading back the JSON columns this service wrote, when a row may have been edited since.

Every JSON column is jsonb, so PostgreSQL holds only valid JSON there; but it holds JSON Python
cannot read back (an integer of more than 4,300 digits, arrays nested thousands deep: no write
of this service makes either), and any shape (a list where an object was written, a number as
a step's params). Only an edit of the table puts either there. A read for an operator, a
reviewer or a worker decodes such a column here and is told why it cannot be used, rather than
raising: one edited field must not hide the rest of its run (an answer of 500), nor crash a
worker in a loop. What a reader does with the mark is its own (a page shows it, the API gives
``<column>_unreadable``, a worker taking a run up fails the step without acting).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from receiver.store.stored_times import unreadable_times

__all__ = [
    "OBJECT",
    "OBJECTS",
    "STRINGS",
    "decode_columns",
    "decode_object",
    "stored_data",
    "unreadable_why",
]

# The shapes this service writes into its JSON columns.
OBJECT = "an object"
STRINGS = "an object of strings"
OBJECTS = "a list of objects"


def stored_data(text: str) -> tuple[Any, str | None]:
    """The value of jsonb's ``text``, and None; or, for JSON Python cannot read (an integer of
    more than 4,300 digits, nesting deeper than its recursion limit), the text itself and why
    it cannot be read."""
    try:
        return json.loads(text), None
    except (ValueError, RecursionError) as exc:
        return text, f"the stored data cannot be read back as JSON here: {type(exc).__name__}"


def _shaped(value: Any, shape: str) -> bool:
    if shape == OBJECT:
        return isinstance(value, dict)
    if shape == STRINGS:
        return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    if shape == OBJECTS:
        return isinstance(value, list) and all(isinstance(v, dict) for v in value)
    raise ValueError(f"no such shape: {shape}")


def unreadable_why(column: str, text: str, shape: str) -> tuple[Any, str | None]:
    """The value of ``column``'s jsonb ``text`` and None; or None and why it cannot be used:
    it cannot be read back (``stored_data``) or is not of ``shape`` (one of OBJECT, STRINGS,
    OBJECTS; ValueError for another)."""
    value, why = stored_data(text)
    if why is None and not _shaped(value, shape):
        why = f"the stored {column} is a JSON {type(value).__name__}, not {shape}"
    return (None, why) if why is not None else (value, None)


def decode_object(column: str, text: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """An object column's jsonb ``text`` (None: SQL NULL) as (the object, None); or, when it
    cannot be read or is not an object, (None, why)."""
    if text is None:
        return None, None
    return unreadable_why(column, text, OBJECT)


def decode_columns(
    row: Mapping[str, Any], shapes: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """``row`` (column -> value, its jsonb columns selected as text) with its ``shapes``
    columns (column -> shape) decoded, and column -> why for each that cannot be read back or
    is not of its shape: such a column is None. A NULL stays None, and is not unreadable.
    A time outside Python's years (``stored_times.UnreadableTime``) is marked too, and kept."""
    data = dict(row)
    unreadable = unreadable_times(row)
    for column, shape in shapes.items():
        if data.get(column) is None:
            continue
        data[column], why = unreadable_why(column, data[column], shape)
        if why is not None:
            unreadable[column] = why
    return data, unreadable
