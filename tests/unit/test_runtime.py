"""The serve process's interpreter settings (receiver.runtime)."""

from __future__ import annotations

import asyncio
import gc
import signal
import threading

from receiver.runtime import (
    GEN0_THRESHOLD,
    run_bounded,
    signals_wait_for_threads,
    tune_garbage_collector,
)
from tests.support.said import Said


def test_the_youngest_generation_is_collected_less_often_and_the_others_keep_theirs() -> None:
    before = gc.get_threshold()
    try:
        replaced = tune_garbage_collector(12_345)
        assert replaced == before
        assert gc.get_threshold() == (12_345, before[1], before[2])
        assert tune_garbage_collector() == (12_345, before[1], before[2])
        assert gc.get_threshold()[0] == GEN0_THRESHOLD
    finally:
        gc.set_threshold(*before)


def test_cyclic_garbage_is_still_collected_under_the_raised_threshold() -> None:
    before = gc.get_threshold()
    try:
        tune_garbage_collector(50)
        gc.collect()

        class Node:
            def __init__(self) -> None:
                self.me = self

        collected_before = sum(s["collected"] for s in gc.get_stats())
        for _ in range(500):
            Node()  # a reference cycle: only the collector frees it
        assert sum(s["collected"] for s in gc.get_stats()) > collected_before
    finally:
        gc.set_threshold(*before)


def test_a_leftover_task_that_ignores_its_cancellation_does_not_hold_the_exit() -> None:
    # serve ran its loop in `with asyncio.Runner()`, whose close waits for every task still
    # running without a limit: one that swallows its cancellation (a statement whose cancel
    # a server that went away never acknowledges) held the process past the pod's grace.
    said = Said()
    cancelled = threading.Event()
    kept: list[asyncio.Task[None]] = []

    async def stubborn(started: asyncio.Event) -> None:
        started.set()
        while True:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()

    async def main() -> int:
        started = asyncio.Event()
        kept.append(asyncio.create_task(stubborn(started), name="stubborn"))
        await started.wait()
        return 42

    returned: list[int] = []
    # In a thread of its own: on a close without a limit the thread never ends, and the test
    # says so instead of hanging (daemon: the process still exits).
    thread = threading.Thread(
        target=lambda: returned.append(run_bounded(main(), leftovers_s=0.2, log=said)),
        daemon=True,
    )
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "the event loop's close waited for the leftover task"
    assert returned == [42]
    assert cancelled.is_set()
    (left,) = said.events("stopping: tasks still running were left behind")
    assert left["tasks"] == ["stubborn"]
    assert kept[0].get_loop().is_closed()


def test_leftover_tasks_that_end_when_cancelled_are_waited_for() -> None:
    said = Said()
    ended = threading.Event()

    async def polite(started: asyncio.Event) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            ended.set()

    async def main() -> None:
        started = asyncio.Event()
        asyncio.get_running_loop().create_task(polite(started), name="polite")
        await started.wait()

    run_bounded(main(), leftovers_s=5.0, log=said)
    assert ended.is_set()
    assert said.lines == []


def test_signals_wait_for_the_threads_started_inside_then_are_as_they_were() -> None:
    """^C while the threads stopping the embedded servers run does nothing; once they ended,
    the handlers are the caller's again (a test running ``serve`` in its own process)."""
    before = signal.getsignal(signal.SIGINT)
    ended = threading.Event()
    go = threading.Event()

    def stopping() -> None:
        go.wait()
        ended.set()

    with signals_wait_for_threads() as quiet:
        threading.Thread(target=stopping).start()
        quiet()
        signal.raise_signal(signal.SIGINT)  # no KeyboardInterrupt
        go.set()
    assert ended.is_set()
    assert signal.getsignal(signal.SIGINT) is before
