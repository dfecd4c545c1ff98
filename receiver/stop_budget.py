"""How long ``remediator serve`` may take to stop, at most: the bound of each part of the stop
(``StopBudget``), whose ``total_s`` a pod's termination grace must outlast (deploy/base's
``terminationGracePeriodSeconds``). Past that grace the kubelet kills the process: a step still
acting is cut off, recorded by the next worker as one that may have acted, and its run fails.

The stop, from SIGTERM (``receiver.service``):

1. At once: nothing more is claimed, no run admitted, no step begun (``Worker.stop_claiming``,
   ``Pipeline.wind_down``).
2. Side by side:
   - HTTP: aiohttp stops listening and gives a request in progress ``HTTP_SHUTDOWN_S`` to
     finish, then cancels it and waits as long again; then intake's writes still in progress,
     each bounded by the intake timeout (``intake.timeout``).
   - The worker (``Worker.stop``): a claim in progress (``CLAIM_WAIT_S``; the items it brings
     back are handed back at once, unworked, due now, their attempt not counted), the steps in
     progress ``worker.shutdown_grace``, then the work still running is cancelled and given as
     long again (at least ``RELEASE_WAIT_S``) to hand its claims back.
3. The rule reloads' audit rows, then ``service.stopped``: ``AUDIT_TIMEOUT_S`` each.
4. Closing the store's pool, Redis and the clients: ``CLOSE_TIMEOUT_S`` (whatever is left then
   goes with the process).

The embedded servers' own stop (no database or Redis URL: not a deployment) comes after this
and is not counted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from receiver.config import Settings
from receiver.intake import Intake
from receiver.store import Store

__all__ = [
    "AUDIT_TIMEOUT_S",
    "CLAIM_WAIT_S",
    "CLOSE_TIMEOUT_S",
    "HTTP_SHUTDOWN_S",
    "RELEASE_WAIT_S",
    "StopBudget",
    "close_all",
    "stop_budget",
    "stop_http",
    "within",
]

# How long a request in progress when the service stops gets to finish (seconds) before it is
# cancelled, and then again for its cancellation (aiohttp's ``shutdown_timeout`` serves both
# waits): aiohttp's own 60 s held every stop. A webhook answers within the intake timeout (5 s
# by default), the API within its store bound (5 s; the review pages 20 s, cut off at a stop);
# a client still sending its body is cut off, and Alertmanager sends the notification again.
HTTP_SHUTDOWN_S = 10.0
# Worker.stop's waits: for a claim in progress to come back (its rows are then worked on, never
# dropped), and at least, for the work it cancels after the grace to hand its claims back.
CLAIM_WAIT_S = 5.0
RELEASE_WAIT_S = 5.0
# How long stopping waits for each of its audit writes (the rule reloads' rows, then
# ``service.stopped``): a store that went away (behind PgBouncer a connection waits for a
# server that is not coming) must not hold the exit.
AUDIT_TIMEOUT_S = 5.0
# How long closing the store's pool, Redis and the action clients may take together.
CLOSE_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class StopBudget:
    """The longest each part of serve's stop takes, in seconds (the module's steps 2 to 4)."""

    http_s: float
    worker_s: float
    audit_s: float
    close_s: float

    @property
    def total_s(self) -> float:
        """The longest the whole stop takes: HTTP and the worker stop side by side."""
        return max(self.http_s, self.worker_s) + self.audit_s + self.close_s


def stop_budget(settings: Settings) -> StopBudget:
    """The bounds of serve's stop under ``settings`` (``worker.shutdown_grace`` and
    ``intake.timeout`` are the settings it depends on)."""
    grace_s = settings.worker_shutdown_grace_seconds
    return StopBudget(
        http_s=2 * HTTP_SHUTDOWN_S + settings.intake_timeout_seconds,
        worker_s=CLAIM_WAIT_S + grace_s + max(RELEASE_WAIT_S, grace_s),
        audit_s=2 * AUDIT_TIMEOUT_S,
        close_s=CLOSE_TIMEOUT_S,
    )


async def within(work: Awaitable[None], timeout_s: float, log: Any, what: str) -> None:
    """Await ``work`` for at most ``timeout_s`` seconds; past it, ``work`` is cancelled and the
    stop goes on, the log saying ``what`` was cut short."""
    try:
        await asyncio.wait_for(work, timeout_s)
    except TimeoutError:
        log.warning("stopping: cut short", what=what, after_s=timeout_s)


async def stop_http(runner: web.AppRunner, intake: Intake) -> None:
    """Take no more webhooks, let the requests in progress finish (or cut them off after
    ``HTTP_SHUTDOWN_S``), then intake's writes in progress: step 2's HTTP part."""
    await runner.cleanup()
    await intake.drain()


async def close_all(store: Store, redis: Any, clients: Any, kube: Any | None) -> None:
    """Close the store's pool, Redis (a ``RedisConnection``), the action clients and the
    Kubernetes ApiClient (None: there is none), in that order: step 4."""
    await store.close()
    await redis.close()
    await clients.close()
    if kube is not None:
        await kube.close()
