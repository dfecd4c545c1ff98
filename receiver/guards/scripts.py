"""The guards' Lua scripts (``receiver/guards/lua/``) and how one is called on Redis.

``Script`` sends EVALSHA, and on NOSCRIPT (a restarted, flushed or newly promoted server) EVAL,
which runs it and caches it on that server. Not redis-py's ``register_script``: on NOSCRIPT it
sends SCRIPT LOAD, which a cluster client sends to every master, so one master down elsewhere
in the cluster would fail the guards although the master of their slot answers. EVAL goes
where the keys are.

``redis_call`` bounds one call and tells an outage (``GuardUnavailable``: try again later) from
a refusal of what was sent (``GuardError``), for every caller of the guards' keys.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from typing import Any, TypeVar

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import (
    ClusterDownError,
    ClusterError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)

from receiver.batching import Coalescer
from receiver.guards.policy import Arg, GuardError, GuardUnavailable

__all__ = ["MAX_PIPELINE", "BatchedScript", "Script", "load_lua", "redis_call", "said"]

_T = TypeVar("_T")

# Error replies that describe the server's state, not the script's input: they pass.
_OUTAGE_REPLIES = (
    ReadOnlyError,
    OutOfMemoryError,
    ClusterDownError,
    TryAgainError,
    NoPermissionError,
)
# The same codes as they appear in a reply, also inside a script's error ("Error running script
# (call to f_...): @user_script:81: @user_script: 81: -READONLY ..." from Redis 6). MISCONF: a
# server whose snapshot failed refuses writes (stop-writes-on-bgsave-error) until one succeeds;
# redis-py has no class of its own for it.
_OUTAGE_CODES = re.compile(
    r"(?:^|: -?)"
    r"(?:BUSY|LOADING|MASTERDOWN|MISCONF|NOREPLICAS|READONLY|OOM|NOPERM|TRYAGAIN|CLUSTERDOWN)\b"
)


# redis-py's own refusal to send a script whose keys span slots (RedisClusterException, not a
# RedisError; the server's CROSSSLOT reply is a ResponseError): a bug in the key layout, not an
# outage. Its other cluster errors (no reachable node, a slot no master covers during a
# failover) are outages.
_CROSS_SLOT = "must map to the same key slot"


# The most of a Redis error's text a GuardUnavailable quotes: a server's reply is one line, a
# script's error names its SHA and line; the rest would only lengthen every log line.
_SAID_MAX = 300


# How redis-py's MasterNotFoundError names each sentinel that did not answer: its client's repr
# (some 600 characters: the connection's every option) before the error, which the cut at
# _SAID_MAX then lost ("No master found for 'guards' : <redis.asyncio.client.Redis(<redis...").
# Its host and port are what a reader needs.
_CLIENT_REPR = re.compile(
    r"<redis\.(?:asyncio\.)?client\.Redis\(<.*?,host=([^,]*),port=(\d+),.*?\)>\)>\)> - "
)


# What redis-py's cluster client raises once it has sent a command to the nodes its replies
# pointed at (MOVED, ASK) or asked again after TRYAGAIN, 16 times over, without the last reply:
# "TTL exhausted." alone said nothing of why (redis/asyncio/cluster.py, _execute_command).
_TTL_EXHAUSTED = "TTL exhausted"
_TTL_WHY = (
    " (every attempt was redirected, MOVED or ASK, or answered TRYAGAIN: the slot is being"
    " migrated to another master, or a failover is under way)"
)


def said(exc: BaseException) -> str:
    """What Redis (or redis-py) said, as ``Type: text`` on one line of at most ``_SAID_MAX``
    characters: ``NOREPLICAS Not enough good replicas to write.``, ``Error 111 connecting to
    host:6379. Connection refused.``. Not ``repr``: redis-py 8's is ``server:ResponseError``,
    without the text. Safe to log: the replies taken as an outage are the server's fixed
    texts for its state (``NOREPLICAS``, ``READONLY``, ``OOM``...; inside a script's error,
    with the script's SHA and line), the guards' own script errors name a guard or an operation,
    never a key's value, and redis-py's connection errors name the host and port, never a password.
    Only an unknown command's reply quotes arguments (its first ones: a SHA, keys). A sentinel
    redis-py names by its client's repr is named ``sentinel host:port``; the cluster client's
    "TTL exhausted." is told what exhausts it (a slot migrating, a failover)."""
    text = _CLIENT_REPR.sub(r"sentinel \1:\2 - ", " ".join(str(exc).split()))
    if isinstance(exc, ClusterError) and text.startswith(_TTL_EXHAUSTED):
        text += _TTL_WHY
    name = type(exc).__name__
    return (f"{name}: {text}" if text else name)[:_SAID_MAX]


def _is_outage(exc: ResponseError) -> bool:
    """A Redis error reply that says "not now" (a failover, a full or busy server, missing
    permissions being fixed) rather than "never" (the script failed on what it was given)."""
    return isinstance(exc, _OUTAGE_REPLIES) or _OUTAGE_CODES.search(str(exc)) is not None


async def redis_call(what: str, timeout_s: float, make: Callable[[], Awaitable[_T]]) -> _T:
    """``await make()`` within ``timeout_s`` seconds. Raises GuardUnavailable for an outage (a
    refused or lost connection, a timeout, a server loading, read-only, out of memory or busy,
    a cluster slot with no master), GuardError for a reply that refuses what was sent (a Lua
    error, keys that span cluster slots); ``what`` names the call in both."""
    try:
        async with asyncio.timeout(timeout_s):
            return await make()
    except ResponseError as exc:
        if _is_outage(exc):
            raise GuardUnavailable(f"redis unavailable during {what}: {said(exc)}") from exc
        raise GuardError(f"redis refused the guards' {what} script: {exc}") from exc
    except RedisClusterException as exc:
        if _CROSS_SLOT in str(exc):
            raise GuardError(f"the guards' {what} keys span cluster slots: {exc}") from exc
        raise GuardUnavailable(f"redis cluster unavailable during {what}: {said(exc)}") from exc
    except (RedisError, OSError, TimeoutError) as exc:
        raise GuardUnavailable(f"redis unavailable during {what}: {said(exc)}") from exc


def load_lua(name: str) -> str:
    """The text of ``receiver/guards/lua/<name>.lua``."""
    return resources.files("receiver.guards").joinpath("lua", f"{name}.lua").read_text("utf-8")


class Script:
    """One of the guards' scripts (``name``: its file under lua/) on ``redis``: ``await
    script(keys, args)`` is its reply (module docstring: EVALSHA, then EVAL)."""

    def __init__(self, redis: Redis | RedisCluster, name: str) -> None:
        self._redis = redis
        self._text = load_lua(name)
        self._sha = hashlib.sha1(self._text.encode(), usedforsecurity=False).hexdigest()

    @property
    def sha(self) -> str:
        """The script's SHA-1, as EVALSHA names it."""
        return self._sha

    async def __call__(self, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        try:
            return await self._redis.evalsha(self._sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self._redis.eval(self._text, len(keys), *keys, *args)

    async def many(
        self, calls: Sequence[tuple[Sequence[str], Sequence[Arg]]], timeout_s: float
    ) -> list[Any | BaseException]:
        """Several calls of this script in one pipeline (one round trip): each call's reply, or
        the error the server answered it with, in order. A call the server has no script for
        (NOSCRIPT: restarted, flushed, failed over) is sent again on its own as EVAL. Not on a
        cluster, whose client routes a pipeline differently."""
        if len(calls) == 1:
            keys, args = calls[0]
            return [await self(keys, args)]
        pipe = self._redis.pipeline(transaction=False)
        for keys, args in calls:
            pipe.evalsha(self._sha, len(keys), *keys, *args)
        # Bounded like each caller: a pipeline that hangs fails its batch, not every batch
        # queued behind it.
        async with asyncio.timeout(timeout_s):
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        outcomes: list[Any] = []
        for (keys, args), reply in zip(calls, replies, strict=True):
            if isinstance(reply, NoScriptError):
                try:
                    reply = await self(keys, args)
                except RedisError as exc:
                    reply = exc
            outcomes.append(reply)
        return outcomes


# The most calls of one script that one pipeline takes (``BatchedScript``).
MAX_PIPELINE = 64


class BatchedScript:
    """``await script(keys, args)``: a ``Script`` whose calls asked while one pipeline of them
    is on its way go together in the next (``receiver.batching``: one round trip; a storm's
    events reach the same script together). Each call is still its own atomic script, run in
    the order asked. Not on a cluster, whose client routes a pipeline differently: there each
    call is its own. ``what`` names the calls in the GuardUnavailable that those still queued
    get when the service stops; ``timeout_s`` bounds one pipeline. ``batches``: the
    ``Coalescer`` (None on a cluster), whose counts tell what was sent."""

    def __init__(
        self, redis: Redis | RedisCluster, name: str, *, what: str, timeout_s: float
    ) -> None:
        self.script = Script(redis, name)
        self._timeout_s = timeout_s
        self.batches: Coalescer[tuple[Sequence[str], Sequence[Arg]], Any] | None = (
            None
            if isinstance(redis, RedisCluster)
            else Coalescer(
                self._send,
                max_batch=MAX_PIPELINE,
                max_in_flight=2,
                stopped=lambda: GuardUnavailable(f"the guards stopped before the {what}"),
            )
        )

    async def _send(
        self, calls: list[tuple[Sequence[str], Sequence[Arg]]]
    ) -> Sequence[Any | BaseException]:
        return await self.script.many(calls, self._timeout_s)

    async def __call__(self, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        if self.batches is None:
            return await self.script(keys, args)
        return await self.batches((keys, args))
