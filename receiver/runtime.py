"""How the ``serve`` process runs Python: its event loop and its garbage collector.

Process-wide settings, applied by the ``serve`` command only (never by the library code that
tests import), so a test process keeps the interpreter's defaults.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

__all__ = [
    "GEN0_THRESHOLD",
    "event_loop_factory",
    "run_bounded",
    "signals_wait_for_threads",
    "tune_garbage_collector",
]

T = TypeVar("T")

# Allocations of container objects, net of deallocations, between collections of the youngest
# generation (CPython's default is 700). See tune_garbage_collector.
GEN0_THRESHOLD = 20_000


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed: the same asyncio API with less CPU per request, which is what
    bounds intake on a small machine. The standard loop otherwise."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def tune_garbage_collector(threshold0: int = GEN0_THRESHOLD) -> tuple[int, int, int]:
    """Collect the youngest generation every ``threshold0`` net allocations instead of every
    700; the older generations keep their thresholds. Returns the thresholds it replaced.

    Why: a webhook allocates a few hundred container objects (the parsed notification, its
    events, aiohttp's request and response), almost all freed by reference counting when the
    answer is sent. At 700 the cycle collector ran every two or three webhooks, each time
    walking objects that were about to be freed anyway: 10-19 % of the service's CPU per webhook
    on a 2-core machine (`make bench`, intake round, side by side). Cyclic garbage is still
    collected, in fewer and larger passes; at most ``threshold0`` young objects wait for one.
    """
    previous = gc.get_threshold()
    gc.set_threshold(threshold0, previous[1], previous[2])
    return previous


def run_bounded(
    main: Coroutine[Any, Any, T],
    *,
    leftovers_s: float,
    log: Any,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
    on_main_end: Callable[[], None] | None = None,
) -> T:
    """Run ``main`` to its end in a new event loop (``asyncio.Runner``: SIGINT cancels it and
    raises KeyboardInterrupt), then close the loop within about ``leftovers_s`` seconds per
    wait: the tasks still running are cancelled and waited for, then the async generators,
    then the default executor's threads (getaddrinfo, ``to_thread``). ``Runner.close`` waits
    for each without a limit, so one leftover task that ignores its cancellation (a statement
    whose cancellation a server that went away never acknowledges) held the exit past the
    pod's termination grace. What is still running at its bound is left behind, named in a
    warning on ``log`` (a structlog logger), and goes with the process. ``on_main_end`` is
    called first once ``main`` has ended, however it ended, before that clean-up (``serve``
    keeps ^C and SIGTERM from cutting it short). Returns what ``main`` returns; raises what it
    raises."""
    runner = asyncio.Runner(loop_factory=loop_factory)
    try:
        return runner.run(main)
    finally:
        if on_main_end is not None:
            on_main_end()
        loop = runner.get_loop()
        try:
            _end_leftovers(loop, leftovers_s, log)
            _bounded(loop, loop.shutdown_asyncgens(), leftovers_s, log, "async generators")
            _bounded(loop, loop.shutdown_default_executor(), leftovers_s, log, "executor threads")
        finally:
            # Not Runner.close: it would wait for the leftovers again, without a limit. As
            # it, the loop is unset where the runner set it (no factory given).
            if loop_factory is None:
                asyncio.set_event_loop(None)
            loop.close()


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def signals_wait_for_threads() -> Iterator[Callable[[], None]]:
    """Around ``run_bounded``: the callable it yields makes ^C and SIGTERM do nothing (pass it
    as ``on_main_end``), and on leaving, they do nothing until the threads started inside
    that still run have ended; then their handlers are what they were (a test runs ``serve``
    in its own process).

    Why: what is left once the service ended is bounded clean-up, and threads that stop the
    embedded PostgreSQL and Redis (a stop whose task was left behind, a start cancelled
    midway that stops what it started), which the interpreter waited for before exiting.
    One more ^C there (KeyboardInterrupt) or SIGTERM (its default action once the loop's
    handler was gone) ended the process before them, and the servers outlived it, holding
    their ports. A handler that does nothing, not SIG_IGN, which a server spawned meanwhile
    would inherit."""
    before = set(threading.enumerate())
    previous = {sig: signal.getsignal(sig) for sig in _SIGNALS}

    def ignore() -> None:
        for sig in _SIGNALS:
            signal.signal(sig, _ignored)

    try:
        yield ignore
    finally:
        ignore()  # again: closing the standard event loop restored the defaults
        try:
            for thread in threading.enumerate():
                if thread not in before and not thread.daemon:
                    thread.join()
        finally:
            for sig, handler in previous.items():
                if handler is not None:
                    signal.signal(sig, handler)


def _ignored(signum: int, frame: object) -> None:
    """^C or SIGTERM while the process ends (``signals_wait_for_threads``)."""


def _end_leftovers(loop: asyncio.AbstractEventLoop, timeout_s: float, log: Any) -> None:
    """Cancel the tasks of ``loop`` still running and wait at most ``timeout_s`` seconds for
    them; an error one of them ended with goes to the loop's exception handler, as
    ``Runner.close`` does."""
    tasks = asyncio.all_tasks(loop)
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    _, left = loop.run_until_complete(asyncio.wait(tasks, timeout=timeout_s))
    for task in tasks - left:
        if not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception in a task left when the service stopped",
                    "exception": task.exception(),
                    "task": task,
                }
            )
    if left:
        log.warning(
            "stopping: tasks still running were left behind",
            after_s=timeout_s,
            tasks=sorted(task.get_name() for task in left),
        )


def _bounded(
    loop: asyncio.AbstractEventLoop,
    work: Coroutine[Any, Any, None],
    timeout_s: float,
    log: Any,
    what: str,
) -> None:
    """Run ``work`` on ``loop`` for at most ``timeout_s`` seconds; past it, it is cancelled and
    left behind (not waited for: that wait is what is bounded), the log saying ``what``."""
    task = loop.create_task(work)
    loop.run_until_complete(asyncio.wait({task}, timeout=timeout_s))
    if task.done():
        if not task.cancelled() and (error := task.exception()) is not None:
            # The class only: an error's text may quote an address or a DSN.
            log.warning("stopping: closing failed", what=what, error=type(error).__name__)
        return
    task.cancel()
    log.warning("stopping: cut short", what=what, after_s=timeout_s)
