"""The retry loop every action family shares (remediations.retrying): transient failures are
tried again up to the policy's attempts, exhaustion is a TransientActionError naming the last
failure, and anything else surfaces on its first raise. Pure: a counting coroutine, no server."""

from __future__ import annotations

import pytest

from remediations.base import TransientActionError
from remediations.retrying import RetryPolicy, call_with_retries, describe_exception

NO_WAIT = RetryPolicy(attempts=3, initial_wait=0, max_wait=0, jitter=0)


class Flaky:
    """Raises ``errors`` in turn, then answers ``"ok"``; counts the calls."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def _is_connection_error(exc: BaseException) -> bool:
    return isinstance(exc, ConnectionError)


async def _run(fn: Flaky) -> str:
    return await call_with_retries(
        fn,
        what="Thing t/x",
        attempts=NO_WAIT.attempts,
        wait=NO_WAIT.backoff(),
        transient=_is_connection_error,
    )


async def test_transient_failures_are_tried_again_until_an_answer() -> None:
    fn = Flaky(ConnectionError("reset"), ConnectionError("reset"))
    assert await _run(fn) == "ok"
    assert fn.calls == 3


async def test_exhausted_attempts_name_what_and_the_last_failure() -> None:
    fn = Flaky(ConnectionError("one"), ConnectionError("two"), ConnectionError("three"))
    with pytest.raises(TransientActionError) as caught:
        await _run(fn)
    assert fn.calls == 3
    assert caught.value.message == "Thing t/x: gave up after 3 attempts: ConnectionError: three"
    assert isinstance(caught.value.__cause__, ConnectionError)


async def test_a_failure_that_is_not_transient_is_raised_at_once() -> None:
    fn = Flaky(PermissionError("denied"))
    with pytest.raises(PermissionError, match="denied"):
        await _run(fn)
    assert fn.calls == 1


def test_an_exception_without_text_is_named_by_its_type() -> None:
    assert describe_exception(TimeoutError()) == "TimeoutError"
    assert describe_exception(ValueError("bad")) == "ValueError: bad"


def test_the_backoff_doubles_from_the_initial_wait_up_to_the_cap() -> None:
    wait = RetryPolicy(initial_wait=0.5, max_wait=1.5, jitter=0).backoff()

    class State:  # the one attribute tenacity's exponential wait reads
        def __init__(self, attempt_number: int) -> None:
            self.attempt_number = attempt_number

    assert [wait(State(n)) for n in (1, 2, 3, 4)] == [0.5, 1.0, 1.5, 1.5]  # type: ignore[arg-type]
