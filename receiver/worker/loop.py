"""The worker loop of one replica: claim work, hand each item to the pipeline, settle the claim.

Work is two kinds of job with one set of mechanics: alert events (what intake stored) and run
jobs (take a parked run up again, end a verification). Both are leased rows claimed with
``FOR UPDATE SKIP LOCKED``; a LISTEN on the store's work channel wakes the loop at once (a
store out of reach: claim_backoff.py), and a poll every ``poll_interval_s`` covers a lost
notification, a dropped listen connection and jobs that become due later. While an item is
processed its lease is extended; if this replica dies, it runs out and another replica
reclaims the item (at-least-once).

What to do with an item is injected (``process``, ``process_job``); the worker only knows the
answer: done (completed already, given the lease: ``lease_to_process``), or retry after a
delay. A retry backs off exponentially with the item's attempts, never sooner than the delay
the pipeline asked for (a guard's ``retry_at``, say). Waiting is not failing: only an exception
(other than the store being out of reach) or a worker that died holding the item counts as a
failed attempt, and after ``max_attempts`` of those the item is dead (``receiver.store.failures``):
out of the queue, with its last error, until an operator retries or drops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import socket
from typing import Any, cast

import structlog

from receiver.priority import Priority
from receiver.stop_budget import CLAIM_WAIT_S, LOOPS_END_S, RELEASE_WAIT_S, end_within
from receiver.store import (
    ClaimedEvent,
    EventLease,
    Store,
    StoreUnavailable,
    describe,
    next_lane,
)
from receiver.worker.attempt import (
    Attempts,
    Backoff,
    Claim,
    LeasedProcess,
    Process,
    ProcessJob,
    QueueCalls,
    bind_work,
    event_calls,
    job_calls,
)
from receiver.worker.claim_backoff import ClaimOutage, back_off
from receiver.worker.express import express_cursor, hinted_lanes
from receiver.worker.listen import LISTEN_WARNING_EVERY_S, Listener

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "JOBS_EVERY_S",
    "LISTEN_WARNING_EVERY_S",
    "MAX_CLAIM_BATCH",
    "LeasedProcess",
    "Process",
    "ProcessJob",
    "Worker",
    "default_owner",
]

# The most items one claim takes (a claim holds its rows locked until it commits).
MAX_CLAIM_BATCH = 32

# While alert events fill every claim (a storm), jobs are still looked for at least this often
# (seconds), and first: an approved run going on, a verification's deadline and a restore do not
# wait for the storm to drain. Looked for every time otherwise.
JOBS_EVERY_S = 1.0

# Failed attempts before an item is dead: with the default backoff (1 s doubling, jittered to
# 0.5..1x), 4 to 9 minutes of failing. Settings.worker_max_attempts has the same default (the config
# layer cannot import this one; a unit test keeps the two in step).
DEFAULT_MAX_ATTEMPTS = 10


def default_owner() -> str:
    """A lease owner id unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(32):08x}"


class Worker:
    """Claims and processes work until ``stop()``. Start with ``await worker.start()``.

    ``concurrency``, ``lease_s``, ``poll_interval_s`` and ``max_attempts`` (failed attempts
    before an item is dead) come from the settings (their one home is
    ``receiver.config.Settings``). ``process_job`` None: this worker takes no jobs.
    ``lease_to_process``: ``process`` is a ``LeasedProcess``, given each event's lease so its
    last write may complete the event (one transaction per refused event in a storm).
    ``priority``: ``Pipeline.priority``, for the express event to go first (receiver.priority).
    """

    def __init__(
        self,
        store: Store,
        process: Process | LeasedProcess,
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
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        lease_to_process: bool = False,
        priority: Priority | None = None,
    ) -> None:
        self._store = store
        self._priority = priority if priority is not None else Priority()
        self._lease_to_process = lease_to_process
        self.owner = owner or default_owner()
        self._concurrency = max(1, concurrency)
        self._lease_s = lease_s
        self._poll_interval_s = poll_interval_s
        self._log: Any = log or structlog.get_logger("remediator.worker")
        self._backoff = Backoff(backoff_base_s, backoff_max_s)
        self._outage = ClaimOutage(self._log)
        self._attempts = Attempts(
            owner=self.owner,
            lease_s=lease_s,
            max_attempts=max_attempts,
            backoff=self._backoff,
            log=self._log,
        )
        self._process = process
        self._queues = [self._event_queue(process)]
        if process_job is not None:
            self._queues.append(self._job_queue(process_job))
        self._listener = Listener(
            listen_dsn if listen_dsn is not None else store.dsn,
            self._on_notify,
            self.wake,
            poll_interval_s=poll_interval_s,
            backoff=self._backoff,
            log=self._log,
            send_check=store.notify,
        )
        self._wake = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._stopping = False
        self._stopped = asyncio.Event()  # set with _stopping: ends a backoff's wait at once
        self._in_flight: dict[tuple[str, int], asyncio.Task[None]] = {}
        # Lanes in progress; NOTIFYs' lanes since the last express claim; its items (express.py).
        self._lanes: dict[tuple[str, int], str] = {}
        self._hinted: set[str] = set()
        self._express: set[tuple[str, int]] = set()
        self._loops: list[asyncio.Task[None]] = []
        # For tests: set while LISTEN is up; set once it checked that it hears the store.
        self.listening, self.listen_checked = self._listener.listening, self._listener.checked
        self.processed = 0

    def _event_queue(self, process: Process | LeasedProcess) -> QueueCalls:
        store = self._store
        # Where this worker's last claim left the rotation through alert names (lanes).
        cursor = ""

        async def claim(owner: str, limit: int, lease_s: float) -> list[Claim]:
            nonlocal cursor
            claims = await store.claim_events(owner, limit, lease_s, after_lane=cursor)
            cursor = next_lane(claims, cursor)
            return [self._claimed(process, c) for c in claims]

        return event_calls(store, claim)

    def _claimed(self, process: Process | LeasedProcess, c: ClaimedEvent) -> Claim:
        event = c.event
        if not self._lease_to_process:
            work = bind_work(process, event)
            return Claim("event", event.id, c.attempts, c.failures, c.last_error, work, lane=c.lane)
        lease = EventLease(event.id, self.owner, c.attempts)
        leased = functools.partial(cast(LeasedProcess, process), lease=lease)
        work = bind_work(leased, event)
        return Claim("event", event.id, c.attempts, c.failures, c.last_error, work, lease, c.lane)

    def _job_queue(self, process: ProcessJob) -> QueueCalls:
        store = self._store

        async def claim(owner: str, limit: int, lease_s: float) -> list[Claim]:
            claims = await store.claim_jobs(owner, limit, lease_s)
            return [
                Claim("job", c.id, c.attempts, c.failures, c.last_error, work, seen=c.payload)
                for c, work in ((c, bind_work(process, c)) for c in claims)
            ]

        return job_calls(store, claim)

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        if self._loops:
            return
        self._stopping = False
        self._stopped.clear()
        listen = self._listener.run(lambda: self._stopping)
        self._loops = [
            asyncio.create_task(self._claim_loop(), name=f"worker-claim-{self.owner}"),
            asyncio.create_task(listen, name=f"worker-listen-{self.owner}"),
        ]

    def stop_claiming(self) -> None:
        """Claim nothing from now on (serve's SIGTERM handler); ``stop`` ends the rest. The
        LISTEN connection ends now (nothing is claimed on its wake-ups any more), reconnecting
        or not, and a claim loop waiting out its backoff after a failed claim."""
        self._stopping = True
        self._stopped.set()
        self._wake.set()
        self._slot_free.set()
        for task in self._loops[1:]:
            task.cancel()

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop claiming; give in-flight work ``grace_s`` to finish, then release the rest.

        A claim in progress gets ``CLAIM_WAIT_S`` in all, its cancellation included (asyncpg
        waits for the server to acknowledge it: a server gone from behind PgBouncer never
        does); one still running then is left to the store's close. What the server claimed
        for it stays this worker's until the lease runs out: then the next worker takes it."""
        self.stop_claiming()
        if self._loops:
            claim_loop = self._loops[0]
            # Let a claim in progress finish, so no claimed row is dropped on the floor.
            await asyncio.wait({claim_loop}, timeout=CLAIM_WAIT_S - LOOPS_END_S)
            if not await end_within(self._loops, LOOPS_END_S):
                self._log.warning(
                    "stopping: a claim did not end when cancelled; closing the store ends it"
                )
        self._loops = []
        pending = list(self._in_flight.values())
        if pending:
            _, still_running = await asyncio.wait(pending, timeout=grace_s)
            for task in still_running:
                task.cancel()  # the task releases its claim when cancelled
            if still_running:
                await asyncio.wait(still_running, timeout=max(RELEASE_WAIT_S, grace_s))

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
        # While the last claim found as much work as it had room for (a backlog), claim in
        # batches: wait until half the slots are free instead of claiming each one as it frees
        # up (one claim per event was a tenth of a storm's statements, and each its own commit),
        # and claim half the slots at most: the events in progress are then two cohorts, each
        # reaching the store and the guards together (their calls go as one, receiver.batching)
        # while the other computes, instead of one cohort that leaves the CPU idle while it
        # waits and the store idle while it computes. With no backlog a free slot is claimed at
        # once, so an idle worker answers at once. (Three cohorts of 8, at 24 in progress,
        # drained a storm a fifth sooner and kept the unrelated alert's p50 under 50 ms in
        # fewer runs: the README's storm round, stop 24.)
        backlog = False
        batch = max(1, min(MAX_CLAIM_BATCH, self._concurrency // 2))
        loop = asyncio.get_running_loop()
        jobs_asked = loop.time()
        while not self._stopping:
            free = self._concurrency - len(self._in_flight)
            if free <= 0 or (backlog and free < batch and self._in_flight):
                # Cleared first: a slot freed during the express claim still wakes the wait.
                self._slot_free.clear()
                if self._hinted and await self._claim_express():
                    continue
                await self._slot_free.wait()
                continue
            self._wake.clear()
            # This claim serves whatever is queued, hinted lanes included.
            self._hinted.clear()
            claimed = 0
            try:
                # Alert events first: they are what Alertmanager is waiting on us to act upon;
                # jobs first when events have taken every claim for JOBS_EVERY_S, with room for
                # half of this claim (so the storm keeps the other half).
                now = loop.time()
                jobs_first = now - jobs_asked >= JOBS_EVERY_S
                limit = min(free, MAX_CLAIM_BATCH, batch if backlog else free)
                for queue in reversed(self._queues) if jobs_first else self._queues:
                    room = limit - claimed
                    if room <= 0:
                        break
                    if queue.kind == "job":
                        jobs_asked = now
                        if jobs_first and len(self._queues) > 1:
                            room = max(1, room // 2)
                    for claim in await queue.claim(self.owner, room, self._lease_s):
                        self._start(queue, claim, now)
                        claimed += 1
                failures = 0
            except StoreUnavailable as exc:
                failures += 1
                delay = self._backoff(failures, cap=min(30.0, self._poll_interval_s))
                self._outage.failed(exc, delay)
                await back_off(delay, stopped=self._stopped, wake=self._wake)
                continue
            except Exception:
                failures += 1
                self._log.exception("claiming work failed")
                # No wake-up ends this one: a fault that is no outage lasts, and says so each time.
                await back_off(self._backoff(failures, cap=30.0), stopped=self._stopped)
                continue
            backlog = claimed == limit
            if backlog:
                continue  # there may be more: claim again without waiting
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval_s)
        self._log.info("stopped claiming", in_progress=len(self._in_flight))

    async def _claim_express(self) -> bool:
        """Claim one event beyond the concurrency for a lane intake named that has nothing in
        progress here, unless one such is in progress already (express.py); whether one was.
        A failed claim is the regular claim's to retry: it only costs the express."""
        if self._express or self._stopping:
            return False
        hinted, self._hinted = self._hinted, set()
        after = express_cursor(hinted, set(self._lanes.values()))
        if after is None:
            return False
        # The others hold back from the claim's round trip on (receiver.priority).
        self._priority.hold(hold := ("express", self.owner))
        claims: list[ClaimedEvent] = []
        sent = asyncio.get_running_loop().time()
        try:
            claims = await self._store.claim_events(self.owner, 1, self._lease_s, after_lane=after)
        except Exception as exc:
            self._log.warning("express claim failed", error=describe(exc))
        finally:
            if not claims:
                self._priority.release(hold)
        for c in claims:
            self._start(self._queues[0], self._claimed(self._process, c), sent, express=True)
        return bool(claims)

    # -- one item -----------------------------------------------------------------------

    def _start(
        self, queue: QueueCalls, claim: Claim, leased_at: float, *, express: bool = False
    ) -> None:
        """Work on ``claim``, whose claim was sent at ``leased_at`` (the loop's clock)."""
        key = (claim.kind, claim.id)
        self._in_flight[key] = asyncio.create_task(
            self._run(queue, claim, leased_at), name=f"{claim.kind}-{claim.id}"
        )
        if claim.lane:
            self._lanes[key] = claim.lane
        if express:
            self._express.add(key)

    async def _run(self, queue: QueueCalls, claim: Claim, leased_at: float) -> None:
        if (claim.kind, claim.id) in self._express:  # it and the task it works in go first
            self._priority.first(("express", self.owner))
        elif not claim.lane or list(self._lanes.values()).count(claim.lane) <= 1:
            # A job, or an alert name with nothing else in progress here: not the flood that
            # intake's hold keeps back (receiver.priority.IntakeFirst).
            self._priority.apart()
        try:
            # Once the stop began (the claim was on its way at SIGTERM): handed back unworked.
            if await self._attempts.run(
                queue, claim, leased_at=leased_at, stopping=lambda: self._stopping
            ):
                self.processed += 1
        finally:
            key = (claim.kind, claim.id)
            self._in_flight.pop(key, None)
            self._lanes.pop(key, None)
            if key in self._express:
                self._express.discard(key)
                self._priority.release(("express", self.owner))
            self._slot_free.set()
            self._wake.set()

    # -- wake-ups -----------------------------------------------------------------------

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        if lanes := hinted_lanes(payload):
            # Intake queued events of these alert names: one with nothing in progress here
            # may be claimed now, even with every slot taken (express.py).
            self._hinted |= lanes
            self._slot_free.set()
        self._wake.set()
