"""How long the claim loop waits after a claim the store could not answer: its backoff, ended
early by a sign of work.

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

__all__ = ["WAKE_AFTER_S", "back_off"]

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
