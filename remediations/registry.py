"""The registry of every shipped action."""

from __future__ import annotations

from remediations.base import Registry


def default_registry() -> Registry:
    # Imported here so that importing the registry module does not load the client libraries.
    from remediations.kubernetes.catalog import ACTIONS

    return Registry(list(ACTIONS))
