"""How long ``remediator serve`` may take to stop, at most: the bound of each part of the stop
(``StopBudget``), whose ``total_s`` a pod's termination grace must outlast (deploy/base's
``terminationGracePeriodSeconds``). Past that grace the kubelet kills the process: a step still
acting is cut off, recorded by the next worker as one that may have acted, and its run fails.

The stop, from SIGTERM (``receiver.service``):

1. At once: nothing more is claimed, no run admitted, no step begun (``Worker.stop_claiming``,
   ``Pipeline.wind_down``); the worker's LISTEN connection is closed and a claim waiting out
   its backoff after a failed claim ends.
2. Side by side (``stop_side_by_side``), each cut short at its bound whatever it waits on:
   - The worker processes (``worker.processes`` over 1: ``receiver.processes``), sent SIGTERM
     in step 1, each stopping its worker as below, then closing its stores and its event loop;
     one still running at the bound is killed.
   - HTTP: aiohttp stops listening and gives a request in progress ``HTTP_SHUTDOWN_S`` to
     finish, then cancels it and waits as long again; then intake's writes still in progress,
     each bounded by the intake timeout (``intake.timeout``).
   - The worker (``Worker.stop``): a claim in progress (``CLAIM_WAIT_S``, its cancellation
     included; the items it brings back are handed back at once, unworked, due now, their
     attempt not counted), the steps in progress ``worker.shutdown_grace``, then the work still
     running is cancelled and given as long again (at least ``RELEASE_WAIT_S``) to hand its
     claims back.
3. The rule reloads' audit rows, then ``service.stopped``: ``AUDIT_TIMEOUT_S`` each.
4. Closing the store's pool, Redis and the clients: ``CLOSE_TIMEOUT_S`` (``close_all``: the
   pool half of it, then it is terminated; whatever is left then goes with the process).
5. Closing the event loop once ``run_service`` returned (``runtime.run_bounded``): the tasks
   still running are cancelled and waited for, then the async generators, then the default
   executor's threads, ``LEFTOVERS_S`` each; what is left then goes with the process.

A claim the stop gave up on loses nothing: if the server made it, the items are this worker's
until their lease runs out, and the next worker (or the next start) takes them up.

The embedded servers' own stop (no database or Redis URL: not a deployment) comes after this
and is not counted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Collection
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from receiver.config import Settings
from receiver.intake import Intake
from receiver.store import Store

__all__ = [
    "AUDIT_TIMEOUT_S",
    "CLAIM_WAIT_S",
    "CLOSE_TIMEOUT_S",
    "HTTP_SHUTDOWN_S",
    "LEFTOVERS_S",
    "LOOPS_END_S",
    "RELEASE_WAIT_S",
    "StopBudget",
    "close_all",
    "end_within",
    "stop_budget",
    "stop_http",
    "stop_side_by_side",
    "within",
]

# How long a request in progress when the service stops gets to finish (seconds) before it is
# cancelled, and then again for its cancellation (aiohttp's ``shutdown_timeout`` serves both
# waits): aiohttp's own 60 s held every stop. A webhook answers within the intake timeout (5 s
# by default), the API within its store bound (5 s; the review pages 20 s, cut off at a stop);
# a client still sending its body is cut off, and Alertmanager sends the notification again.
HTTP_SHUTDOWN_S = 10.0
# Worker.stop's waits: for a claim in progress to come back (its rows are then handed back,
# never dropped), its cancellation included, and at least, for the work it cancels after the
# grace to hand its claims back.
CLAIM_WAIT_S = 5.0
RELEASE_WAIT_S = 5.0
# The last part of CLAIM_WAIT_S: how long the worker's loops get to end once cancelled. asyncpg
# waits for the server to acknowledge a cancelled statement before its connection is free;
# behind PgBouncer a server that went away never does (up to the command timeout, 30 s), so
# what has not ended then is left to the store's close, which terminates its connection.
LOOPS_END_S = 1.0
# How long stopping waits for each of its audit writes (the rule reloads' rows, then
# ``service.stopped``): a store that went away (behind PgBouncer a connection waits for a
# server that is not coming) must not hold the exit.
AUDIT_TIMEOUT_S = 5.0
# How long closing the store's pool, Redis and the action clients may take together: the pool
# half of it (then it is terminated), the others the rest.
CLOSE_TIMEOUT_S = 5.0
# How long each of the event loop's closing waits may take (step 5): for the tasks still
# running once run_service returned (cancelled; one that ignores its cancellation is left
# behind), for the async generators, for the default executor's threads. asyncio.Runner's
# close waits for each without a limit.
LEFTOVERS_S = 1.0
# The closing waits of step 5.
_LEFTOVER_WAITS = 3


@dataclass(frozen=True, slots=True)
class StopBudget:
    """The longest each part of serve's stop takes, in seconds (the module's steps 2 to 5)."""

    http_s: float
    worker_s: float
    audit_s: float
    close_s: float
    leftovers_s: float
    # The worker processes' own stops (``worker.processes`` over 1), side by side with step 2:
    # each stops its worker, closes its stores and its loop as serve does.
    processes_s: float = 0.0

    @property
    def total_s(self) -> float:
        """The longest the whole stop takes: HTTP, the worker and the worker processes stop
        side by side."""
        step_2 = max(self.http_s, self.worker_s, self.processes_s)
        return step_2 + self.audit_s + self.close_s + self.leftovers_s


def stop_budget(settings: Settings) -> StopBudget:
    """The bounds of serve's stop under ``settings`` (``worker.shutdown_grace`` and
    ``intake.timeout`` are the settings it depends on, and ``worker.processes``)."""
    grace_s = settings.worker_shutdown_grace_seconds
    worker_s = CLAIM_WAIT_S + grace_s + max(RELEASE_WAIT_S, grace_s)
    leftovers_s = _LEFTOVER_WAITS * LEFTOVERS_S
    return StopBudget(
        http_s=2 * HTTP_SHUTDOWN_S + settings.intake_timeout_seconds,
        worker_s=worker_s,
        audit_s=2 * AUDIT_TIMEOUT_S,
        close_s=CLOSE_TIMEOUT_S,
        leftovers_s=leftovers_s,
        processes_s=worker_s + CLOSE_TIMEOUT_S + leftovers_s
        if settings.worker_processes > 1
        else 0,
    )


class StoppingWorker(Protocol):
    """What the stop needs of ``receiver.worker.Worker`` (imported by it: no import back)."""

    async def stop(self, grace_s: float = ...) -> None: ...


class StoppingProcesses(Protocol):
    """What the stop needs of ``receiver.processes.WorkerProcesses``."""

    async def wait(self, timeout_s: float) -> None: ...


async def within(work: Awaitable[None], timeout_s: float, log: Any, what: str) -> None:
    """Await ``work`` for at most ``timeout_s`` seconds; past it, ``work`` is cancelled and the
    stop goes on at once, the log saying ``what`` was cut short. Not ``asyncio.wait_for``,
    which waits for the cancellation to be done: a cancelled asyncpg statement waits for the
    server to acknowledge it, which a server that went away never does. An error of ``work``
    within the bound is raised here."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.wait({task}, timeout=timeout_s)
    finally:
        if not task.done():
            await end_within({task}, 0.0)
    if task.done():
        task.result()
    else:
        log.warning("stopping: cut short", what=what, after_s=timeout_s)


async def end_within(tasks: Collection[asyncio.Future[Any]], timeout_s: float) -> bool:
    """Cancel ``tasks`` and wait at most ``timeout_s`` seconds for them to end; True when
    they all did. Those that did not are left behind, ending when what they wait on does
    (the store's close terminates a connection); their outcome is then nobody's to read, and
    is not reported as "never retrieved" either."""
    for task in tasks:
        task.cancel()
        task.add_done_callback(_outcome_dropped)
    if not tasks or timeout_s <= 0:
        return all(task.done() for task in tasks)
    _, left = await asyncio.wait(tasks, timeout=timeout_s)
    return not left


def _outcome_dropped(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


async def stop_http(runner: web.AppRunner, intake: Intake) -> None:
    """Take no more webhooks, let the requests in progress finish (or cut them off after
    ``HTTP_SHUTDOWN_S``), then intake's writes in progress: step 2's HTTP part."""
    await runner.cleanup()
    await intake.drain()


async def stop_side_by_side(
    runner: web.AppRunner,
    intake: Intake,
    worker: StoppingWorker,
    settings: Settings,
    log: Any,
    processes: StoppingProcesses | None = None,
) -> None:
    """Step 2: the HTTP server (``stop_http``), the worker (``Worker.stop`` with the
    ``worker.shutdown_grace`` of ``settings``) and the worker processes (already sent SIGTERM)
    stop side by side, each cut short at its bound (``stop_budget``) should it wait on
    something that does not end."""
    budget = stop_budget(settings)
    grace_s = settings.worker_shutdown_grace_seconds
    parts = [
        within(stop_http(runner, intake), budget.http_s, log, "stopping the HTTP server"),
        within(worker.stop(grace_s), budget.worker_s, log, "stopping the worker"),
    ]
    if processes is not None:
        # Killed at the bound by wait itself (a process is not a task to cancel).
        parts.append(processes.wait(budget.processes_s))
    await asyncio.gather(*parts)


async def close_all(store: Store, redis: Any, clients: Any, kube: Any | None, log: Any) -> None:
    """Close the store's pool, Redis (a ``RedisConnection``), the action clients and the
    Kubernetes ApiClient (None: there is none), in that order, in ``CLOSE_TIMEOUT_S``: step 4.
    The pool gets half of it, then is terminated (a connection still in use: a statement
    whose cancellation the server never acknowledged); the others the rest."""
    if not await store.close(timeout_s=CLOSE_TIMEOUT_S / 2):
        log.warning(
            "stopping: connections still in use were terminated", after_s=CLOSE_TIMEOUT_S / 2
        )
    await within(_close_clients(redis, clients, kube), CLOSE_TIMEOUT_S / 2, log, "closing clients")


async def _close_clients(redis: Any, clients: Any, kube: Any | None) -> None:
    await redis.close()
    await clients.close()
    if kube is not None:
        await kube.close()
