"""The queues of one named Redis connection: their layouts and keys, and the client to reach them.

A queue is named in configuration (``redis.queues.<connection>.queues.<queue>``) and a target
names it as ``<connection>/<queue>``: no alert label can point an action at a raw Redis key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from remediations.base import ActionRefused

__all__ = ["CELERY_PRIORITY_STEPS", "End", "Layout", "QueueSpec", "RedisQueues", "text"]

# kombu's Redis transport keeps a queue's messages of priority step n (n > 0) in the list
# "<queue>\x06\x16<n>", step 0 in the queue's own key (kombu/transport/redis.py: PRIORITY_STEPS,
# Channel.sep, Channel._q_for_pri), unless its transport options change them.
CELERY_PRIORITY_STEPS = (0, 3, 6, 9)
_KOMBU_SEP = "\x06\x16"


class Layout(StrEnum):
    """How a queue keeps its messages in Redis, and so how dead letters go back."""

    LIST = "list"  # dead-letter list -> work list, ends configurable
    CELERY = "celery"  # Celery's Redis broker (kombu): LPUSH to publish, BRPOP to consume
    RQ = "rq"  # RQ: failed registry (sorted set of job ids) -> queue (list, RPUSH)
    STREAM = "stream"  # a stream and one consumer group: idle pending entries are re-added


class End(StrEnum):
    """An end of a Redis list, as LMOVE names it."""

    LEFT = "LEFT"
    RIGHT = "RIGHT"


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """One configured queue. Raises ValueError when the keys do not fit the layout.

    ``key``: the work queue (list, or stream). ``dead_letter_key``: the dead-letter list (list,
    celery) or RQ's failed registry (rq). ``group``: the consumer group (stream).
    ``pop``/``push`` (list only): the end of the dead-letter list its oldest message is at, and
    the end of the work list producers push to (defaults: producers LPUSH, consumers RPOP).
    ``job_key_prefix`` (rq only): where RQ keeps job hashes. An rq queue's keys are RQ's own
    for one queue name: ``<prefix>:queue:<name>`` and ``<prefix>:failed:<name>`` (rq/queue.py
    ``Queue.key``, rq/registry.py ``FailedJobRegistry.key_template``; ``<prefix>`` is
    ``RQ_KEY_PREFIX``, ``rq`` unless changed), as a job's ``origin`` names its queue by that name.
    """

    layout: Layout
    key: str
    dead_letter_key: str = ""
    group: str = ""
    pop: End = End.RIGHT
    push: End = End.LEFT
    job_key_prefix: str = "rq:job:"

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError("key must not be empty")
        if self.layout is Layout.STREAM:
            if not self.group:
                raise ValueError("a stream queue needs the consumer group (group)")
            if self.dead_letter_key:
                raise ValueError("a stream queue takes no dead_letter_key")
        else:
            if not self.dead_letter_key:
                raise ValueError(f"a {self.layout} queue needs dead_letter_key")
            if self.dead_letter_key == self.key:
                raise ValueError("dead_letter_key must differ from key")
            if self.group:
                raise ValueError(f"a {self.layout} queue takes no group")
        if self.layout is Layout.RQ:
            self._rq_keys()  # raises ValueError naming RQ's keys
        if self.layout is not Layout.LIST and (self.pop, self.push) != (End.RIGHT, End.LEFT):
            raise ValueError(f"pop and push are fixed by the {self.layout} layout")

    @property
    def ends(self) -> tuple[End, End]:
        """(end of the dead-letter list taken from, end of the work list put at)."""
        # Celery: kombu LPUSHes and BRPOPs, so the oldest dead letter is at the right and a
        # requeued message goes where producers put new ones, at the left.
        return (self.pop, self.push)

    def _rq_keys(self) -> tuple[str, str]:
        """(RQ's key prefix, the queue's name) of an rq queue's ``key`` and ``dead_letter_key``.
        Raises ValueError when they are not one queue's keys. The shortest prefix that fits
        both: a name may hold ``:queue:`` itself, a prefix that fits both the same way cannot
        be told from it, and RQ's default is the shortest."""
        marker, start = ":queue:", 0
        while (at := self.key.find(marker, start)) >= 0:
            prefix, name = self.key[:at], self.key[at + len(marker) :]
            if name and self.dead_letter_key == f"{prefix}:failed:{name}":
                return prefix, name
            start = at + 1
        raise ValueError(
            "an rq queue's key and dead_letter_key are RQ's keys of one queue: "
            "'rq:queue:<name>' and 'rq:failed:<name>' (another prefix if RQ_KEY_PREFIX is set), "
            f"got key {self.key!r} and dead_letter_key {self.dead_letter_key!r}"
        )

    @property
    def celery_keys(self) -> tuple[str, ...]:
        """A celery queue's lists, one per step of ``CELERY_PRIORITY_STEPS``, in that order."""
        return tuple(f"{self.key}{_KOMBU_SEP}{n}" if n else self.key for n in CELERY_PRIORITY_STEPS)

    @property
    def rq_queue(self) -> str:
        """An rq queue's name, as RQ writes it in a job's ``origin`` (rq only)."""
        return self._rq_keys()[1]

    @property
    def rq_queues_key(self) -> str:
        """RQ's set of queue keys, ``<prefix>:queues`` (rq/queue.py ``redis_queues_keys``)."""
        return f"{self._rq_keys()[0]}:queues"

    def describe(self) -> str:
        if self.layout is Layout.STREAM:
            return f"stream {self.key!r} (group {self.group!r})"
        return f"{self.layout} {self.dead_letter_key!r} -> {self.key!r}"


class RedisQueues:
    """The ``Clients`` value under ``"redis:<connection>"``: one redis.asyncio client and the
    queues configured under that connection. ``repr()`` shows names only (the URL may hold a
    password)."""

    def __init__(self, name: str, client: Any, queues: Mapping[str, QueueSpec]) -> None:
        self.name = name
        self.client = client
        self.queues: Mapping[str, QueueSpec] = MappingProxyType(dict(queues))

    def __repr__(self) -> str:
        return f"RedisQueues({self.name!r}, queues={sorted(self.queues)})"

    def spec(self, queue: str) -> QueueSpec:
        """The queue called ``queue``. Raises ActionRefused naming the configured ones."""
        try:
            return self.queues[queue]
        except KeyError:
            known = ", ".join(sorted(self.queues)) or "none"
            raise ActionRefused(
                f"no queue {queue!r} is configured on Redis connection {self.name!r} "
                f"(configured: {known})"
            ) from None

    async def close(self) -> None:
        await self.client.aclose()


def text(value: Any) -> str:
    """A Redis reply's value as text (the clients here answer bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)
