"""The worker loop of one replica: claim events, run the pipeline on each, settle the claim.

Work is found two ways: a LISTEN on ``remediator_events`` (intake NOTIFYs at commit) wakes the
loop at once, and a poll every ``poll_interval_s`` covers a lost notification or a dropped
listen connection. Claims are leases: while ``process`` runs the lease is extended; if this
replica dies, the lease runs out and another replica reclaims the event (at-least-once).

What to do with an event is injected as ``process``; the worker only knows its answer:
done, or retry after a delay. An exception counts as a retry with exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from receiver.model import AlertEvent
from receiver.store import (
    WORK_CHANNEL as EVENTS_CHANNEL,
)
from receiver.store import (
    ClaimedEvent,
    Store,
    StoreUnavailable,
    is_unavailable,
)

__all__ = ["Disposition", "Process", "Worker", "default_owner"]


@dataclass(frozen=True, slots=True)
class Disposition:
    """The pipeline's verdict on one event: finished, or try again after ``retry_after_s``."""

    retry_after_s: float | None = None
    error: str | None = None

    @property
    def is_done(self) -> bool:
        return self.retry_after_s is None

    @classmethod
    def done(cls) -> Disposition:
        return _DONE

    @classmethod
    def retry(cls, after_s: float, error: str | None = None) -> Disposition:
        return cls(retry_after_s=max(0.0, after_s), error=error)


_DONE = Disposition()

Process = Callable[[AlertEvent], Awaitable[Disposition]]


def _setter(event: asyncio.Event) -> Callable[[object], None]:
    return lambda _conn: event.set()


def default_owner() -> str:
    """A lease owner id unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(32):08x}"


class Worker:
    """Claims and processes events until ``stop()``. Start with ``await worker.start()``."""

    def __init__(
        self,
        store: Store,
        process: Process,
        *,
        owner: str | None = None,
        concurrency: int = 4,
        lease_s: float = 60.0,
        poll_interval_s: float = 5.0,
        listen_dsn: str | None = None,
        log: logging.Logger | Any | None = None,
        expire_interval_s: float = 30.0,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 300.0,
    ) -> None:
        self._store = store
        self._process = process
        self.owner = owner or default_owner()
        self._concurrency = max(1, concurrency)
        self._lease_s = lease_s
        self._poll_interval_s = poll_interval_s
        self._listen_dsn = listen_dsn if listen_dsn is not None else store.dsn
        self._log: Any = log or logging.getLogger(__name__)
        self._expire_interval_s = expire_interval_s
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s

        self._wake = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._stopping = False
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        self._loops: list[asyncio.Task[None]] = []
        self.listening = asyncio.Event()  # set while the LISTEN connection is up (for tests)
        self.processed = 0

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        if self._loops:
            return
        self._stopping = False
        self._loops = [
            asyncio.create_task(self._claim_loop(), name=f"worker-claim-{self.owner}"),
            asyncio.create_task(self._listen_loop(), name=f"worker-listen-{self.owner}"),
            asyncio.create_task(self._expire_loop(), name=f"worker-expire-{self.owner}"),
        ]

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop claiming; give in-flight events ``grace_s`` to finish, then release the rest."""
        self._stopping = True
        self._wake.set()
        self._slot_free.set()
        if self._loops:
            claim_loop, *others = self._loops
            for task in others:
                task.cancel()
            # Let a claim in progress finish, so no claimed row is dropped on the floor.
            await asyncio.wait({claim_loop}, timeout=5.0)
            claim_loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops = []
        pending = list(self._in_flight.values())
        if pending:
            _, still_running = await asyncio.wait(pending, timeout=grace_s)
            for task in still_running:
                task.cancel()  # the task releases its event when cancelled
            if still_running:
                await asyncio.wait(still_running, timeout=max(5.0, grace_s))

    async def __aenter__(self) -> Worker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def wake(self) -> None:
        """Look for work now (the NOTIFY callback and tests call this)."""
        self._wake.set()

    # -- claiming -----------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        failures = 0
        while not self._stopping:
            free = self._concurrency - len(self._in_flight)
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            self._wake.clear()
            try:
                claims = await self._store.claim_events(self.owner, free, self._lease_s)
                failures = 0
            except StoreUnavailable as exc:
                failures += 1
                delay = self._backoff(failures, cap=min(30.0, self._poll_interval_s))
                self._log.warning(
                    "store unavailable while claiming: %s; retry in %.1fs", exc, delay
                )
                await asyncio.sleep(delay)
                continue
            except Exception:
                failures += 1
                self._log.exception("claiming events failed")
                await asyncio.sleep(self._backoff(failures, cap=30.0))
                continue
            for claim in claims:
                task = asyncio.create_task(self._run(claim), name=f"event-{claim.event.id}")
                self._in_flight[claim.event.id] = task
            if len(claims) == free:
                continue  # there may be more: claim again without waiting
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval_s)

    def _backoff(self, attempt: int, *, cap: float | None = None) -> float:
        cap = self._backoff_max_s if cap is None else cap
        delay: float = min(cap, self._backoff_base_s * 2.0 ** max(0, attempt - 1))
        # Jitter, so replicas do not retry in step (not a secret, any PRNG will do).
        return delay * (0.5 + random.random() / 2)  # noqa: S311

    # -- one event ----------------------------------------------------------------------

    async def _run(self, claim: ClaimedEvent) -> None:
        event = claim.event
        keeper = asyncio.create_task(self._keep_lease(event.id))
        work = asyncio.create_task(self._call(event))
        try:
            done, _ = await asyncio.wait({work, keeper}, return_when=asyncio.FIRST_COMPLETED)
            if work not in done:
                # The lease keeper ended first: the lease is lost, another replica may have the
                # event. Stop working on it rather than act twice.
                work.cancel()
                with contextlib.suppress(BaseException):
                    await work
                self._log.warning("lost the lease of event %s; abandoned it", event.id)
                return
            keeper.cancel()
            try:
                disposition = work.result()
            except Exception as exc:
                delay = self._backoff(claim.attempts)
                self._log.error(
                    "processing event %s failed (attempt %s): %r; retry in %.1fs",
                    event.id,
                    claim.attempts,
                    exc,
                    delay,
                    exc_info=exc,
                )
                disposition = Disposition.retry(delay, f"{type(exc).__name__}: {exc}")
            if not disposition.is_done:
                # However soon the pipeline asks to retry, repeated attempts back off: an
                # outage of hours must not turn every pending event into a 5-second loop.
                disposition = Disposition.retry(
                    max(disposition.retry_after_s or 0.0, self._backoff(claim.attempts)),
                    disposition.error,
                )
            await self._settle(event.id, disposition)
            self.processed += 1
        except asyncio.CancelledError:
            # stop() ran out of grace: hand the event back so another worker takes it now.
            work.cancel()
            keeper.cancel()
            await asyncio.gather(work, keeper, return_exceptions=True)
            await self._settle(event.id, Disposition.retry(0.0, "worker stopped"), attempts=1)
            raise
        finally:
            keeper.cancel()
            self._in_flight.pop(event.id, None)
            self._slot_free.set()
            self._wake.set()

    async def _call(self, event: AlertEvent) -> Disposition:
        return await self._process(event)

    async def _keep_lease(self, event_id: int) -> None:
        """Extend the lease every third of its length; return only when it is lost."""
        interval = max(0.05, self._lease_s / 3)
        failures = 0
        while True:
            await asyncio.sleep(interval)
            try:
                if not await self._store.extend_lease(event_id, self.owner, self._lease_s):
                    return
                failures = 0
            except StoreUnavailable as exc:
                # Keep working: the lease is still ours until it runs out; once it has, giving
                # up is the only safe thing (someone else may have reclaimed it).
                failures += 1
                self._log.warning("could not extend lease of event %s: %s", event_id, exc)
                if failures * interval >= self._lease_s:
                    return

    async def _settle(self, event_id: int, disposition: Disposition, attempts: int = 5) -> None:
        """Complete or release the claim; tolerate a short outage, else let the lease expire."""
        for attempt in range(1, attempts + 1):
            try:
                if disposition.is_done:
                    ok = await self._store.complete_event(event_id, self.owner)
                else:
                    ok = await self._store.release_event(
                        event_id,
                        self.owner,
                        disposition.retry_after_s or 0.0,
                        disposition.error,
                    )
                if not ok:
                    self._log.warning("event %s was no longer leased to us", event_id)
                return
            except StoreUnavailable as exc:
                if attempt == attempts:
                    self._log.warning(
                        "could not settle event %s (%s); its lease will expire", event_id, exc
                    )
                    return
                await asyncio.sleep(self._backoff(attempt, cap=5.0))

    # -- wake-ups -----------------------------------------------------------------------

    async def _listen_loop(self) -> None:
        """Hold a LISTEN connection; reconnect when it drops; wake the loop on every NOTIFY."""
        failures = 0
        while not self._stopping:
            conn: Any = None
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(self._listen_dsn, timeout=5.0)
                conn.add_termination_listener(_setter(lost))
                await conn.add_listener(EVENTS_CHANNEL, self._on_notify)
                self.listening.set()
                failures = 0
                self.wake()  # notifications sent while we were not listening are lost
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), min(15.0, self._poll_interval_s))
                    if not lost.is_set():
                        # A half-open TCP connection never reports termination: probe it.
                        await conn.execute("SELECT 1", timeout=5.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_unavailable(exc):
                    self._log.exception("listen connection failed")
                failures += 1
            finally:
                self.listening.clear()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 2.0)
            if not self._stopping:
                delay = self._backoff(failures, cap=10.0)
                self._log.info("listen connection lost; reconnecting in %.1fs", delay)
                await asyncio.sleep(delay)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, _payload: object) -> None:
        self._wake.set()

    async def _expire_loop(self) -> None:
        """Fail VERIFYING runs whose alert did not resolve in time (every replica may run it)."""
        while not self._stopping:
            try:
                expired = await self._store.expire_verifications()
                if expired:
                    self._log.info("verification expired for runs %s", ", ".join(expired))
            except StoreUnavailable as exc:
                self._log.warning("store unavailable while expiring verifications: %s", exc)
            except Exception:
                self._log.exception("expiring verifications failed")
            await asyncio.sleep(self._expire_interval_s)
