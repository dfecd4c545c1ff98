"""Webhooks first (receiver/priority.py, ``IntakeFirst``): from ``busy_at`` notifications in
intake at once, the worker's events hold back at their next ``turn()``, for at most the hold's
``hold_s`` and not again within ``gap_s`` of its end; an express event still goes on."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.priority import IntakeFirst, Priority


class Clock:
    """Seconds, moved by the test."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def _blocked(task: asyncio.Task[None]) -> bool:
    """Whether ``task`` is still waiting after every ready callback has run once more."""
    for _ in range(3):
        await asyncio.sleep(0)
    return not task.done()


async def test_below_the_flood_mark_the_worker_is_not_held() -> None:
    priority = Priority(hold_s=60)
    first = IntakeFirst(priority, busy_at=3, clock=Clock())
    first.entered()
    first.entered()
    assert (first.in_progress, first.holds, priority.holding) == (2, 0, False)
    await asyncio.wait_for(priority.turn(), 1)


async def test_at_the_flood_mark_the_worker_waits_until_the_hold_ends() -> None:
    priority = Priority(hold_s=60)
    first = IntakeFirst(priority, busy_at=2, clock=Clock())
    first.entered()
    first.entered()
    assert (first.holds, priority.holding) == (1, True)
    waiting = asyncio.create_task(priority.turn())
    assert await _blocked(waiting)
    # Intake going quiet does not end the hold early: it ends at hold_s (a flood's answers
    # come in bursts, and ending at each would hand the loop back between two of them).
    first.left()
    first.left()
    assert first.in_progress == 0
    assert await _blocked(waiting)
    priority.release(IntakeFirst.KEY)
    await asyncio.wait_for(waiting, 1)


async def test_the_hold_runs_out_on_its_own() -> None:
    priority = Priority(hold_s=0.05)
    lasted: list[float] = []
    first = IntakeFirst(priority, busy_at=1, on_hold_ended=lasted.append)
    loop = asyncio.get_running_loop()
    began = loop.time()
    first.entered()
    await asyncio.wait_for(priority.turn(), 5)
    assert loop.time() - began >= 0.05
    assert not priority.holding
    # Told at its timer, with the seconds it lasted by the loop's clock (which runs a timer up
    # to its resolution early).
    assert len(lasted) == 1
    assert 0.05 - 1e-6 <= lasted[0] <= loop.time() - began


async def test_each_hold_is_told_once_as_taken_and_as_ended_and_no_declined_one() -> None:
    clock = Clock()
    priority = Priority(hold_s=0.2)
    taken: list[float] = []  # the clock at each hold taken
    lasted: list[float] = []
    first = IntakeFirst(
        priority,
        busy_at=2,
        gap_s=0.02,
        clock=clock,
        on_hold=lambda: taken.append(clock.now),
        on_hold_ended=lasted.append,
    )
    first.entered()  # one in progress: below the flood mark
    assert (taken, lasted) == ([], [])
    first.entered()  # two: a flood, a hold
    assert (taken, lasted) == ([100.0], [])
    first.entered()  # the hold stands
    assert (first.holds, taken, lasted) == (1, [100.0], [])
    clock.now += 0.2
    priority.release(IntakeFirst.KEY)  # as its timer does at hold_s
    assert lasted == [pytest.approx(0.2)]
    priority.release(IntakeFirst.KEY)  # ended already
    assert len(lasted) == 1
    clock.now += 0.01
    first.left()
    first.left()
    first.entered()  # a flood again, within the gap: declined
    assert (first.holds, len(taken)) == (1, 1)
    clock.now += 0.02
    first.left()
    first.left()
    first.entered()  # the gap passed, one in progress: declined
    assert (first.holds, len(taken), priority.holding) == (1, 1, False)
    first.entered()  # two: a hold
    assert (first.holds, taken) == (2, [100.0, pytest.approx(100.23)])
    clock.now += 0.05
    priority.release(IntakeFirst.KEY)  # released before its time: the seconds it lasted
    assert lasted == [pytest.approx(0.2), pytest.approx(0.05)]


async def test_after_a_hold_the_worker_has_the_gap_before_the_next() -> None:
    clock = Clock()
    priority = Priority(hold_s=0.2)
    first = IntakeFirst(priority, busy_at=1, gap_s=0.02, clock=clock)
    first.entered()
    priority.release(IntakeFirst.KEY)  # as its timer does at hold_s
    clock.now += 0.2 + 0.019
    first.left()
    first.entered()  # still a flood, but within the gap: the worker goes on
    assert (first.holds, priority.holding) == (1, False)
    clock.now += 0.001
    first.left()
    first.entered()
    assert (first.holds, priority.holding) == (2, True)
    priority.release(IntakeFirst.KEY)


async def test_a_late_timer_does_not_eat_the_workers_gap() -> None:
    # The gap counts from the hold's end, not from hold_s after its start: in a flood the
    # loop is busy and runs the hold's timer late (by 26 ms in a 3,000-webhook flood, found
    # by stop 45's whbreak45), and the next hold was then taken 0 ms after the end.
    clock = Clock()
    priority = Priority(hold_s=0.2)
    first = IntakeFirst(priority, busy_at=1, gap_s=0.02, clock=clock)
    first.entered()
    clock.now += 0.25  # the timer, 50 ms late
    priority.release(IntakeFirst.KEY)
    first.left()
    first.entered()  # the flood's next webhook, at once
    assert (first.holds, priority.holding) == (1, False)
    clock.now += 0.02
    first.left()
    first.entered()
    assert (first.holds, priority.holding) == (2, True)
    priority.release(IntakeFirst.KEY)


async def test_an_express_event_goes_on_through_an_intake_hold() -> None:
    priority = Priority(hold_s=60)
    first = IntakeFirst(priority, busy_at=1, clock=Clock())
    priority.hold("express")
    first.entered()

    async def express() -> None:
        priority.first("express")
        await priority.turn()
        # Its own hold ran out (hold_s) before it was done: the flood still lets it by.
        priority.release("express")
        await priority.turn()

    await asyncio.wait_for(asyncio.create_task(express()), 1)
    storm = asyncio.create_task(priority.turn())
    assert await _blocked(storm)  # the intake hold still stands
    priority.release(IntakeFirst.KEY)
    await asyncio.wait_for(storm, 1)


# A notification in (True) or answered (False), each after the clock moved by a step (ms).
_MOVES = st.lists(st.tuples(st.booleans(), st.integers(0, 300)), max_size=60)


@given(moves=_MOVES, busy_at=st.integers(1, 5), gap_ms=st.integers(0, 50))
def test_a_hold_comes_exactly_in_a_flood_and_never_within_hold_and_gap(
    moves: list[tuple[bool, int]], busy_at: int, gap_ms: int
) -> None:
    hold_s, gap_s = 0.2, gap_ms / 1000

    async def run() -> None:
        clock = Clock()
        # Its timer would end a hold at hold_s of the loop's time: ended here at hold_s of the
        # test's clock instead (the examples take less than hold_s to run).
        priority = Priority(hold_s=hold_s)
        told: list[float] = []  # the clock at each on_hold
        lasted: list[float] = []
        first = IntakeFirst(
            priority,
            busy_at=busy_at,
            gap_s=gap_s,
            clock=clock,
            on_hold=lambda: told.append(clock.now),
            on_hold_ended=lasted.append,
        )
        taken: list[float] = []
        ended = float("-inf")  # the clock when the last hold ended (its timer, maybe late)
        for comes, step_ms in moves:
            clock.now += step_ms / 1000
            if taken and clock.now >= taken[-1] + hold_s and priority.holding:
                priority.release(IntakeFirst.KEY)
                ended = clock.now
            if comes:
                before = first.holds
                first.entered()
                # The gap counts from the hold's end, however late its timer ran.
                due = not taken or clock.now >= max(taken[-1] + hold_s, ended) + gap_s
                flood = first.in_progress >= busy_at
                # A hold exactly when intake is at the flood mark and the gap has passed.
                assert (first.holds > before) == (flood and due)
                if first.holds > before:
                    taken.append(clock.now)
            elif first.in_progress:
                first.left()
        assert first.holds == len(taken)
        for earlier, later in itertools.pairwise(taken):
            assert later - earlier >= hold_s + gap_s - 1e-9
        priority.release(IntakeFirst.KEY)
        # Each hold told once as taken, and once as ended: those that ran out after hold_s
        # or more, the last (released here) after what the clock moved since.
        assert told == taken
        assert len(lasted) == len(taken)
        assert all(s >= hold_s - 1e-9 for s in lasted[:-1])

    asyncio.run(run())
