"""Express events go first (receiver/priority.py): while a hold stands, only the tasks that
work for it get past ``turn()``; the others go on when it is released or runs out."""

from __future__ import annotations

import asyncio

from receiver.priority import Priority


async def _blocked(task: asyncio.Task[None]) -> bool:
    """Whether ``task`` is still waiting after every ready callback has run once more."""
    for _ in range(3):
        await asyncio.sleep(0)
    return not task.done()


async def test_with_no_hold_a_turn_is_at_once() -> None:
    priority = Priority()
    assert not priority.holding
    await asyncio.wait_for(priority.turn(), 1)


async def test_a_hold_keeps_the_others_back_until_released() -> None:
    priority = Priority(hold_s=60)
    priority.hold("express")
    waiting = asyncio.create_task(priority.turn())
    assert await _blocked(waiting)
    priority.release("express")
    await asyncio.wait_for(waiting, 1)
    assert not priority.holding


async def test_the_task_working_for_the_hold_goes_on() -> None:
    priority = Priority(hold_s=60)
    priority.hold("express")
    passed: list[str] = []

    async def express() -> None:
        priority.first("express")
        # A task it starts works for the hold too (the worker runs an item's work in one).
        await asyncio.create_task(priority.turn())
        passed.append("express")

    async def storm() -> None:
        await priority.turn()
        passed.append("storm")

    first = asyncio.create_task(express())
    other = asyncio.create_task(storm())
    await asyncio.wait_for(first, 1)
    assert await _blocked(other)
    assert passed == ["express"]
    priority.release("express")
    await asyncio.wait_for(other, 1)
    assert passed == ["express", "storm"]


async def test_a_hold_runs_out_on_its_own() -> None:
    """An express event that waits for a slow action holds the storm back no longer than
    ``hold_s``."""
    priority = Priority(hold_s=0.05)
    loop = asyncio.get_running_loop()
    began = loop.time()
    priority.hold("express")
    await asyncio.wait_for(priority.turn(), 5)
    assert loop.time() - began >= 0.05
    assert not priority.holding


async def test_a_hold_tells_of_its_end_once_at_its_timer_or_released() -> None:
    priority = Priority(hold_s=0.05)
    ended: list[str] = []
    assert priority.hold("timed", ended=lambda: ended.append("timed"))
    assert not priority.hold("timed", ended=lambda: ended.append("again"))  # stands already
    assert priority.hold("released", ended=lambda: ended.append("released"))
    priority.release("released")
    assert ended == ["released"]
    priority.release("released")  # ended already: not told again
    await asyncio.wait_for(priority.turn(), 5)  # "timed" runs out at hold_s
    assert ended == ["released", "timed"]
    assert not priority.holding


async def test_every_hold_must_end_before_the_others_go_on() -> None:
    priority = Priority(hold_s=60)
    priority.hold("claim")
    priority.hold("event")
    priority.hold("event")  # held already: one hold
    waiting = asyncio.create_task(priority.turn())
    priority.release("claim")
    assert await _blocked(waiting)
    priority.release("event")
    await asyncio.wait_for(waiting, 1)


async def test_a_released_hold_forgets_its_tasks() -> None:
    """A task that worked for a hold that ended waits its turn like the others under a new
    one."""
    priority = Priority(hold_s=60)
    priority.hold("a")

    async def twice() -> None:
        priority.first("a")
        await priority.turn()
        await gate.wait()
        await priority.turn()

    gate = asyncio.Event()
    task = asyncio.create_task(twice())
    await asyncio.sleep(0)
    priority.release("a")
    priority.hold("b")
    gate.set()
    assert await _blocked(task)
    priority.release("b")
    await asyncio.wait_for(task, 1)


async def test_a_task_working_for_a_hold_passes_a_soft_hold_but_not_another_hard_one() -> None:
    priority = Priority(hold_s=60)
    priority.hold("intake", soft=True)
    passed: list[str] = []

    async def express() -> None:
        priority.first("express")  # its own hold has ended already
        await priority.turn()
        passed.append("through the soft hold")
        priority.hold("other express")
        await priority.turn()
        passed.append("through a hard one")

    async def storm() -> None:
        await priority.turn()
        passed.append("storm")

    worker = asyncio.create_task(express())
    other = asyncio.create_task(storm())
    assert await _blocked(worker)
    assert await _blocked(other)
    assert passed == ["through the soft hold"]
    priority.release("other express")
    assert await _blocked(other)  # the soft hold still stands for everyone else
    await asyncio.wait_for(worker, 1)
    priority.release("intake")
    await asyncio.wait_for(other, 1)
    assert passed == ["through the soft hold", "through a hard one", "storm"]


async def test_work_apart_from_a_flood_passes_a_soft_hold_only() -> None:
    priority = Priority(hold_s=60)
    priority.hold("intake", soft=True)

    async def apart() -> None:
        priority.apart()  # a job, or an alert name with nothing else in progress
        await priority.turn()

    await asyncio.wait_for(asyncio.create_task(apart()), 1)
    priority.hold("express")
    held = asyncio.create_task(apart())
    assert await _blocked(held)  # an express event's hold stops it as any other
    priority.release("express")
    await asyncio.wait_for(held, 1)
    storm = asyncio.create_task(priority.turn())
    assert await _blocked(storm)
    priority.release("intake")
    await asyncio.wait_for(storm, 1)
