"""``Throttle``: at most one log line per interval for a warning that repeats with every request.

While PostgreSQL is down every webhook gets a 503, and a warning per request would flood the log
with one line per notification (thousands a second in a storm) that all say the same thing.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Throttle"]


class Throttle:
    """Lets one report through per ``every_s`` seconds and counts the ones held back meanwhile.

    ``clock`` returns monotonic seconds (``time.monotonic`` by default). Not thread-safe; meant
    for one event loop.
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
