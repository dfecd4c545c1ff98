"""The JSON bodies of the operator routes (pause, retry, drop, approve, reject): one reading and
one check, shared, so every route refuses the same things the same way.

A body is a JSON object; no string in it (keys included) may hold U+0000, which PostgreSQL's
text cannot store, or a lone surrogate, which UTF-8 cannot encode (the answer would be a 500
instead of a 400); it holds only the fields its route takes: an unknown one
(``{"duration": "1h"}`` for ``for``) is refused, as rule files and settings refuse unknown
keys, so that a typo cannot silently change what happens (a pause meant for an hour that lasts
until someone lifts it); a ``reason`` is a string of at most
``MAX_REASON_CHARS`` characters once stripped: it is stored in the audit log and shown in tables,
not a place for a document. Errors are ``BadField`` naming the field, answered as
``400 {"error", "field"}``. The pages' forms (sign-in, an approval link's decision) are read
here too, by ``form_of``.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Collection
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import MultiDict

from receiver.alertmanager import json_problem
from receiver.http.responses import json_response
from receiver.text import has_lone_surrogate

__all__ = [
    "MAX_REASON_CHARS",
    "BadField",
    "bad_field",
    "form_of",
    "json_object",
    "reason_of",
    "text_field",
    "unknown_field",
]

MAX_REASON_CHARS = 1000
FORM = "application/x-www-form-urlencoded"


class BadField(Exception):
    """A body field the caller must fix; ``field`` names it (``body`` for the whole body)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def bad_field(exc: BadField) -> web.Response:
    """The 400 answer for ``exc``."""
    return json_response({"error": exc.message, "field": exc.field}, 400)


class _Object(dict[str, Any]):
    """A JSON object as json read it (the last of a repeated key's values), with the first key
    it gave more than once, or None."""

    repeated: str | None = None


def _unique(pairs: list[tuple[str, Any]]) -> _Object:
    """json's ``object_pairs_hook``: the object, marking its first repeated key. Not raised
    here: json reads the innermost object first, where neither the path to the key nor whether
    the body's own keys are known is at hand."""
    body = _Object(pairs)
    if len(body) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                body.repeated = key
                break
            seen.add(key)
    return body


async def json_object(
    request: web.Request, *, fields: Collection[str], required: bool = True
) -> dict[str, Any]:
    """The request's body as a JSON object (``{}`` for no body when not ``required``) whose
    keys are among ``fields``, the ones the route reads.

    Raises BadField for a body that is not JSON, not an object, or holds U+0000 or a lone
    surrogate in a string (a key with one: ``body``), and naming a key that is not one of
    ``fields`` (with the closest one, if any is close; checked before repeats, so that a
    misspelled key given twice is still named with the one meant) or one an object gives
    twice: json kept the last, so that ``{"reason": "x", "for": "1m", "for": "7d"}`` paused
    for a week, a guess (RFC 8259 leaves such an object's meaning to each reader). A key
    repeated in an object inside the body is named by its path (``reason.a`` for
    ``{"reason": {"a": 1, "a": 2}}``, "reason holds the key 'a' more than once"), not as
    though it were a field."""
    if not request.can_read_body:
        if required:
            raise BadField("body", "expected a JSON object")
        return {}
    try:
        # Read as UTF-8 whatever charset the Content-Type names: JSON has no charset parameter
        # (RFC 8259 section 11), and an unknown one made request.json() raise LookupError (500).
        body = json.loads((await request.read()).decode("utf-8"), object_pairs_hook=_unique)
    except UnicodeDecodeError as exc:
        raise BadField("body", f"not valid UTF-8 (byte {exc.start})") from None
    except (ValueError, RecursionError) as exc:
        # Not only JSONDecodeError: an integer of more than 4,300 digits is a ValueError and
        # arrays nested thousands deep a RecursionError (both were 500s).
        raise BadField("body", f"invalid JSON: {json_problem(exc)}") from None
    if not isinstance(body, dict):
        raise BadField("body", "expected a JSON object")
    _no_nul(body, "")
    # Unknown keys first: a misspelled key given twice ("fro") is answered with the field meant.
    for key in body:
        if key not in fields:
            raise BadField(key, unknown_field(key, fields))
    _no_repeat(body, "")
    return body


async def form_of(request: web.Request) -> MultiDict[str]:
    """The fields of an HTML form the review and approval pages sent: a body of
    ``application/x-www-form-urlencoded`` (the encoding their forms use) in UTF-8 (the charset
    of their pages), whatever charset its Content-Type names; blank fields kept.

    Raises BadField (``body``) for another Content-Type (a multipart body's file parts were
    spooled to disk for nobody) or bytes that are not UTF-8: request.post() raised
    UnicodeDecodeError or, for a charset it did not know, LookupError, both a 500. Raises
    BadField naming the field whose %-escapes decode to bytes that are not UTF-8
    (``reason=caf%e9``, what a page read as latin-1 sends): parse_qsl replaced them with
    U+FFFD, and the audit log kept "caf\ufffd", a reason nobody wrote; and naming the field
    given more than once: no form of the pages sends one twice, and
    ``decision=reject&decision=approve`` decided by whichever came first, a guess."""
    if request.content_type not in ("", FORM):
        raise BadField("body", f"expected a form sent as {FORM}, got {request.content_type}")
    try:
        text = (await request.read()).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadField("body", f"the form is not valid UTF-8 (byte {exc.start})") from None
    # surrogateescape keeps each byte that is not UTF-8 as a lone surrogate, to name its field.
    pairs = parse_qsl(text, keep_blank_values=True, errors="surrogateescape")
    for name, value in pairs:
        if has_lone_surrogate(name + value):
            field = "body" if has_lone_surrogate(name) else name
            raise BadField(field, f"{field} is not valid UTF-8 once its %-escapes are decoded")
    fields = MultiDict(pairs)
    for name in fields:
        if len(fields.getall(name)) > 1:
            raise BadField(name, f"{name} is given more than once: give it once")
    return fields


def unknown_field(key: str, fields: Collection[str]) -> str:
    """The message for ``key``, not one of ``fields``: the closest field when one is close,
    and always the fields there are."""
    known = sorted(fields)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    taken = ", ".join(repr(name) for name in known) or "no fields"
    return f"unknown field {key!r}{hint}; this body takes {taken}"


def _unstorable(text: str) -> str | None:
    """What keeps ``text`` from being stored, or None."""
    if "\x00" in text:
        return "must not contain U+0000 (NUL)"
    # Valid JSON ("\ud800"), but storing or logging it failed with a 500 after the route had
    # begun (a pause, a decision).
    if has_lone_surrogate(text):
        return "must not contain a lone surrogate (U+D800 to U+DFFF), which is not text"
    return None


def _no_nul(value: Any, path: str) -> None:
    if isinstance(value, str):
        if problem := _unstorable(value):
            raise BadField(path or "body", problem)
    elif isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if problem := _unstorable(key):
                raise BadField(path or "body", f"a key {problem}")
            _no_nul(item, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _no_nul(item, f"{path}.{index}" if path else str(index))


def _no_repeat(value: Any, path: str) -> None:
    """Raises BadField for the first object in ``value`` (read by ``_unique``, keys storable)
    that gives a key twice: a body's own key is named as the field, a nested one by its path
    (``reason.a``), which says that the key is inside ``reason`` and not a field."""
    if isinstance(value, _Object):
        if value.repeated is not None:
            if not path:
                field = value.repeated
                raise BadField(field, f"{field} is given more than once: give it once")
            raise BadField(
                f"{path}.{value.repeated}",
                f"{path} holds the key {value.repeated!r} more than once: give it once",
            )
        for key, item in value.items():
            _no_repeat(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _no_repeat(item, f"{path}.{index}" if path else str(index))


def text_field(value: Any, field: str, *, max_chars: int) -> str | None:
    """``value`` stripped, None when absent or blank. Raises BadField when it is not a string,
    holds U+0000 or a lone surrogate, or is longer than ``max_chars``."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadField(field, f"{field} must be a string")
    if problem := _unstorable(value):
        # Named in the text too: the approval page shows the message alone.
        raise BadField(field, f"{field} {problem}")
    text = value.strip()
    if len(text) > max_chars:
        raise BadField(field, f"{field} is {len(text)} characters; at most {max_chars}")
    return text or None


def reason_of(body: dict[str, Any], *, required: str | None = None) -> str | None:
    """The body's ``reason`` (see ``text_field``); ``required``: the message when it is missing
    or blank, None when it may be."""
    text = text_field(body.get("reason"), "reason", max_chars=MAX_REASON_CHARS)
    if text is None and required is not None:
        raise BadField("reason", required)
    return text
