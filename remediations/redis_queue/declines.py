"""What a Redis server answers instead of running a command, and what the requeue records for
each: none of them moved a message (``requeue.py`` sends its moves once, so telling "declined"
from "may have moved" is what keeps a step from being recorded as a possible change)."""

from __future__ import annotations

import redis.exceptions

from remediations.base import ActionError, ActionRefused, TransientActionError

__all__ = ["DECLINED", "NOT_RUN", "PASSING", "cluster_refusal", "declined"]


# What a Redis Cluster's node answers instead of running a command (cluster.c,
# getNodeByQuery, before the command is called): nothing of it ran, a script included.
NOT_RUN = (redis.exceptions.ClusterCrossSlotError, redis.exceptions.AskError)  # MOVED is an ASK


# What a server answers instead of running a command, for a state that passes (server.c,
# processCommand, before call(); a cluster's node in cluster.c): LOADING (a dataset being
# loaded; redis-py raises it as a ConnectionError), MASTERDOWN (a replica cut from its master,
# replica-serve-stale-data no), CLUSTERDOWN (the cluster or the key's slot is down), TRYAGAIN
# (the keys' slot is moving). And READONLY: a replica refuses every write, so a script's first
# write fails with nothing written before it. None of them moved a message.
PASSING = (
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ClusterDownError,  # MASTERDOWN too (MasterDownError)
    redis.exceptions.TryAgainError,
)
DECLINED = (*PASSING, redis.exceptions.ReadOnlyError)


def declined(exc: redis.exceptions.RedisError, what: str) -> ActionError:
    """The error for a command the server declined (``DECLINED``): it has not acted. A
    read-only replica is a refusal (the connection must name the primary); the others pass,
    so the step may be tried again."""
    if isinstance(exc, redis.exceptions.ReadOnlyError):
        return ActionRefused(
            f"{what}: the server is a read-only replica ({exc}): nothing moved; point the queue "
            "connection's URL at the primary"
        )
    return TransientActionError(
        f"{what}: the server declined it for now ({type(exc).__name__}: {exc}): nothing moved; "
        "it may be tried again",
        may_have_acted=False,
    )


def cluster_refusal(exc: redis.exceptions.ResponseError, what: str) -> ActionRefused:
    """The refusal for a command a Redis Cluster's node declined to run; it has not acted."""
    if isinstance(exc, redis.exceptions.AskError):
        return ActionRefused(
            f"{what}: the key is served by another node of a Redis Cluster (slot "
            f"{exc.slot_id}, at {exc.node_addr}): nothing moved; a queue connection talks to "
            "the one server its URL names and follows no redirection"
        )
    return ActionRefused(
        f"{what}: the queue's keys hash to different slots of a Redis Cluster, and a script "
        "runs only on keys of one slot: nothing moved; give the keys one hash tag (e.g. "
        "'{emails}' and '{emails}:dead'; RQ's own keys cannot share one)"
    )
