"""receiver.batching.Coalescer: calls that arrive while a batch is on its way go together in
the next one; each caller gets its own answer or its own error; nothing waits for a timer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from receiver.batching import Coalescer


class Server:
    """A ``send`` whose batches can be held on their way, recording what each carried."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.in_flight = 0
        self.most_in_flight = 0

    async def send(self, calls: list[int]) -> Sequence[int | BaseException]:
        self.batches.append(list(calls))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.gate.wait()
        finally:
            self.in_flight -= 1
        # A negative call fails on its own; the others are answered with their double.
        return [ValueError(f"bad {c}") if c < 0 else c * 2 for c in calls]


async def _until(condition: object) -> None:
    for _ in range(1000):
        if callable(condition) and condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def test_a_call_on_an_idle_coalescer_is_sent_at_once_alone() -> None:
    server = Server()
    coalescer: Coalescer[int, int] = Coalescer(server.send)
    assert await coalescer(1) == 2
    assert await coalescer(2) == 4
    assert server.batches == [[1], [2]]
    assert (coalescer.batches, coalescer.calls) == (2, 2)


async def test_calls_made_in_one_turn_share_a_batch() -> None:
    server = Server()
    coalescer: Coalescer[int, int] = Coalescer(server.send)
    assert await asyncio.gather(*(coalescer(n) for n in range(5))) == [0, 2, 4, 6, 8]
    assert server.batches == [[0, 1, 2, 3, 4]]


async def test_calls_arriving_while_a_batch_is_on_its_way_go_together_in_the_next() -> None:
    server = Server()
    coalescer: Coalescer[int, int] = Coalescer(server.send)
    server.gate.clear()
    first = asyncio.ensure_future(coalescer(1))
    await _until(lambda: server.batches == [[1]])
    later = [asyncio.ensure_future(coalescer(n)) for n in (2, 3, 4)]
    await asyncio.sleep(0.01)
    assert server.batches == [[1]]  # nothing else is sent while the first is on its way
    server.gate.set()
    assert await first == 2
    assert await asyncio.gather(*later) == [4, 6, 8]
    assert server.batches == [[1], [2, 3, 4]]


async def test_a_batch_takes_at_most_max_batch_calls() -> None:
    server = Server()
    coalescer: Coalescer[int, int] = Coalescer(server.send, max_batch=2)
    assert await asyncio.gather(*(coalescer(n) for n in range(5))) == [0, 2, 4, 6, 8]
    assert server.batches == [[0, 1], [2, 3], [4]]


async def test_max_in_flight_sends_the_next_batch_beside_the_one_on_its_way() -> None:
    server = Server()
    coalescer: Coalescer[int, int] = Coalescer(server.send, max_in_flight=2)
    server.gate.clear()
    first = asyncio.ensure_future(coalescer(1))
    await _until(lambda: server.in_flight == 1)
    second = asyncio.ensure_future(coalescer(2))
    await _until(lambda: server.in_flight == 2)
    third = asyncio.ensure_future(coalescer(3))
    await asyncio.sleep(0.01)
    assert server.batches == [[1], [2]]  # a third sender waits: two at most
    server.gate.set()
    assert [await first, await second, await third] == [2, 4, 6]
    assert server.most_in_flight == 2


async def test_a_call_that_fails_fails_alone() -> None:
    server = Server()
    coalescer: Coalescer[int, int] = Coalescer(server.send)
    results = await asyncio.gather(*(coalescer(n) for n in (1, -1, 3)), return_exceptions=True)
    assert results[0] == 2
    assert results[2] == 6
    assert isinstance(results[1], ValueError)
    assert str(results[1]) == "bad -1"
    assert server.batches == [[1, -1, 3]]


async def test_a_send_that_raises_fails_its_batch_and_the_next_batch_is_sent() -> None:
    calls: list[list[int]] = []

    async def send(batch: list[int]) -> Sequence[int | BaseException]:
        calls.append(batch)
        if len(calls) == 1:
            raise ConnectionError("lost")
        return batch

    coalescer: Coalescer[int, int] = Coalescer(send)
    results = await asyncio.gather(coalescer(1), coalescer(2), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert await coalescer(3) == 3
    assert calls == [[1, 2], [3]]


async def test_a_send_that_answers_the_wrong_number_of_calls_fails_them() -> None:
    async def send(batch: list[int]) -> Sequence[int | BaseException]:
        return batch[:-1]

    coalescer: Coalescer[int, int] = Coalescer(send)
    with pytest.raises(RuntimeError, match="2 calls were answered with 1"):
        await asyncio.gather(coalescer(1), coalescer(2))


async def test_a_caller_that_goes_away_does_not_take_the_batch_with_it() -> None:
    server = Server()
    coalescer: Coalescer[int, int] = Coalescer(server.send)
    server.gate.clear()
    leaving = asyncio.ensure_future(coalescer(1))
    staying = asyncio.ensure_future(coalescer(2))
    await _until(lambda: server.batches == [[1, 2]])
    leaving.cancel()
    server.gate.set()
    assert await staying == 4
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert (coalescer.batches, coalescer.calls) == (1, 2)


async def test_a_caller_that_goes_away_while_its_call_is_sent_leaves_once_it_is_answered() -> None:
    # A write's caller (GroupCommit) moves on when it has left: the worker releases its event,
    # and the event's next holder must find the write done or never to be done, not done
    # behind its back a moment later.
    server = Server()
    coalescer: Coalescer[int, int] = Coalescer(server.send, wait_when_sent=True)
    server.gate.clear()
    leaving = asyncio.ensure_future(coalescer(1))
    await _until(lambda: server.batches == [[1]])
    leaving.cancel()
    for _ in range(20):
        await asyncio.sleep(0)
    assert not leaving.done()
    server.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert (coalescer.batches, coalescer.calls) == (1, 1)
    # Queued, not sent yet: it leaves at once (and the call is never sent).
    server.gate.clear()
    first = asyncio.ensure_future(coalescer(2))
    await _until(lambda: server.batches[-1] == [2])
    queued = asyncio.ensure_future(coalescer(3))
    await asyncio.sleep(0)
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    server.gate.set()
    assert await first == 4
    assert server.batches == [[1], [2]]


async def test_stopping_the_sender_fails_what_it_holds_and_what_is_queued() -> None:
    server = Server()
    coalescer: Coalescer[int, int] = Coalescer(
        server.send, stopped=lambda: ConnectionAbortedError("stopping")
    )
    server.gate.clear()
    sent = asyncio.ensure_future(coalescer(1))
    await _until(lambda: server.batches == [[1]])
    queued = asyncio.ensure_future(coalescer(2))
    await asyncio.sleep(0)
    for task in asyncio.all_tasks():
        if task.get_coro().__qualname__.startswith("Coalescer._send_all"):  # type: ignore[union-attr]
            task.cancel()
    errors = []
    for waiting in (sent, queued):
        with pytest.raises(ConnectionAbortedError, match="stopping") as raised:
            await waiting
        errors.append(raised.value)
    assert errors[0] is not errors[1]  # each its own (see below)


async def test_a_call_whose_caller_left_before_it_was_sent_is_not_sent() -> None:
    # A caller that gave up while its call was queued (its own timeout, the worker stopping)
    # has moved on: an admission or a write made for it now would be made behind its back.
    server = Server()
    coalescer: Coalescer[int, int] = Coalescer(server.send)
    server.gate.clear()
    first = asyncio.ensure_future(coalescer(1))
    await _until(lambda: server.batches == [[1]])
    gone = asyncio.ensure_future(coalescer(2))
    staying = asyncio.ensure_future(coalescer(3))
    await asyncio.sleep(0)
    gone.cancel()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await coalescer(4)
    server.gate.set()
    assert [await first, await staying] == [2, 6]
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert server.batches == [[1], [3]]
    assert (coalescer.batches, coalescer.calls) == (2, 2)


async def test_each_caller_of_a_failed_batch_raises_an_exception_of_its_own() -> None:
    # One object raised in several tasks takes on, in each, what that task was handling
    # (__context__): the next caller's log would show another sender's error and data.
    async def send(batch: list[int]) -> Sequence[int | BaseException]:
        await asyncio.sleep(0)
        raise ConnectionError("lost")

    coalescer: Coalescer[int, int] = Coalescer(send)

    async def handling_its_own_error() -> BaseException:
        try:
            raise KeyError("the first sender's alert")
        except KeyError:
            try:
                await coalescer(1)
            except ConnectionError as exc:
                return exc
        raise AssertionError("not failed")

    async def plain() -> BaseException:
        try:
            await coalescer(2)
        except ConnectionError as exc:
            return exc
        raise AssertionError("not failed")

    first, second = await asyncio.gather(handling_its_own_error(), plain())
    assert first is not second
    assert str(first) == str(second) == "lost"
    assert isinstance(first.__context__, KeyError)
    assert second.__context__ is None


async def test_an_exception_answering_several_calls_reaches_each_as_its_own() -> None:
    shared = ValueError("the batch's")

    async def send(batch: list[int]) -> Sequence[int | BaseException]:
        return [shared for _ in batch]

    coalescer: Coalescer[int, int] = Coalescer(send)
    results = await asyncio.gather(*(coalescer(n) for n in range(3)), return_exceptions=True)
    assert all(isinstance(r, ValueError) and str(r) == "the batch's" for r in results)
    assert len({id(r) for r in results}) == 3


class _Halt(BaseException):
    """Like SystemExit: not an Exception."""


def test_a_send_ending_with_a_base_exception_passes_it_on_and_stops() -> None:
    ended: list[BaseException | None] = []

    async def send(batch: list[int]) -> Sequence[int | BaseException]:
        raise _Halt

    async def main() -> None:
        coalescer: Coalescer[int, int] = Coalescer(send)
        call = asyncio.ensure_future(coalescer(1))
        await asyncio.sleep(0)  # the call is queued and its sender created
        (sender,) = coalescer._senders
        with pytest.raises(_Halt):
            await call
        await asyncio.wait({sender})
        ended.append(sender.exception())

    asyncio.run(main())
    # The caller got it, and the sender ended with it rather than carrying on.
    assert len(ended) == 1
    assert isinstance(ended[0], _Halt)
