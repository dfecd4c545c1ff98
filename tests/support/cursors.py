"""Run-list cursors this service never issued, for the decoder's unit tests and the routes'
integration tests alike (receiver/store/paging.py)."""

from __future__ import annotations

import base64

__all__ = ["CRAFTED", "RUN", "cursor_of"]

RUN = "0b7e6c1a-3f57-4d0e-9a39-6f3c5d1e2a40"

# Each reached PostgreSQL as a DataError (a 500) or was read as a naive time before the
# decoder checked them whole: a bad uuid, a date outside the years 1-9999 in UTC, a missing or
# an extra part, no zone.
CRAFTED = [
    "2026-12-01T15:40:44+00:00|zz",
    f"9999-12-31T23:59:59-23:59|{RUN}",
    f"0001-01-01T00:00:00+23:59|{RUN}",
    "2026-12-01T15:40:44+00:00|",
    f"2026-12-01T15:40:44+00:00|{RUN}|x",
    f"2026-12-01T15:40:44|{RUN}",
]


def cursor_of(raw: str) -> str:
    """``raw`` encoded as ``encode_cursor`` encodes: URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
