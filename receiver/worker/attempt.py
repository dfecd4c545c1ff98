"""One attempt at one claimed item: process it under its lease, then settle the claim.

The claim ends one of three ways (``Settlement``): ``complete`` (done), ``release`` (wait: the
pipeline asked to retry, or the store was out of reach; nothing failed) or ``fail`` (processing
raised); or it is ``settled`` already: the work's own last write completed the item
(``Disposition.settled``), and nothing is left to write; or, when the worker began stopping
before the work began (a claim on its way at SIGTERM), it is handed back unworked
(``hand_back``: due now, the claim's attempt taken back). Or it is not this worker's any more:
the lease keeper found the lease lost, or one of the work's fenced writes did (``LeaseLost``,
receiver.store.fence): the work stops and nothing is written for the item, not even its
settlement; its new owner has it. A release or a failure is due again
after an exponential backoff on the item's attempts, never sooner than the delay the pipeline
asked for (a guard's ``retry_at``, say). A failure is counted, and at ``max_attempts``
failures the store makes the item dead (``receiver.store.failures``). An item whose last holder
died with it (the claim counted that) is not handed to the pipeline again once the bound is
reached: it goes straight to dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from receiver.model import AlertEvent, Disposition
from receiver.store import (
    ClaimedJob,
    EventLease,
    LeaseLost,
    Store,
    StoreUnavailable,
    is_unavailable,
)

__all__ = [
    "Attempts",
    "Backoff",
    "Claim",
    "ClaimCall",
    "LeasedProcess",
    "Process",
    "ProcessJob",
    "QueueCalls",
    "Settlement",
    "bind_work",
    "event_calls",
    "job_calls",
]


class Process(Protocol):
    """What the worker does with a claimed alert event: ``await process(event)``."""

    def __call__(self, event: AlertEvent, /) -> Awaitable[Disposition]: ...


class LeasedProcess(Protocol):
    """A ``Process`` that may complete the event in its own last write (``Pipeline``): it is
    given the claim's lease, and says so with ``Disposition.settled``."""

    def __call__(
        self, event: AlertEvent, /, lease: EventLease | None = None
    ) -> Awaitable[Disposition]: ...


ProcessJob = Callable[[ClaimedJob], Awaitable[Disposition]]


@dataclass(frozen=True, slots=True)
class Claim:
    """One claimed item, whatever its kind: how far it got and how to process it."""

    kind: str
    id: int
    attempts: int  # this claim included
    failures: int  # before this claim (a lease that ran out is counted by the claim)
    last_error: str | None
    work: Callable[[], Coroutine[Any, Any, Disposition]]
    # An alert event's lease as the work was given it: once the work's own write that
    # completes the event is on its way, a lease no longer held is not a lost lease.
    lease: EventLease | None = None
    # An alert event's lane (md5 of its alert name; receiver.store.claims), '' for a job.
    lane: str = ""
    # A job's payload as claimed, for its failure to tell work merged in since (fail_job).
    seen: Mapping[str, Any] | None = None


# A queue's claim: (owner, limit, lease seconds) -> the items claimed, as Claims.
ClaimCall = Callable[[str, int, float], Awaitable[Sequence[Claim]]]


@dataclass(frozen=True, slots=True)
class QueueCalls:
    """The store calls of one kind of work; a settlement names its claim by id, owner, attempts."""

    kind: str
    claim: ClaimCall
    extend: Callable[[int, str, int, float], Awaitable[bool]]
    complete: Callable[[int, str, int], Awaitable[bool]]
    release: Callable[[int, str, int, float, str | None], Awaitable[bool]]
    fail: Callable[..., Awaitable[str | None]]  # Store.fail_event / fail_job
    hand_back: Callable[[int, str, int], Awaitable[bool]]  # Store.hand_back_event / _job


def event_calls(store: Store, claim: ClaimCall) -> QueueCalls:
    """The store's calls for alert events, claimed by ``claim``."""
    return QueueCalls(
        "event",
        claim,
        store.extend_lease,
        store.complete_event,
        store.release_event,
        store.fail_event,
        store.hand_back_event,
    )


def job_calls(store: Store, claim: ClaimCall) -> QueueCalls:
    """The store's calls for run jobs, claimed by ``claim``."""
    return QueueCalls(
        "job",
        claim,
        store.extend_job_lease,
        store.complete_job,
        store.release_job,
        store.fail_job,
        store.hand_back_job,
    )


@dataclass(frozen=True, slots=True)
class Settlement:
    """How a claim ends: ``complete``, ``release`` (wait, nothing failed) or ``fail``, or
    ``settled`` (the work completed it already: ``Disposition.settled``, nothing to write), or
    ``hand_back`` (the worker stopped before the work began: due now, no attempt counted);
    ``delay_s`` until it is due again, ``error`` kept as its last error."""

    action: str
    delay_s: float = 0.0
    error: str | None = None
    # fail only: False when the failure was counted already (a lease that ran out).
    count: bool = True


@dataclass(frozen=True, slots=True)
class Backoff:
    """Seconds to wait before attempt ``n + 1``: ``base_s`` doubling per attempt up to
    ``max_s`` (or ``cap``), times a jitter of 0.5 to 1 so replicas do not retry in step."""

    base_s: float = 1.0
    max_s: float = 300.0

    def __call__(self, attempt: int, *, cap: float | None = None) -> float:
        limit = self.max_s if cap is None else cap
        delay: float = min(limit, self.base_s * 2.0 ** max(0, attempt - 1))
        return delay * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not a secret


class Attempts:
    """Runs claimed items for one worker (``owner``): lease kept, outcome settled."""

    def __init__(
        self, *, owner: str, lease_s: float, max_attempts: int, backoff: Backoff, log: Any
    ) -> None:
        self._owner = owner
        self._lease_s = lease_s
        self.max_attempts = max(1, max_attempts)
        self._backoff = backoff
        self._log = log
        # Lease extensions given up on (``_keep_lease``), kept until they end.
        self._abandoned: set[asyncio.Future[bool]] = set()

    async def run(
        self,
        queue: QueueCalls,
        claim: Claim,
        *,
        leased_at: float | None = None,
        stopping: Callable[[], bool] = lambda: False,
    ) -> bool:
        """Process ``claim`` and settle it; True when the work ran to an answer. ``leased_at``:
        when the claim was sent (the event loop's clock; None: now), the store's count of its
        lease began no sooner. ``stopping``: whether the worker is stopping now. Stopping
        before the work began (the claim was on its way at SIGTERM), the item is handed back
        at once, unworked, its attempt not counted, for another replica to take now; once
        the work began, what the stopping service hands back at once is released due at once
        (``_settlement``)."""
        log = self._log.bind(**{f"{claim.kind}_id": claim.id})
        if claim.failures >= self.max_attempts:
            # Do not hand a worker, once more, the item that may have killed the last one.
            dead = Settlement("fail", 0.0, claim.last_error, count=False)
            await self._settle(queue, claim, dead, log)
            return False
        if stopping():
            # Worked on now, it would be handed back by its admission anyway (a stopping
            # service admits no run), after a read of its past and a plan, one attempt counted,
            # and due only after a backoff: another replica would wait for it.
            log.info("the worker is stopping; handed back unworked")
            await self._settle(queue, claim, Settlement("hand_back"), log, tries=1)
            return False
        if leased_at is None:
            leased_at = asyncio.get_running_loop().time()
        keeper = asyncio.create_task(self._keep_lease(queue, claim, leased_at, log))
        work = asyncio.create_task(claim.work())
        try:
            done, _ = await asyncio.wait({work, keeper}, return_when=asyncio.FIRST_COMPLETED)
            if work not in done and claim.lease is not None and claim.lease.finishing:
                # The work's last write, which completes the item, was sent: the keeper may
                # have found the lease gone because of it (an extension that waited on the
                # row and came back after that commit). Nothing follows that write: let the
                # work end, and settle by what it says.
                await asyncio.wait({work})
                done = {work}
            if work not in done:
                # The lease keeper ended first: the lease is lost, another replica may have the
                # item. Stop working on it rather than act twice.
                work.cancel()
                with contextlib.suppress(BaseException):
                    await work
                log.warning("lost the lease; abandoned the work")
                return False
            keeper.cancel()
            if not work.cancelled() and isinstance(work.exception(), LeaseLost):
                # A write of the work found the item claimed by another worker (a lease that
                # ran out while a statement was on its way): it wrote nothing, and neither
                # does anything here. No settlement (it is the new owner's), no retry, no
                # failure counted.
                log.warning("lost the lease; another worker has it", error=str(work.exception()))
                return False
            settlement = self._settlement(claim, work, log, stopping)
            await self._settle(queue, claim, settlement, log)
            return True
        except asyncio.CancelledError:
            # stop() ran out of grace: hand the item back so another worker takes it now.
            work.cancel()
            keeper.cancel()
            await asyncio.gather(work, keeper, return_exceptions=True)
            stopped = Settlement("release", 0.0, "worker stopped")
            await self._settle(queue, claim, stopped, log, tries=1)
            raise
        finally:
            keeper.cancel()

    def _settlement(
        self,
        claim: Claim,
        work: asyncio.Task[Disposition],
        log: Any,
        stopping: Callable[[], bool],
    ) -> Settlement:
        """What the finished ``work`` means for its claim; ``stopping`` says whether the
        worker is stopping now."""
        # However soon the pipeline asks to retry, repeated attempts back off: an outage of
        # hours must not turn every pending item into a 5-second loop.
        backoff = self._backoff(claim.attempts)
        try:
            disposition = work.result()
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, StoreUnavailable) or is_unavailable(exc):
                # An outage, not a fault of this item: it waits, like a deferral.
                log.warning("store unavailable while processing", error=error)
                return Settlement("release", backoff, error)
            log.error(
                "processing failed",
                attempt=claim.attempts,
                failures=claim.failures + 1,
                max_attempts=self.max_attempts,
                # As stored, not repr(): redis-py's repr of a server's reply is its class alone.
                error=error,
                retry_in_s=round(backoff, 1),
                exc_info=exc,
            )
            return Settlement("fail", backoff, error)
        if disposition.is_done:
            # Completed by the pipeline's own last write: nothing left to settle.
            return Settlement("settled" if disposition.settled else "complete")
        if disposition.retry_after_s == 0.0 and stopping():
            # Handed back by a stopping service, at once (``Deps.not_admitted_at_stop``, the
            # execute stage between two steps): nothing failed or waits, and a backoff on the
            # item's attempts would hold it from the next worker for nothing.
            return Settlement("release", 0.0, disposition.error)
        return Settlement("release", disposition.delay_s(backoff), disposition.error)

    async def _keep_lease(
        self, queue: QueueCalls, claim: Claim, leased_at: float, log: Any
    ) -> None:
        """Extend the lease every third of its length; return only when it is lost: the store
        said so, or it ran out before an extension was confirmed.

        The lease is counted from the send of the claim or of the last extension the store
        confirmed (the store's count began no sooner): once ``lease_s`` has passed since, it
        may belong to another worker, and the work must stop whatever the store is doing. An
        extension that waits on a store that does not answer (frozen, a partition: a call
        waits out the pool's command timeout) is given up at that moment, not after it."""
        loop = asyncio.get_running_loop()
        interval = max(0.05, self._lease_s / 3)
        held_until = leased_at + self._lease_s
        while True:
            await asyncio.sleep(max(0.0, min(interval, held_until - loop.time())))
            sent = loop.time()
            if sent >= held_until:
                log.warning("the lease ran out before the store confirmed an extension")
                return
            # A task of its own, left behind when the lease runs out first: a statement
            # cancelled on a connection that does not answer holds its caller until it does
            # (asyncpg's cleanup of the connection), which would hold the keeper with it.
            extend = queue.extend(claim.id, self._owner, claim.attempts, self._lease_s)
            call = asyncio.ensure_future(extend)
            await asyncio.wait({call}, timeout=held_until - sent)
            if not call.done():
                call.cancel()
                self._abandoned.add(call)
                call.add_done_callback(_forget(self._abandoned))
                log.warning("the lease ran out while the store did not answer its extension")
                return
            try:
                extended = call.result()
            except StoreUnavailable as exc:
                # Keep working: the lease is still ours until it runs out (the check above);
                # once it has, giving up is the only safe thing.
                log.warning("could not extend the lease", error=str(exc))
                continue
            if not extended:
                return
            held_until = sent + self._lease_s

    async def _settle(
        self, queue: QueueCalls, claim: Claim, settlement: Settlement, log: Any, tries: int = 5
    ) -> None:
        """Complete, release or fail the claim; tolerate a short outage, else let the lease
        expire (the claim that takes the item up again counts that as a failure). A job's
        failure says the payload it was claimed with (``Claim.seen``, ``Store.fail_job``)."""
        item_id, attempts, seen = claim.id, claim.attempts, claim.seen
        if settlement.action == "settled":
            return
        for attempt in range(1, tries + 1):
            try:
                ok: object
                if settlement.action == "complete":
                    ok = await queue.complete(item_id, self._owner, attempts)
                elif settlement.action == "hand_back":
                    ok = await queue.hand_back(item_id, self._owner, attempts)
                elif settlement.action == "release":
                    ok = await queue.release(
                        item_id, self._owner, attempts, settlement.delay_s, settlement.error
                    )
                else:
                    ok = await queue.fail(
                        item_id,
                        self._owner,
                        attempts,
                        settlement.error,
                        delay_s=settlement.delay_s,
                        max_failures=self.max_attempts,
                        count=settlement.count,
                        **({} if seen is None else {"seen": seen}),
                    )
                    if ok == "dead":
                        log.error(
                            "dead: no attempts left; retry or drop it",
                            max_attempts=self.max_attempts,
                            last_error=settlement.error,
                        )
                if not ok:
                    log.warning("no longer leased to us when settling")
                return
            except StoreUnavailable as exc:
                if attempt == tries:
                    log.warning("could not settle; its lease will expire", error=str(exc))
                    return
                await asyncio.sleep(self._backoff(attempt, cap=5.0))


def _forget(
    abandoned: set[asyncio.Future[bool]],
) -> Callable[[asyncio.Future[bool]], None]:
    """A done callback that drops the call from ``abandoned``, its outcome read (nobody else
    will read it, and asyncio would log an exception never retrieved)."""

    def done(call: asyncio.Future[bool]) -> None:
        abandoned.discard(call)
        if not call.cancelled():
            call.exception()

    return done


def bind_work(
    process: Callable[[Any], Awaitable[Disposition]], item: Any
) -> Callable[[], Coroutine[Any, Any, Disposition]]:
    """``process`` bound to ``item``: a ``Claim``'s ``work``, a new coroutine at each call."""

    async def work() -> Disposition:
        return await process(item)

    return work
