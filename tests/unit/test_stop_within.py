"""Each part of serve's stop is cut short at its bound, whatever it waits on
(receiver/stop_budget.py: ``within``, ``end_within``).

Before, ``within`` was ``asyncio.wait_for``, which, at the bound, cancels the work and then waits
for the cancellation to be done: a cancelled asyncpg statement waits for the server to
acknowledge the cancellation before its connection is free, which behind PgBouncer a server
that went away never does (up to the command timeout). Here the work is one that does not end
when cancelled, as such a statement: it ends only when the test lets it, at the end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest

from receiver.stop_budget import end_within, within
from tests.support.said import Said

BOUND_S = 0.2
# How long a cut short part may take on a busy machine: far under the work's own end, never.
ENOUGH_S = 5.0


async def _deaf_to_cancellation(released: asyncio.Event) -> None:
    """Waits for ``released``, cancelled or not (asyncpg waiting for an acknowledgement)."""
    while True:
        try:
            await released.wait()
            return
        except asyncio.CancelledError:
            continue


async def _ends_within(work: Awaitable[object], what: str) -> object:
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=ENOUGH_S)
    if not done:
        task.cancel()
        pytest.fail(f"{what} still waiting {ENOUGH_S}s on work that does not end when cancelled")
    return task.result()


async def test_a_part_that_does_not_end_when_cancelled_is_cut_short_at_its_bound() -> None:
    released = asyncio.Event()
    said = Said()
    deaf = asyncio.ensure_future(_deaf_to_cancellation(released))
    try:
        await _ends_within(within(deaf, BOUND_S, said, "the part"), "within")
        assert said.events("stopping: cut short") == [{"what": "the part", "after_s": BOUND_S}]
        assert not deaf.done()  # left behind, cancelled
    finally:
        released.set()
        await asyncio.wait({deaf}, timeout=ENOUGH_S)
    assert deaf.done()


async def test_a_part_that_ends_in_time_is_awaited_and_its_error_raised() -> None:
    said = Said()

    async def fails() -> None:
        raise RuntimeError("closing failed")

    await within(asyncio.sleep(0), BOUND_S, said, "nothing")
    with pytest.raises(RuntimeError, match="closing failed"):
        await within(fails(), BOUND_S, said, "the part")
    assert said.lines == []


async def test_tasks_that_do_not_end_when_cancelled_are_left_behind_after_the_bound() -> None:
    released = asyncio.Event()
    deaf = asyncio.ensure_future(_deaf_to_cancellation(released))
    prompt = asyncio.ensure_future(asyncio.sleep(3600))
    try:
        assert await _ends_within(end_within([deaf, prompt], BOUND_S), "end_within") is False
        assert prompt.cancelled()
        assert not deaf.done()
    finally:
        released.set()
        await asyncio.wait({deaf}, timeout=ENOUGH_S)
    again = asyncio.ensure_future(asyncio.sleep(3600))
    assert await end_within([again], BOUND_S) is True
