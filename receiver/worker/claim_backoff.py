"""What the claim loop does after a claim the store could not answer: says so, at most once
every ``CLAIM_WARNING_EVERY_S`` (``ClaimOutage``), and waits out its backoff, ended early by a
sign of work (``back_off``).

The warning was logged at every failed claim: with the default poll interval about once a
second for as long as an outage lasted (19 lines in a 15 s restart of PostgreSQL behind
PgBouncer), while the README says the store-down warning is logged at most once every 10 s,
as intake's is.

Such a claim backs off (``Backoff``, up to ``min(30 s, poll_interval)``), so that an outage is
not hammered. A wake-up meanwhile (a NOTIFY of work, the LISTEN connection made again) used to
wait for the backoff's end: after PostgreSQL behind PgBouncer restarted, the first alert stored
waited out the rest of it (8.9 s, 11.5 s; up to 30 s) though its NOTIFY had come at once. Now a
wake-up ends the wait, though never before ``WAKE_AFTER_S``: wake-ups go on while this
replica's store fails (other replicas' intake NOTIFYs, work in progress ending), and the claims
they bring then come at most once a second, as the default poll interval makes them anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from receiver.log_limits import Throttle

__all__ = ["CLAIM_WARNING_EVERY_S", "WAKE_AFTER_S", "ClaimOutage", "back_off"]

# At most one "store unavailable while claiming" warning per this many seconds (the others at
# debug level), as intake's "store unavailable" (receiver.http.app's STORE_DOWN_LOG_EVERY_S).
CLAIM_WARNING_EVERY_S = 10.0

# The shortest wait after a failed claim, whatever wakes the worker (seconds).
WAKE_AFTER_S = 1.0


async def back_off(
    delay_s: float, *, stopped: asyncio.Event, wake: asyncio.Event | None = None
) -> None:
    """Wait ``delay_s`` seconds, or until ``stopped`` is set, or until ``wake`` (when given)
    is, or was already, set once ``WAKE_AFTER_S`` of them have passed."""
    first = delay_s if wake is None else min(delay_s, WAKE_AFTER_S)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopped.wait(), first)
    if stopped.is_set() or wake is None or delay_s <= first:
        return
    waits = {asyncio.ensure_future(stopped.wait()), asyncio.ensure_future(wake.wait())}
    try:
        await asyncio.wait(waits, timeout=delay_s - first, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()


class ClaimOutage:
    """Says that a claim failed for the store being out of reach: a warning at most once every
    ``CLAIM_WARNING_EVERY_S``, with how many were held back since (each at debug level)."""

    def __init__(self, log: Any) -> None:
        self._log = log
        self._warnings = Throttle(CLAIM_WARNING_EVERY_S)

    def failed(self, error: BaseException, retry_in_s: float) -> None:
        """Say that a claim failed with ``error`` (StoreUnavailable: its text names no secret)
        and is tried again in ``retry_in_s`` seconds."""
        said = {"error": str(error), "retry_in_s": round(retry_in_s, 1)}
        if (held_back := self._warnings.ready()) is None:
            self._log.debug("store unavailable while claiming", **said)
        else:
            self._log.warning(
                "store unavailable while claiming", **said, not_logged_since_last=held_back
            )
