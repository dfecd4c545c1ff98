"""The worker's LISTEN connection: wake-ups on the store's work channel, held across drops.

A NOTIFY on ``WORK_CHANNEL`` (intake queued events, a job became due) is handed to the worker
at once; each time the connection is made again the worker is told to look for work, as what
was sent while it was down is lost. Unreachable (``database.direct_url``'s server behind
PgBouncer, say), work is found by the worker's poll meanwhile, and a warning says so at most
once a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import asyncpg

from receiver.log_limits import Throttle
from receiver.store import WORK_CHANNEL, describe, is_unavailable
from receiver.worker.attempt import Backoff

__all__ = ["LISTEN_COMMAND_TIMEOUT_S", "LISTEN_WARNING_EVERY_S", "Listener", "Notify"]

# At most one "listen connection failed" warning per this many seconds (a PostgreSQL outage
# retries every few seconds, each replica; the warnings held back are counted).
LISTEN_WARNING_EVERY_S = 60.0

# How long a statement on the listen connection may wait for its answer (seconds): LISTEN
# itself (``add_listener`` takes no timeout of its own) and the probe. A server that took the
# connection and then stopped answering (a frozen server, a proxy whose server went away) held
# the listener in LISTEN for good: no reconnection, nothing said, and a stop's cancellation
# waiting on it too. Past it, the connection is dropped and made again.
LISTEN_COMMAND_TIMEOUT_S = 5.0

# asyncpg's listener callback: (connection, sender's pid, channel, payload).
Notify = Callable[[Any, int, str, str], None]


def _setter(event: asyncio.Event) -> Callable[[object], None]:
    return lambda _conn: event.set()


class Listener:
    """LISTEN on ``dsn`` until stopped: ``on_notify`` for every NOTIFY, ``on_connected()`` each
    time the connection is (re)made. ``listening`` is set while it is up (tests wait on it).
    A probe every ``min(15, poll_interval_s)`` seconds finds a half-open connection; each
    statement waits at most ``command_timeout_s`` seconds for its answer."""

    def __init__(
        self,
        dsn: str,
        on_notify: Notify,
        on_connected: Callable[[], None],
        *,
        poll_interval_s: float,
        backoff: Backoff,
        log: Any,
        command_timeout_s: float = LISTEN_COMMAND_TIMEOUT_S,
    ) -> None:
        self._dsn = dsn
        self._command_timeout_s = command_timeout_s
        self._on_notify = on_notify
        self._on_connected = on_connected
        self._poll_interval_s = poll_interval_s
        self._backoff = backoff
        self._log = log
        self._warnings = Throttle(LISTEN_WARNING_EVERY_S)
        self.listening = asyncio.Event()

    async def run(self, stopping: Callable[[], bool]) -> None:
        """Listen until ``stopping()`` is true (checked after each connection ends; cancel
        the task to stop at once)."""
        failures = 0
        while not stopping():
            conn: Any = None
            lost = asyncio.Event()
            error: BaseException | None = None
            try:
                conn = await asyncpg.connect(
                    self._dsn, timeout=5.0, command_timeout=self._command_timeout_s
                )
                conn.add_termination_listener(_setter(lost))
                await conn.add_listener(WORK_CHANNEL, self._on_notify)
                self.listening.set()
                failures = 0
                self._on_connected()  # notifications sent while we were not listening are lost
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), min(15.0, self._poll_interval_s))
                    if not lost.is_set():
                        # A half-open TCP connection never reports termination: probe it.
                        await conn.execute("SELECT 1")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_unavailable(exc):
                    self._log.exception("listen connection failed")
                error = exc
                failures += 1
            finally:
                self.listening.clear()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 2.0)
            if not stopping():
                delay = self._backoff(failures, cap=10.0)
                if error is None:
                    self._log.info(
                        "listen connection lost; reconnecting", retry_in_s=round(delay, 1)
                    )
                elif (held_back := self._warnings.ready()) is not None:
                    # Unreachable (database.direct_url's server, when set): work is only found
                    # by polling meanwhile. The error's class only: its text may quote the DSN.
                    # Once a minute at most: an outage retries every few seconds.
                    self._log.warning(
                        "listen connection failed; new work is found by polling meanwhile",
                        error=describe(error),
                        retry_in_s=round(delay, 1),
                        not_logged_since_last=held_back,
                    )
                else:
                    self._log.debug(
                        "listen connection failed",
                        error=describe(error),
                        retry_in_s=round(delay, 1),
                    )
                await asyncio.sleep(delay)
