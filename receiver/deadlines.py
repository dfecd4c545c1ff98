"""Waiting for work with a bound that holds whatever the work does once cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

__all__ = ["answer_within"]

T = TypeVar("T")


async def answer_within(work: Awaitable[T], timeout_s: float) -> T:
    """``work``'s result, or TimeoutError after ``timeout_s`` seconds at the latest.

    Unlike ``asyncio.timeout``, which waits for the cancelled work to end, the bound holds for
    work that takes long to stop once cancelled (asyncpg waits for the server to acknowledge a
    cancelled statement, up to its command timeout, which a frozen server never does): the
    work is cancelled and left to end on its own. Its outcome is then dropped."""
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait([task], timeout=timeout_s)
    finally:
        if not task.done():
            task.cancel()
            task.add_done_callback(_drop_outcome)
    if not done:
        raise TimeoutError(f"no answer within {timeout_s:g}s")
    return task.result()


def _drop_outcome(task: asyncio.Future[Any]) -> None:
    # Retrieved so that asyncio does not log "exception was never retrieved".
    if not task.cancelled():
        task.exception()
