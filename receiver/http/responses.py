"""JSON responses: every answer of the API, errors included, is a compact JSON object; and
the HTML pages' response, with its nonce and security headers."""

from __future__ import annotations

import dataclasses
import json
import secrets
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any

from aiohttp import web

from receiver.unreadable import UnreadableTime
from receiver.webpages import security_headers

__all__ = ["html_response", "json_default", "json_response", "list_row", "row", "too_large"]


# Every JSON answer: never stored (runs, approvals and the audit log are for their caller, not
# for a shared cache or a browser's disk), never read by a browser as anything but JSON.
_JSON_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """``data`` as compact JSON (see ``json_default`` for what it may hold), with
    ``_JSON_HEADERS`` and ``headers``."""
    return web.Response(
        text=_encode(data),
        status=status,
        content_type="application/json",
        headers=_JSON_HEADERS if headers is None else {**_JSON_HEADERS, **headers},
    )


def html_response(render: Callable[[str], str], status: int = 200) -> web.Response:
    """A page: ``render(nonce)`` with a fresh nonce for its inline stylesheet, sent with the
    headers that allow that stylesheet and nothing else (``receiver.webpages``)."""
    nonce = secrets.token_urlsafe(16)
    return web.Response(
        text=render(nonce), status=status, content_type="text/html", headers=security_headers(nonce)
    )


def json_default(value: Any) -> Any:
    """``json.dumps``' fallback: datetimes as ISO 8601, timedeltas as seconds, enums as their
    value, dataclasses, mappings, sets and pydantic models as plain data; a time edited outside
    Python's years as stored (``UnreadableTime``). Raises TypeError."""
    if isinstance(value, UnreadableTime):
        return value.stored
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    raise TypeError(f"cannot serialise {type(value).__name__}")


# One encoder for every answer: json.dumps with any option builds a new JSONEncoder on each call,
# a visible cost per webhook.
_encode = json.JSONEncoder(default=json_default, separators=(",", ":")).encode


def too_large(max_body: int) -> web.Response:
    """413 for a body over ``max_body`` bytes."""
    return json_response({"error": f"body exceeds {max_body} bytes"}, 413)


def row(value: Any) -> Any:
    """A run or approval row as JSON-ready data (the store may return dicts, records or
    dataclasses). A record's ``unreadable`` (field -> why it cannot be read: edited in the
    database since it was written; receiver.store.stored_json), its steps' too, is given as
    ``<field>_unreadable``: why, beside the field (null, or ``{}`` for params, plan and
    context), as ``GET /api/v1/events`` gives such a field."""
    if isinstance(value, Mapping):
        return dict(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        data = _marked(dataclasses.asdict(value))
        if isinstance(data.get("steps"), list | tuple):
            data["steps"] = [_marked(s) for s in data["steps"]]
        return data
    return value


def _marked(data: dict[str, Any]) -> dict[str, Any]:
    for name, why in (data.pop("unreadable", None) or {}).items():
        data[f"{name}_unreadable"] = why
    return data


def list_row(value: Any) -> Any:
    """A run row of a page of runs: without its steps."""
    # A page of runs carries no steps: an empty list there would read as "did nothing".
    data = row(value)
    if isinstance(data, dict):
        data.pop("steps", None)
    return data
