"""The JSON bodies of the operator routes (pause, retry, drop, approve, reject): one reading and
one check, shared, so every route refuses the same things the same way.

A body is a JSON object; no string in it (keys included) may hold U+0000, which PostgreSQL's
text cannot store (the answer would be a 500 instead of a 400); a ``reason`` is a string of at
most ``MAX_REASON_CHARS`` characters once stripped: it is stored in the audit log and shown in
tables, not a place for a document. Errors are ``BadField`` naming the field, answered as
``400 {"error", "field"}``.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from receiver.http.responses import json_response

__all__ = ["MAX_REASON_CHARS", "BadField", "bad_field", "json_object", "reason_of", "text_field"]

MAX_REASON_CHARS = 1000


class BadField(Exception):
    """A body field the caller must fix; ``field`` names it (``body`` for the whole body)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def bad_field(exc: BadField) -> web.Response:
    """The 400 answer for ``exc``."""
    return json_response({"error": exc.message, "field": exc.field}, 400)


async def json_object(request: web.Request, *, required: bool = True) -> dict[str, Any]:
    """The request's body as a JSON object (``{}`` for no body when not ``required``).

    Raises BadField for a body that is not JSON, not an object, or holds U+0000 in a string."""
    if not request.can_read_body:
        if required:
            raise BadField("body", "expected a JSON object")
        return {}
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadField("body", "invalid JSON") from None
    if not isinstance(body, dict):
        raise BadField("body", "expected a JSON object")
    _no_nul(body, "")
    return body


def _no_nul(value: Any, path: str) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise BadField(path or "body", "must not contain U+0000 (NUL)")
    elif isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if "\x00" in key:
                raise BadField(path or "body", "a key must not contain U+0000 (NUL)")
            _no_nul(item, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _no_nul(item, f"{path}.{index}" if path else str(index))


def text_field(value: Any, field: str, *, max_chars: int) -> str | None:
    """``value`` stripped, None when absent or blank. Raises BadField when it is not a string,
    holds U+0000 or is longer than ``max_chars``."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadField(field, f"{field} must be a string")
    if "\x00" in value:
        raise BadField(field, "must not contain U+0000 (NUL)")
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
