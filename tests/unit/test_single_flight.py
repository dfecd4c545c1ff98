"""SingleFlight: one call on its way at a time, its outcome shared by whoever asked meanwhile;
a caller that gives up does not stop it for the others; the next call after it is a new one."""

from __future__ import annotations

import asyncio

import pytest

from receiver.single_flight import SingleFlight


class _Gated:
    """A call that waits for ``gate`` and counts how often it was made."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.made = 0
        self.fail: Exception | None = None

    async def __call__(self) -> int:
        self.made += 1
        made = self.made
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return made


async def test_callers_meanwhile_share_one_call_and_its_result() -> None:
    call = _Gated()
    shared = SingleFlight(call)
    waiting = [asyncio.ensure_future(shared()) for _ in range(50)]
    await asyncio.sleep(0)
    call.gate.set()
    assert await asyncio.gather(*waiting) == [1] * 50
    assert call.made == 1 == shared.calls
    # Asked after it ended: a new call, not the old answer.
    assert await shared() == 2


async def test_callers_meanwhile_share_its_exception() -> None:
    call = _Gated()
    call.fail = ConnectionError("NOREPLICAS")
    shared = SingleFlight(call)
    waiting = [asyncio.ensure_future(shared()) for _ in range(5)]
    await asyncio.sleep(0)
    call.gate.set()
    outcomes = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(o, ConnectionError) and str(o) == "NOREPLICAS" for o in outcomes)
    assert call.made == 1


async def test_a_caller_that_gives_up_leaves_the_call_to_the_others() -> None:
    call = _Gated()
    shared = SingleFlight(call)
    quitter = asyncio.ensure_future(shared())
    stayer = asyncio.ensure_future(shared())
    await asyncio.sleep(0)
    quitter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await quitter
    call.gate.set()
    assert await stayer == 1
    assert call.made == 1


async def test_a_call_everyone_gave_up_on_still_ends_and_the_next_is_fresh() -> None:
    call = _Gated()
    shared = SingleFlight(call)
    quitter = asyncio.ensure_future(shared())
    await asyncio.sleep(0)
    quitter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await quitter
    call.gate.set()  # nobody waits for it now, and it goes on
    assert await shared() == 1  # asked before it ended: its answer
    assert await shared() == 2  # asked after: a call of its own
    assert call.made == 2


async def test_a_shared_call_that_never_ends_is_cut_at_its_bound_and_the_next_is_fresh() -> None:
    # Before the bound, a call that hung (a silent connection, a client without a timeout of
    # its own) was joined by every later caller for good.
    call = _Gated()
    shared = SingleFlight(call, timeout_s=0.05)
    with pytest.raises(TimeoutError):
        await shared()
    with pytest.raises(TimeoutError):
        await shared()
    assert call.made == 2  # each a call of its own, not the first one joined again
    call.gate.set()
    assert await shared() == 3
