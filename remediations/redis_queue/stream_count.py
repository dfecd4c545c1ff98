"""What a dry run of a stream's requeue says a live move would re-add: the idle pending
entries that still exist, up to one past the cap, and those it would find deleted.

The live move (``lua/reclaim_stream.lua``) acknowledges a pending entry deleted from the stream
and counts it as gone, not against the cap; counting XPENDING's idle list alone, a dry run of
a group whose first idle entries were deleted (XDEL, a MAXLEN trim) said "requeue 10" where the
move re-added none. Read only, in pages of the idle list, each page's entries looked up in one
pipelined round trip (XRANGE id id), at most ``MAX_EXAMINED`` entries a dry run.
"""

from __future__ import annotations

from typing import Any

from remediations.redis_queue.queues import QueueSpec, text

__all__ = ["MAX_EXAMINED", "stream_would_move"]

# The most pending entries a dry run looks at: bounded, as the move's scan is, so that a
# group with millions pending costs a dry run a few round trips.
MAX_EXAMINED = 10_000
_PAGE = 500


async def stream_would_move(client: Any, spec: QueueSpec, params: Any) -> tuple[int, str]:
    """(entries the move would re-add now, up to one past ``params.max_messages``; the words
    for the deleted entries it would find before them, and for a look cut at ``MAX_EXAMINED``)
    for the stream and consumer group of ``spec``, entries idle ``params.min_idle`` seconds.
    ``client``: a redis.asyncio client (or cluster client: every key is the stream's)."""
    limit, idle_ms = params.max_messages + 1, round(params.min_idle * 1000)
    movable = gone = examined = 0
    start, cut = "-", False
    while movable < limit:
        if examined >= MAX_EXAMINED:
            cut = True
            break
        count = min(_PAGE, MAX_EXAMINED - examined)
        page = await client.xpending_range(
            spec.key, spec.group, min=start, max="+", count=count, idle=idle_ms
        )
        ids = [text(entry["message_id"]) for entry in page]
        pipe = client.pipeline(transaction=False)
        for entry_id in ids:
            pipe.xrange(spec.key, min=entry_id, max=entry_id, count=1)
        for found in await pipe.execute() if ids else []:
            if movable < limit:
                movable, gone = (movable + 1, gone) if found else (movable, gone + 1)
        examined += len(ids)
        if len(ids) < count:
            break
        start = "(" + ids[-1]
    detail = (
        f"; {gone} pending entr(y/ies) deleted from the stream would be acknowledged"
        if gone
        else ""
    )
    if cut:
        detail += f"; only the first {MAX_EXAMINED} idle entries were looked at"
    return movable, detail
