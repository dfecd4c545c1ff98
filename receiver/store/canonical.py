"""The one byte form of JSON the store writes: ``canonical_json``, which the audit hash is
computed over and jsonb parameters are sent in, and ``audit_data``, an audit row's data in the
form the verifier writes again from what jsonb gives back (``receiver.store.audit``). No I/O.

The form is the standard library's ``json.dumps(sort_keys=True, separators=(",", ":"),
ensure_ascii=False)``: every audit row ever written was hashed over it, so it can never change.
Plain data (``_plain``: string keys, and no float but one Python writes without an exponent)
is written by orjson instead, about ten times faster (a storm's refused event writes several
rows, issue 12), because for such data orjson's ``OPT_SORT_KEYS`` output is the same text: keys
sorted by code point, nothing escaped but ``"``, ``\\`` and the control characters, with the
same escapes (tests/unit/test_audit_data.py checks every code point), and such a float in the
shortest form that reads back as it (``repr``). What orjson writes otherwise or refuses (floats
with an exponent, which it spells ``1e16`` where ``json`` writes ``1e+16``; integers beyond 64
bits; lone surrogates) goes to ``json``.

U+0000, which JSON escapes as ``\\u0000`` and jsonb refuses (22P05, ``\\u0000 cannot be
converted to text``), is written as the text ``\\x00`` (``_storable``; in keys too, before they
are sorted): a value an action read from a live system (an environment variable's value, an
annotation on a Deployment) may hold it, and the record of the step that acted on it failed on
every retry of its event, until dead. No row ever held U+0000, so every hash computed before
still verifies.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import orjson

from remediations.stored_text import without_nul

__all__ = ["audit_data", "canonical_json"]


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 kept: the byte form the audit hash is computed over.
    Raises TypeError for a value JSON cannot write, ValueError for data that contains itself."""
    return _storable(value, plain=_plain(value))


def _storable(value: Any, *, plain: bool) -> str:
    """``value``'s canonical text (``plain``: as ``_plain`` found it); when a string or a key
    of it holds U+0000, that of a copy with each written as the text ``\\x00`` (written before
    the keys are sorted, so the text is the one the verifier writes again)."""
    text = _plain_json(value) if plain else _std_json(value)
    # JSON's escape of U+0000 (or a string's text "\u0000", rarely: written again the same).
    if "\\u0000" not in text:
        return text
    value = without_nul(value)
    return _plain_json(value) if plain else _std_json(value)


def _std_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _plain_json(value: Any) -> str:
    """``canonical_json`` of data ``_plain`` accepted: orjson's text, the same as ``json``'s for
    such data, except that orjson refuses integers beyond 64 bits and lone surrogates (a
    TypeError), which ``json`` then writes as it always has."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return _std_json(value)


# Containers walked at most before the one-encoding path gives up (and the round trip, which
# refuses data that contains itself, takes over): audit data holds tens.
_PLAIN_CONTAINERS = 10_000


def audit_data(data: Mapping[str, Any]) -> str:
    """``data`` as the canonical JSON an audit row is hashed over: the text the verifier writes
    again from what jsonb gives back (``canonical_json`` of ``json.loads`` of the stored value),
    so that a row verifies whatever it holds. Raises ValueError for NaN or an infinity, which
    jsonb refuses (the row could never be sealed), and for data that contains itself.

    Most data needs one encoding: string keys, and no float but one written without an
    exponent, which jsonb gives back digit for digit (``_plain``; with the check, a refused
    storm event's ``run.created`` row takes 45 µs against 74 µs for the round trip, issue 12;
    the shipped high-memory rule's steps hold ``factor: 1.5``). Other
    data goes through JSON once first (keys become strings, and sort as strings), its floats
    read back as jsonb's numeric gives them (``_jsonb_number``)."""
    value = dict(data)
    if _plain(value):
        return _storable(value, plain=True)
    return canonical_json(
        json.loads(_std_json(value), parse_float=_jsonb_number, parse_constant=_no_number)
    )


def _plain(value: Any) -> bool:
    """True when ``value`` (JSON-ready) is made of dicts with ``str`` keys, lists, tuples,
    strings, integers (booleans and enums too: JSON writes their value), None and floats
    ``_plain_float`` accepts only: its canonical JSON is then what jsonb gives back. False for
    another float, a key of another type
    (JSON makes it a string, which sorts otherwise), a container of another type, and data of
    more than ``_PLAIN_CONTAINERS`` containers (data that contains itself among them: the
    round trip refuses it)."""
    stack = [value]
    budget = _PLAIN_CONTAINERS
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str or kind is int or kind is bool or item is None:
            continue
        if kind is float:
            if _plain_float(item):
                continue
            return False
        if kind is dict or kind is list or kind is tuple:
            budget -= 1
            if budget < 0:
                return False
            if kind is dict:
                for key in item:
                    if type(key) is not str:
                        return False
                stack.extend(item.values())
            else:
                stack.extend(item)
        elif not isinstance(item, (str, int)):
            return False  # a float subclass, or a type JSON cannot write
    return True


def _plain_float(value: float) -> bool:
    """True for a float Python writes without an exponent (``repr``: magnitudes from 1e-4 up
    to 1e16): orjson writes the same digits, and jsonb's numeric keeps them, so it reads back
    as the same float. False for an exponent form (orjson spells it otherwise, and jsonb gives
    a whole one back as an integer), ``-0.0`` (jsonb's numeric has no negative zero), NaN and
    the infinities (jsonb refuses them: the round trip says so)."""
    text = repr(value)
    return "e" not in text and "n" not in text and text != "-0.0"


def _jsonb_number(text: str) -> float | int:
    """A JSON number with a fraction or an exponent (``text``, as Python wrote a float), as
    jsonb's numeric gives it back: one written with an exponent that is a whole number comes
    back as an integer (``1e+16`` as ``10000000000000000``: a float of magnitude 1e16 or more),
    and ``-0.0`` as ``0.0``."""
    written = Decimal(text)
    if written == 0:
        return 0.0
    if "e" in text.lower() and written == written.to_integral_value():
        return int(written)
    return float(text)


def _no_number(text: str) -> None:
    """``NaN`` and the infinities, which Python writes and jsonb refuses."""
    raise ValueError(f"audit data cannot hold {text}: jsonb has no such number")
