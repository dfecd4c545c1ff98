"""How hard one call to a remote system is tried: the policy and the loop every action family
shares. Pure.

Each family decides what is transient (a broken connection, 429, 5xx, a PostgreSQL that is
starting up) and maps what is left to the action errors; the policy only says how many tries,
how long to wait between them, and how long one try may take. ``call_with_retries`` runs the
tries (tenacity) and turns exhausted retries into a TransientActionError naming the last failure.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)
from tenacity.wait import WaitBaseT

from remediations.base import TransientActionError

__all__ = ["DEFAULT_RETRY", "RetryPolicy", "call_with_retries", "describe_exception"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard one call is tried. Passed to each action's constructor; never global."""

    attempts: int = 4  # total tries, the first included
    initial_wait: float = 0.2  # seconds before the second try; doubles each time
    max_wait: float = 2.0  # ceiling of a single wait
    jitter: float = 0.1  # random seconds added to each wait, so replicas do not retry in step
    request_timeout: float = 10.0  # seconds for one request, connect to last byte

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if min(self.initial_wait, self.max_wait, self.jitter, self.request_timeout) < 0:
            raise ValueError("waits and timeouts must not be negative")

    def backoff(self) -> wait_exponential_jitter:
        """The wait between tries: ``initial_wait`` doubling up to ``max_wait``, plus jitter."""
        return wait_exponential_jitter(
            multiplier=self.initial_wait, max=self.max_wait, jitter=self.jitter
        )


DEFAULT_RETRY = RetryPolicy()


def describe_exception(exc: BaseException) -> str:
    """One line naming a failure: ``"<Type>: <text>"``, the type alone when the text is empty."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def call_with_retries(
    fn: Callable[[], Awaitable[T]],
    *,
    what: str,
    attempts: int,
    wait: WaitBaseT,
    transient: Callable[[BaseException], bool],
    describe: Callable[[BaseException], str] = describe_exception,
    may_have_acted: bool = True,
    acted: Callable[[BaseException], bool] | None = None,
) -> T:
    """Await ``fn()`` up to ``attempts`` times while it raises what ``transient`` accepts.

    Between tries ``wait`` (e.g. ``RetryPolicy.backoff()``). Retries exhausted raise
    TransientActionError ``"<what>: gave up after <attempts> attempts: <describe(last)>"``,
    chained to the last failure, its ``may_have_acted`` the caller's: False when ``fn`` only
    reads or connects (a failed try changed nothing), True (the default, the safe side) when a
    try that got no answer may have acted. ``acted``, when given, judges each failed try
    instead (whether its failure may have come after the system acted: a connection never
    made did not, a lost answer may have): the error's ``may_have_acted`` is then whether any
    try's did, so a call whose every try failed to connect says False, even a write's. Any
    other exception propagates unchanged on its first raise, for the caller to map (a
    refusal, a permission error).
    """
    retrying = AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=wait,
        retry=retry_if_exception(transient),
        reraise=False,
    )

    # Whether a failed try so far may have acted (judged by ``acted``).
    reached = False

    # tenacity awaits only what a coroutine *function* returns; fn is often a plain lambda.
    async def attempt() -> T:
        nonlocal reached
        try:
            return await fn()
        except Exception as exc:
            if acted is not None and transient(exc):
                reached = reached or acted(exc)
            raise

    try:
        return await retrying(attempt)
    except RetryError as exc:
        last = exc.last_attempt.exception()
        raise TransientActionError(
            f"{what}: gave up after {attempts} attempts: "
            f"{describe(last) if last else 'unknown error'}",
            may_have_acted=reached if acted is not None else may_have_acted,
        ) from last
