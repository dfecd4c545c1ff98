"""The guards' Lua scripts (``receiver/guards/lua/``) and how one is called on Redis.

``Script`` sends EVALSHA, and on NOSCRIPT (a restarted, flushed or newly promoted server) EVAL,
which runs it and caches it on that server. Not redis-py's ``register_script``: on NOSCRIPT it
sends SCRIPT LOAD, which a cluster client sends to every master, so one master down elsewhere
in the cluster would fail the guards although the master of their slot answers. EVAL goes
where the keys are.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from importlib import resources
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import NoScriptError, RedisError

from receiver.guards.policy import Arg

__all__ = ["Script", "load_lua"]


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
