"""The Redis side of refusal digests (``receiver.refusal_digest``): the windows in which a rule's
refusals to a channel are folded, and the digests of the ended ones, claimed by one sender.

One Lua script (``lua/digest.lua``) does each step atomically, on the guards' Redis, under the
guards' key prefix (``GuardKeys.digest``: one hash slot on Redis Cluster, like every guard key),
and on the guards' clock (the server's TIME, or the one ``Guards(clock=...)`` was given):

- ``fold``: one call per refusal that would be announced. The first of a (rule, channel) opens
  a window and is sent on its own; the others within it are counted (once per run id, so a
  retried event is not counted twice) and not sent. Folds asked together go in one pipeline,
  as admissions do (``BatchedScript``), except on a cluster.
- ``claim``: the next digest to send, claimed by this caller for a lease: the windows that
  ended are closed first (each by the one caller whose script finds it so; its digest queued,
  claimable at once), then one digest is taken, atomically (two replicas never both get it),
  a queued one or one whose sender's lease ran out (it crashed, or could not finish). One at a
  time: the lease starts when its sender is about to send it, so it needs to cover that one
  send only (``receiver.pipeline.digest``), however many digests are due; and not one to a
  channel its caller is sending to (``busy``), so that a sender sends one digest to each
  channel at a time and the channels side by side, none waiting for another's.
- ``done``: a digest sent (or given up on) and audited leaves Redis.

Errors are the guards' (``Guards._call``): GuardUnavailable when Redis cannot be asked now,
GuardError when it refused the script.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Awaitable, Callable, Collection
from typing import Any, Protocol, TypeVar

from redis.asyncio import Redis, RedisCluster

from receiver.guards.policy import Arg, GuardKeys, to_ms
from receiver.guards.scripts import BatchedScript
from receiver.refusal_digest import (
    EXAMPLE_CHARS,
    MAX_EXAMPLES,
    Digest,
    Folding,
    from_ms,
    parse_digest,
)

__all__ = ["DIGEST_GC_S", "DigestWindows"]

_T = TypeVar("_T")

# How long a window's keys and a digest not yet sent outlive the window's end: a digest that
# no replica could send within a day (every replica down, Redis unreachable) is dropped with its
# keys rather than kept for ever.
DIGEST_GC_S = 86400.0
# The most folds one pipeline takes, and the most ended windows one ``claim`` call closes.
_MAX_CLOSE = 32


class Caller(Protocol):
    """``Guards._call``: run ``make()`` within the guards' timeout, their errors mapped."""

    async def __call__(self, what: str, make: Callable[[], Awaitable[_T]]) -> _T: ...


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def target_hash(target_key: str) -> str:
    """What the window counts distinct targets by: short whatever the key's length."""
    return hashlib.blake2b(target_key.encode(), digest_size=16).hexdigest()


class DigestWindows:
    """The digest windows on ``redis`` under ``keys``. ``now_ms()``: the injected clock in ms,
    or None for the server's TIME. ``timeout_s``: the bound of one pipeline of folds."""

    def __init__(
        self,
        redis: Redis | RedisCluster,
        keys: GuardKeys,
        *,
        call: Caller,
        now_ms: Callable[[], int | None],
        timeout_s: float,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._call = call
        self._now_ms = now_ms
        self._timeout_s = timeout_s
        # A storm's refusals reach their fold together: one pipeline (BatchedScript); the
        # script's other operations go alone.
        self._fold = BatchedScript(redis, "digest", what="fold", timeout_s=timeout_s)
        self._script = self._fold.script

    def _now_arg(self) -> Arg:
        now = self._now_ms()
        return "" if now is None else now

    async def fold(
        self,
        *,
        rule: str,
        channel: str,
        run_id: str,
        guard: str,
        target_key: str,
        window_s: float,
    ) -> Folding:
        """Fold the refusal of ``run_id`` by ``guard`` into the window of (``rule``,
        ``channel``) of ``window_s`` seconds, or open that window with it (then it is to be
        sent on its own: ``Folding.folded`` False). Raises GuardUnavailable or GuardError."""
        open_key, targets, runs = self._keys.digest(rule, channel)
        keys = [open_key, targets, runs, self._keys.digests_due(), self._keys.digests_closed()]
        args: list[Arg] = [
            "fold",
            self._now_arg(),
            to_ms(window_s),
            to_ms(DIGEST_GC_S),
            rule,
            channel,
            run_id,
            guard,
            target_hash(target_key),
            target_key[:EXAMPLE_CHARS],
            MAX_EXAMPLES,
        ]
        reply = await self._call("digest fold", lambda: self._fold(keys, args))
        return Folding(
            folded=int(reply[0]) == 1, start=from_ms(_text(reply[1])), end=from_ms(_text(reply[2]))
        )

    async def claim(
        self, lease_s: float, busy: Collection[str] = ()
    ) -> tuple[str, Digest | None] | None:
        """The next digest to send, claimed by this caller for ``lease_s`` seconds, or None
        when there is none: the windows that ended are closed first (at most 32 a call; a
        window that folded nothing has no digest), then one digest nobody holds is taken (a
        new one, or one whose claim ran out), not one to a channel of ``busy`` (those its
        caller is sending to). As (its entry, for ``done``; the digest, None when the entry
        cannot be read). Raises GuardUnavailable or GuardError."""
        now = self._now_ms()
        if now is None:
            seconds, micros = await self._call("digest time", self._redis.time)
            now = int(seconds) * 1000 + int(micros) // 1000
        due_key, closed = self._keys.digests_due(), self._keys.digests_closed()
        ended = await self._call(
            "digest due",
            lambda: self._redis.zrangebyscore(due_key, "-inf", now, start=0, num=_MAX_CLOSE),
        )
        gc = to_ms(DIGEST_GC_S)
        for raw in ended:
            member = _text(raw)
            rule, _, channel = member.partition(":")
            keys = [*self._keys.digest(rule, channel), due_key, closed]
            args: list[Arg] = ["close", now, gc, member]
            await self._call("digest close", functools.partial(self._script, keys, args))
        # The lease counts from the take itself (on the same clock), not from before the closes.
        take: list[Arg] = ["take", self._now_arg(), to_ms(lease_s), *sorted(busy)]
        entry = await self._call("digest take", functools.partial(self._script, [closed], take))
        if not entry:
            return None
        text = _text(entry)
        return text, _parsed(text)

    async def done(self, entry: str) -> bool:
        """The digest ``entry`` is finished with: it leaves Redis. Whether it was still there
        (False: another replica finished it first)."""
        args: list[Arg] = ["done", "", entry]
        closed = self._keys.digests_closed()
        removed = await self._call("digest done", lambda: self._script([closed], args))
        return int(removed) == 1


def _parsed(entry: str) -> Digest | None:
    try:
        return parse_digest(entry)
    except ValueError:
        return None
