"""A celery queue's move (``lua/requeue_celery.lua``): each dead letter back on the list of its
kombu priority step, as kombu restores it, and the words for the steps it went to."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from remediations.redis_queue.queues import CELERY_PRIORITY_STEPS, QueueSpec

__all__ = ["move_celery"]


async def move_celery(
    client: Any, script: str, spec: QueueSpec, max_messages: int
) -> tuple[int, Mapping[str, Any], str]:
    """Move up to ``max_messages`` of ``spec``'s dead letters with ``script`` (the text of
    ``requeue_celery.lua``) on ``client`` (a redis.asyncio client). Returns (messages moved,
    ``{"dead_letters", "queue"}`` after it: lengths of the dead-letter list and of the queue's
    own key, the words naming how many went to each step above 0, or ``""``)."""
    reply = await client.eval(script, 5, spec.dead_letter_key, *spec.celery_keys, max_messages)
    moved, dead, length = (int(x) for x in reply[:3])
    steps = {
        f"priority {n}": int(count)
        for n, count in zip(CELERY_PRIORITY_STEPS, reply[3:], strict=True)
        if int(count) and n
    }
    detail = (
        "; by kombu's priority steps, to their lists (<queue>\\x06\\x16<step>): "
        + ", ".join(f"{count} at {step}" for step, count in steps.items())
        if steps
        else ""
    )
    return moved, {"dead_letters": dead, "queue": length}, detail
