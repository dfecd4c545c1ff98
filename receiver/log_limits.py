"""What keeps the log bounded whatever the clients send: ``Throttle`` lets one line through per
interval of a warning every request would repeat (the store down, a flood of malformed
requests), and ``BadRequestFilter`` describes aiohttp's malformed-request records without the
bytes received. ``receiver.log_setup.configure_logging`` installs the filter.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp.http_exceptions import HttpProcessingError

__all__ = ["BAD_REQUEST_KEYS", "BAD_REQUEST_LOG_EVERY_S", "BadRequestFilter", "Throttle"]

# At most one "bad HTTP request" line per this many seconds (see ``BadRequestFilter``).
BAD_REQUEST_LOG_EVERY_S = 10.0
# The record attributes ``BadRequestFilter`` sets, rendered as key-values.
BAD_REQUEST_KEYS = ("peer", "error", "status", "not_logged_since_last")


class Throttle:
    """Lets one report through per ``every_s`` seconds and counts the ones held back meanwhile.

    While PostgreSQL is down every webhook gets a 503, and a warning per request would flood the
    log with one line per notification (thousands a second in a storm) that all say the same
    thing; so would a client sending malformed requests. ``clock`` returns monotonic seconds
    (``time.monotonic`` by default). Not thread-safe; meant for one event loop.
    """

    def __init__(self, every_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if every_s < 0:
            raise ValueError(f"every_s must be >= 0, got {every_s}")
        self._every_s = every_s
        self._clock = clock
        self._next_at: float | None = None
        self._held_back = 0

    def ready(self) -> int | None:
        """None when this report is to be held back (it is counted); otherwise the number of
        reports held back since the last one that went through."""
        now = self._clock()
        if self._next_at is not None and now < self._next_at:
            self._held_back += 1
            return None
        self._next_at = now + self._every_s
        held_back, self._held_back = self._held_back, 0
        return held_back


class BadRequestFilter(logging.Filter):
    """aiohttp's server logs a request it cannot parse (``BadHttpMessage``, ``LineTooLong``,
    ...) at error level with the exception, whose text quotes the offending request line or
    header as received: ``Authorization: Bearer <token>\x00`` puts the token in the log, and
    any client can write multi-line errors at will. Such a record keeps the fact, the peer, the
    error's class and status, loses the contents (message and traceback), becomes a warning, and
    passes at most once per the throttle's interval, counting the ones held back. Other records
    pass unchanged."""

    def __init__(self, throttle: Throttle) -> None:
        super().__init__()
        self._throttle = throttle

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        held_back = self._throttle.ready()
        if held_back is None:
            return False
        args = record.args if isinstance(record.args, tuple) else ()
        record.peer = str(args[0]) if len(args) == 1 else None
        record.error = type(exc).__name__
        record.status = exc.code
        record.not_logged_since_last = held_back
        record.msg, record.args = "bad HTTP request (its contents are not logged)", ()
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True
