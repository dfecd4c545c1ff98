"""The one byte form of JSON the store writes: ``canonical_json``, which the audit hash is
computed over and jsonb parameters are sent in, and ``audit_data``, an audit row's data in the
form the verifier writes again from what jsonb gives back (``receiver.store.audit``). No I/O.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

__all__ = ["audit_data", "canonical_json"]


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 kept: the byte form the audit hash is computed over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def audit_data(data: Mapping[str, Any]) -> str:
    """``data`` as the canonical JSON an audit row is hashed over: the text the verifier writes
    again from what jsonb gives back (``canonical_json`` of ``json.loads`` of the stored value),
    so that a row verifies whatever it holds. Raises ValueError for NaN or an infinity, which
    jsonb refuses (the row could never be sealed).

    Most data needs one encoding: string keys, and no float (``_plain``; a refused storm
    event's ``run.created`` row took a third of the time of the round trip, issue 12). Other
    data goes through JSON once first (keys become strings, and sort as strings) and its floats
    become what jsonb's numeric gives back (``_as_jsonb_gives_back``)."""
    value = dict(data)
    if _plain(value):
        return canonical_json(value)
    return canonical_json(_as_jsonb_gives_back(json.loads(canonical_json(value))))


_PLAIN_SCALARS = frozenset({str, int, bool, type(None)})


def _plain(value: Any) -> bool:
    """True when ``value`` (JSON-ready) is made of dicts with string keys, lists, tuples,
    strings, integers, booleans and None only (no float, no subclass): its canonical JSON is
    then what jsonb gives back. Iterative: audit data may nest deeper than the stack."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            for key in item:
                if type(key) is not str:
                    return False
            stack.extend(item.values())
        elif kind is list or kind is tuple:
            stack.extend(item)
        elif kind not in _PLAIN_SCALARS:
            return False  # a float, or a type JSON may write in another form (a subclass)
    return True


def _as_jsonb_gives_back(value: Any) -> Any:
    """``value`` (as ``json.loads`` gives it) with each float as jsonb's numeric gives it back:
    Python writes a float of 1e16 and up with an exponent, which comes back as an integer
    (``1e+16`` as ``10000000000000000``); ``-0.0`` comes back as ``0.0``. ValueError for NaN and
    the infinities."""
    if isinstance(value, dict):
        return {key: _as_jsonb_gives_back(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_jsonb_gives_back(item) for item in value]
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"audit data cannot hold {value!r}: jsonb has no such number")
        if value == 0.0:
            return 0.0
        written = Decimal(repr(value))
        if "e" in repr(value) and written == written.to_integral_value():
            return int(written)
    return value
