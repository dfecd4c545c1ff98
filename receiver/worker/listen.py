"""The worker's LISTEN connection: wake-ups on the store's work channel, held across drops.

A NOTIFY on ``WORK_CHANNEL`` (intake queued events, a job became due) is handed to the worker
at once; each time the connection is made again the worker is told to look for work, as what
was sent while it was down is lost. Unreachable (``database.direct_url``'s server behind
PgBouncer, say), work is found by the worker's poll meanwhile, and a warning says so at most
once a minute.

On each connection made, the listener checks that it hears what the store sends: it LISTENs on
a channel of its own, the store NOTIFYs it through its pool (``database_url``), and when nothing
arrives within ``LISTEN_CHECK_S`` a warning names ``database.direct_url``: a LISTEN through a
transaction pooler (the pooler under another name than ``database_url`` gives it, which the
settings' check cannot see) or on another server hears none of the store's NOTIFYs, and work is
found only by polling. Each connection, not the first only: after a failover the same name may
lead elsewhere. A NOTIFY the store cannot send within that time (its pool busy) leaves the
check for the next connection, and the listener to its work.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from receiver.log_limits import Throttle
from receiver.store import WORK_CHANNEL, describe, is_unavailable, store_session_settings
from receiver.worker.attempt import Backoff

__all__ = [
    "LISTEN_CHECK_S",
    "LISTEN_COMMAND_TIMEOUT_S",
    "LISTEN_WARNING_EVERY_S",
    "Listener",
    "Notify",
    "SendNotify",
]

# At most one "listen connection failed" warning per this many seconds (a PostgreSQL outage
# retries every few seconds, each replica; the warnings held back are counted).
LISTEN_WARNING_EVERY_S = 60.0

# How long a statement on the listen connection may wait for its answer (seconds): LISTEN
# itself (``add_listener`` takes no timeout of its own) and the probe. A server that took the
# connection and then stopped answering (a frozen server, a proxy whose server went away) held
# the listener in LISTEN for good: no reconnection, nothing said, and a stop's cancellation
# waiting on it too. Past it, the connection is dropped and made again.
LISTEN_COMMAND_TIMEOUT_S = 5.0

# How long each connection's check waits for its NOTIFY to arrive (seconds). It arrives in a few
# milliseconds on a direct connection (one round trip after the commit); a lost one never does.
LISTEN_CHECK_S = 2.0

# asyncpg's listener callback: (connection, sender's pid, channel, payload).
Notify = Callable[[Any, int, str, str], None]
# Sends (channel, payload) as a NOTIFY through the store's pool (``Store.notify``).
SendNotify = Callable[[str, str], Awaitable[None]]


def _setter(event: asyncio.Event) -> Callable[..., None]:
    """A callback of asyncpg's (a termination listener, a NOTIFY listener) that sets ``event``."""
    return lambda *_args: event.set()


class Listener:
    """LISTEN on ``dsn`` until stopped: ``on_notify`` for every NOTIFY, ``on_connected()`` each
    time the connection is (re)made. ``listening`` is set while it is up (tests wait on it).
    A probe every ``min(15, poll_interval_s)`` seconds finds a half-open connection; each
    statement waits at most ``command_timeout_s`` seconds for its answer. ``send_check``: the
    store's NOTIFY, for the check that each connection hears it (``checked`` is set once one
    was made, heard or not)."""

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
        send_check: SendNotify | None = None,
        check_timeout_s: float = LISTEN_CHECK_S,
    ) -> None:
        self._dsn = dsn
        self._send_check = send_check
        self._check_timeout_s = check_timeout_s
        self.checked = asyncio.Event()
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
                    self._dsn,
                    timeout=5.0,
                    command_timeout=self._command_timeout_s,
                    # Idle for good: named, so the session actions never end it.
                    server_settings=store_session_settings(self._dsn),
                )
                conn.add_termination_listener(_setter(lost))
                await conn.add_listener(WORK_CHANNEL, self._on_notify)
                self.listening.set()
                failures = 0
                self._on_connected()  # notifications sent while we were not listening are lost
                if self._send_check is not None:
                    await self._check(conn, self._send_check)
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), min(15.0, self._poll_interval_s))
                    if not lost.is_set():
                        # A half-open TCP connection never reports termination: probe it.
                        await conn.execute("SELECT 1")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
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
                    # Once a minute at most: an outage retries every few seconds, and so does
                    # a refusal, which lasts (a role, database or password changed since the
                    # start): its traceback was logged at every retry.
                    if is_unavailable(error):
                        # Unreachable (database.direct_url's server, when set): work is only
                        # found by polling meanwhile. The error's class only: its text may
                        # quote the DSN.
                        self._log.warning(
                            "listen connection failed; new work is found by polling meanwhile",
                            error=describe(error),
                            retry_in_s=round(delay, 1),
                            not_logged_since_last=held_back,
                        )
                    else:
                        self._log.error(
                            "listen connection refused; new work is found by polling meanwhile",
                            error=describe(error),
                            retry_in_s=round(delay, 1),
                            not_logged_since_last=held_back,
                            exc_info=error,
                        )
                else:
                    self._log.debug(
                        "listen connection failed",
                        error=describe(error),
                        retry_in_s=round(delay, 1),
                    )
                await asyncio.sleep(delay)

    async def _check(self, conn: Any, send: SendNotify) -> None:
        """NOTIFY a channel of this connection's own through the store and wait up to
        ``check_timeout_s`` for it here; warn when it does not come. A store out of reach
        leaves the check for the next connection; the connection's own failures propagate."""
        channel = f"remediator_listen_check_{secrets.token_hex(6)}"
        heard = asyncio.Event()
        arrived = _setter(heard)
        await conn.add_listener(channel, arrived)
        try:
            # Bounded: the pool's connections may all be taken, and the listener waits here.
            await asyncio.wait_for(send(channel, "check"), self._check_timeout_s)
        except Exception as exc:
            self._log.info("listen check not made: the store's NOTIFY failed", error=describe(exc))
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(heard.wait(), self._check_timeout_s)
            self.checked.set()
            if not heard.is_set():
                self._log.warning(
                    "the listen connection did not hear a NOTIFY the store sent through"
                    " database_url: database.direct_url (database_url when unset) does not"
                    " reach the same PostgreSQL directly (a pooler under another host name or"
                    " address?); new work is found only by polling, every worker.poll_interval",
                    waited_s=self._check_timeout_s,
                    poll_interval_s=self._poll_interval_s,
                )
        # Not in a finally: a failed or cancelled connection is closed by run(), and an UNLISTEN
        # on it would hold a stop up for its command timeout.
        await conn.remove_listener(channel, arrived)
