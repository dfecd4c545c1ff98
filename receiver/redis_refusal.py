"""What to check when the guards' Redis refuses serve's start-up write
(``receiver.redis_connect.write_refusal``), for the refusals a setting or the server's state
explains, and how the start-up messages name each setting.

No I/O: the redis-py exception and the mode in, a sentence (or None) out.
"""

from __future__ import annotations

import re

from redis.asyncio.sentinel import MasterNotFoundError
from redis.exceptions import (
    AuthenticationError,
    NoPermissionError,
    ReadOnlyError,
    RedisClusterException,
    ResponseError,
)

from receiver.config import KEYS
from receiver.config.redis_mode import RedisMode, guard_key_prefix

__all__ = [
    "MASTER",
    "MODE",
    "PASSWORD",
    "READINESS_TIMEOUT",
    "SENTINELS",
    "SENTINEL_PASSWORD",
    "URL",
    "refusal_hint",
    "refused_command",
]

# Each setting as these messages name it, ``redis.mode (REMEDIATOR_REDIS_MODE)``
# (``Key.named``): by now the service no longer knows whether the YAML key or the variable set it.
_NAMED = {key.field: key.named for key in KEYS}
MODE, URL = _NAMED["redis_mode"], _NAMED["redis_url"]
SENTINELS, MASTER = _NAMED["redis_sentinels"], _NAMED["redis_sentinel_master"]
PASSWORD, SENTINEL_PASSWORD = _NAMED["redis_password"], _NAMED["redis_sentinel_password"]
SENTINEL_TLS = _NAMED["redis_sentinel_tls"]
READINESS_TIMEOUT = _NAMED["readiness_timeout_seconds"]


def refusal_hint(mode: RedisMode, cause: BaseException | None) -> str | None:
    """What to check for a refusal whose cause is in the configuration or the server's state."""
    if isinstance(cause, RedisClusterException) and cause.__cause__ is not None:
        # redis-py's cluster client wraps what its start-up nodes answered (a password they
        # refused, "NOAUTH") in "Redis Cluster cannot be connected", raised from that answer:
        # unread, a wrong password read as an unreachable cluster and named no setting.
        cause = cause.__cause__
    code = str(cause).split(" ", 1)[0] if isinstance(cause, ResponseError) else ""
    if isinstance(cause, ReadOnlyError) and mode is RedisMode.STANDALONE:
        # A read-only server on one server's URL: its replica, named by mistake (a replica
        # taken for a master after a failover included).
        return (
            f"{URL} names a replica: point it at the master, or set {MODE} to sentinel with"
            f" {SENTINELS} and {MASTER}, which find the master after a failover too"
        )
    if isinstance(cause, AuthenticationError):
        # Redis says only that the user and password do not match (or that none was sent,
        # "NOAUTH", "HELLO must be called ..."): which settings give them is ours to say.
        if mode is RedisMode.SENTINEL:
            return (
                f"check {PASSWORD}, the password of the master and its replicas (the"
                f" sentinels' own is {SENTINEL_PASSWORD})"
            )
        return (
            f"check the password (and user name, with an ACL user) in {URL}, or {PASSWORD}:"
            " the server's requirepass, or its ACL user's"
        )
    if isinstance(cause, MasterNotFoundError):
        # Every sentinel was asked (their errors are in the reply): none answered, or none
        # named a master in a state to take writes (a failover under way, or no quorum).
        return (
            f"no sentinel of {SENTINELS} named a master for {MASTER}: check that the sentinels"
            " run and are reachable from here, and that their master is up or failing over"
        )
    if isinstance(cause, NoPermissionError):
        if (command := refused_command(cause)) is not None:
            return (
                f"the Redis user's ACL refuses the {command!r} command, which the readiness"
                " check writes with and the guards' scripts run: allow it (e.g. +@write)"
            )
        # The readiness check writes its own key (``Guards.probe``), which a user limited by
        # an ACL to the guards' key patterns may not have. On a cluster every guard key
        # carries the hash tag, which ~remediator:* does not match.
        prefix = guard_key_prefix(mode)
        return (
            "the Redis user's ACL refuses the readiness check's key: allow the key prefix's"
            f" pattern (~{prefix}*), which covers it and every guard's key"
        )
    if code == "NOREPLICAS":
        return (
            "the master has fewer replicas in sync than its min-replicas-to-write: check its"
            " replicas (INFO replication)"
        )
    if code == "MISCONF":
        return (
            "its last snapshot failed and stop-writes-on-bgsave-error holds writes: see the"
            " Redis server's log (the disk, its dir's permissions)"
        )
    return None


def refused_command(cause: BaseException) -> str | None:
    """The command a NOPERM reply names (``... no permissions to run the 'set' command``);
    None when it refused a key or a channel instead."""
    match = re.search(r"permissions to run the '([^']+)' command", str(cause))
    return None if match is None else match.group(1)
