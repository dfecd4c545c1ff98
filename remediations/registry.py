"""The registry of every shipped action."""

from __future__ import annotations

from remediations.base import Registry


def default_registry() -> Registry:
    from remediations import kubernetes

    return Registry(list(kubernetes.ACTIONS))
