"""The worker loop of one replica: claim work, hand each item to the pipeline, settle the claim.

Work is two kinds of job with one set of mechanics: alert events (what intake stored) and run
jobs (take a parked run up again, end a verification). Both are leased rows claimed with
``FOR UPDATE SKIP LOCKED``; a LISTEN on the store's work channel wakes the loop at once, and a
poll every ``poll_interval_s`` covers a lost notification, a dropped listen connection and jobs
that become due later. While an item is processed its lease is extended; if this replica dies,
the lease runs out and another replica reclaims it (at-least-once).

What to do with an item is injected (``process``, ``process_job``); the worker only knows the
answer: done, or retry after a delay. An exception counts as a retry with exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog

from receiver.model import AlertEvent, Disposition
from receiver.store import WORK_CHANNEL, ClaimedJob, Store, StoreUnavailable, is_unavailable

__all__ = ["Process", "ProcessJob", "Worker", "default_owner"]

Process = Callable[[AlertEvent], Awaitable[Disposition]]
ProcessJob = Callable[[ClaimedJob], Awaitable[Disposition]]


def _setter(event: asyncio.Event) -> Callable[[object], None]:
    return lambda _conn: event.set()


def default_owner() -> str:
    """A lease owner id unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(32):08x}"


@dataclass(frozen=True, slots=True)
class _Claim:
    """One claimed item, whatever its kind: how to process it and how to settle it."""

    kind: str
    id: int
    attempts: int
    work: Callable[[], Coroutine[Any, Any, Disposition]]


@dataclass(frozen=True, slots=True)
class _Queue:
    """The store calls of one kind of work (their shapes are the same for both kinds)."""

    kind: str
    claim: Callable[[str, int, float], Awaitable[Sequence[_Claim]]]
    extend: Callable[[int, str, float], Awaitable[bool]]
    complete: Callable[[int, str], Awaitable[bool]]
    release: Callable[[int, str, float, str | None], Awaitable[bool]]


class Worker:
    """Claims and processes work until ``stop()``. Start with ``await worker.start()``.

    ``concurrency``, ``lease_s`` and ``poll_interval_s`` come from the settings (their one
    home is ``receiver.config.Settings``). ``process_job`` None: this worker takes no jobs.
    """

    def __init__(
        self,
        store: Store,
        process: Process,
        *,
        concurrency: int,
        lease_s: float,
        poll_interval_s: float,
        process_job: ProcessJob | None = None,
        owner: str | None = None,
        listen_dsn: str | None = None,
        log: Any | None = None,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 300.0,
    ) -> None:
        self._store = store
        self.owner = owner or default_owner()
        self._concurrency = max(1, concurrency)
        self._lease_s = lease_s
        self._poll_interval_s = poll_interval_s
        self._listen_dsn = listen_dsn if listen_dsn is not None else store.dsn
        self._log: Any = log or structlog.get_logger("remediator.worker")
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._queues = [self._event_queue(process)]
        if process_job is not None:
            self._queues.append(self._job_queue(process_job))

        self._wake = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._stopping = False
        self._in_flight: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._loops: list[asyncio.Task[None]] = []
        self.listening = asyncio.Event()  # set while the LISTEN connection is up (for tests)
        self.processed = 0

    def _event_queue(self, process: Process) -> _Queue:
        store = self._store

        async def claim(owner: str, limit: int, lease_s: float) -> list[_Claim]:
            claims = await store.claim_events(owner, limit, lease_s)
            return [
                _Claim("event", c.event.id, c.attempts, _bind(process, c.event)) for c in claims
            ]

        return _Queue("event", claim, store.extend_lease, store.complete_event, store.release_event)

    def _job_queue(self, process: ProcessJob) -> _Queue:
        store = self._store

        async def claim(owner: str, limit: int, lease_s: float) -> list[_Claim]:
            claims = await store.claim_jobs(owner, limit, lease_s)
            return [_Claim("job", c.id, c.attempts, _bind(process, c)) for c in claims]

        return _Queue("job", claim, store.extend_job_lease, store.complete_job, store.release_job)

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        if self._loops:
            return
        self._stopping = False
        self._loops = [
            asyncio.create_task(self._claim_loop(), name=f"worker-claim-{self.owner}"),
            asyncio.create_task(self._listen_loop(), name=f"worker-listen-{self.owner}"),
        ]

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop claiming; give in-flight work ``grace_s`` to finish, then release the rest."""
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
                task.cancel()  # the task releases its claim when cancelled
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
            claimed = 0
            try:
                # Alert events first: they are what Alertmanager is waiting on us to act upon.
                for queue in self._queues:
                    room = free - claimed
                    if room <= 0:
                        break
                    for claim in await queue.claim(self.owner, room, self._lease_s):
                        task = asyncio.create_task(
                            self._run(queue, claim), name=f"{claim.kind}-{claim.id}"
                        )
                        self._in_flight[(claim.kind, claim.id)] = task
                        claimed += 1
                failures = 0
            except StoreUnavailable as exc:
                failures += 1
                delay = self._backoff(failures, cap=min(30.0, self._poll_interval_s))
                self._log.warning(
                    "store unavailable while claiming", error=str(exc), retry_in_s=round(delay, 1)
                )
                await asyncio.sleep(delay)
                continue
            except Exception:
                failures += 1
                self._log.exception("claiming work failed")
                await asyncio.sleep(self._backoff(failures, cap=30.0))
                continue
            if claimed == free:
                continue  # there may be more: claim again without waiting
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval_s)

    def _backoff(self, attempt: int, *, cap: float | None = None) -> float:
        cap = self._backoff_max_s if cap is None else cap
        delay: float = min(cap, self._backoff_base_s * 2.0 ** max(0, attempt - 1))
        # Jitter, so replicas do not retry in step (not a secret, any PRNG will do).
        return delay * (0.5 + random.random() / 2)  # noqa: S311

    # -- one item -----------------------------------------------------------------------

    async def _run(self, queue: _Queue, claim: _Claim) -> None:
        log = self._log.bind(**{f"{claim.kind}_id": claim.id})
        keeper = asyncio.create_task(self._keep_lease(queue, claim.id, log))
        work = asyncio.create_task(claim.work())
        try:
            done, _ = await asyncio.wait({work, keeper}, return_when=asyncio.FIRST_COMPLETED)
            if work not in done:
                # The lease keeper ended first: the lease is lost, another replica may have the
                # item. Stop working on it rather than act twice.
                work.cancel()
                with contextlib.suppress(BaseException):
                    await work
                log.warning("lost the lease; abandoned the work")
                return
            keeper.cancel()
            try:
                disposition = work.result()
            except Exception as exc:
                delay = self._backoff(claim.attempts)
                log.error(
                    "processing failed",
                    attempt=claim.attempts,
                    error=repr(exc),
                    retry_in_s=round(delay, 1),
                    exc_info=exc,
                )
                disposition = Disposition.retry(delay, f"{type(exc).__name__}: {exc}")
            if not disposition.is_done:
                # However soon the pipeline asks to retry, repeated attempts back off: an
                # outage of hours must not turn every pending item into a 5-second loop.
                disposition = Disposition.retry(
                    max(disposition.retry_after_s or 0.0, self._backoff(claim.attempts)),
                    disposition.error,
                )
            await self._settle(queue, claim.id, disposition, log)
            self.processed += 1
        except asyncio.CancelledError:
            # stop() ran out of grace: hand the item back so another worker takes it now.
            work.cancel()
            keeper.cancel()
            await asyncio.gather(work, keeper, return_exceptions=True)
            await self._settle(
                queue, claim.id, Disposition.retry(0.0, "worker stopped"), log, attempts=1
            )
            raise
        finally:
            keeper.cancel()
            self._in_flight.pop((claim.kind, claim.id), None)
            self._slot_free.set()
            self._wake.set()

    async def _keep_lease(self, queue: _Queue, item_id: int, log: Any) -> None:
        """Extend the lease every third of its length; return only when it is lost."""
        interval = max(0.05, self._lease_s / 3)
        failures = 0
        while True:
            await asyncio.sleep(interval)
            try:
                if not await queue.extend(item_id, self.owner, self._lease_s):
                    return
                failures = 0
            except StoreUnavailable as exc:
                # Keep working: the lease is still ours until it runs out; once it has, giving
                # up is the only safe thing (someone else may have reclaimed it).
                failures += 1
                log.warning("could not extend the lease", error=str(exc))
                if failures * interval >= self._lease_s:
                    return

    async def _settle(
        self, queue: _Queue, item_id: int, disposition: Disposition, log: Any, attempts: int = 5
    ) -> None:
        """Complete or release the claim; tolerate a short outage, else let the lease expire."""
        for attempt in range(1, attempts + 1):
            try:
                if disposition.is_done:
                    ok = await queue.complete(item_id, self.owner)
                else:
                    ok = await queue.release(
                        item_id, self.owner, disposition.retry_after_s or 0.0, disposition.error
                    )
                if not ok:
                    log.warning("no longer leased to us when settling")
                return
            except StoreUnavailable as exc:
                if attempt == attempts:
                    log.warning("could not settle; its lease will expire", error=str(exc))
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
                await conn.add_listener(WORK_CHANNEL, self._on_notify)
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
                self._log.info("listen connection lost; reconnecting", retry_in_s=round(delay, 1))
                await asyncio.sleep(delay)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, _payload: object) -> None:
        self._wake.set()


def _bind(
    process: Callable[[Any], Awaitable[Disposition]], item: Any
) -> Callable[[], Coroutine[Any, Any, Disposition]]:
    async def work() -> Disposition:
        return await process(item)

    return work
