"""The registry of every shipped action."""

from __future__ import annotations

from remediations.base import Action, Registry


def default_registry() -> Registry:
    """Every shipped action, under its name, with its default retry policy."""
    # Imported here so that importing the registry module does not load the client libraries.
    from remediations.http.endpoints import HttpCall
    from remediations.kubernetes.catalog import ACTIONS
    from remediations.notify.action import Notify
    from remediations.postgres.sessions import CancelLongQueries, TerminateIdle
    from remediations.redis_queue.requeue import RequeueDeadLetters

    others: list[Action] = [
        TerminateIdle(),
        CancelLongQueries(),
        RequeueDeadLetters(),
        HttpCall(),
        Notify(),
    ]
    return Registry([*ACTIONS, *others])
