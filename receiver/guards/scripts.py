"""The guards' Lua scripts (``receiver/guards/lua/``) and how one is called on Redis.

``Script`` sends EVALSHA, and on NOSCRIPT (a restarted, flushed or newly promoted server) EVAL,
which runs it and caches it on that server. Not redis-py's ``register_script``: on NOSCRIPT it
sends SCRIPT LOAD, which a cluster client sends to every master, so one master down elsewhere
in the cluster would fail the guards although the master of their slot answers. EVAL goes
where the keys are.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from importlib import resources
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import NoScriptError

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
