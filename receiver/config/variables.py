"""Which ``REMEDIATOR_*`` environment variables may be set: the settings' own, and the
development tools' (hack/*/build.sh, the Makefile, tests/support), which share the prefix. Any
other is a typo (``REMEDIATOR_DRYRUN``): refused at start-up like an unknown YAML key, since
the setting it meant would otherwise keep its default (a dry-run switched off). Pure."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from receiver.typos import typo_of

__all__ = [
    "ENV_PREFIX",
    "FOREIGN_PREFIXES",
    "FOREIGN_VARIABLES",
    "typo_of",
    "unknown_variables",
]

ENV_PREFIX = "REMEDIATOR_"

# Variables of the prefix that belong to the development tools, not to the service.
FOREIGN_VARIABLES = frozenset(
    ENV_PREFIX + name
    for name in (
        "CONFIG",  # remediator --config
        "CACHE_DIR",
        "CONTROLPLANE_BIN",
        "CONTROLPLANE_KEEP",
        "KUBECTL",
        "GOMODCACHE",
        "GOCACHE",
        "AMORACLE",
        "ALERTMANAGER",
        "CHROMIUM",
    )
)
FOREIGN_PREFIXES = (ENV_PREFIX + "TEST_",)


def unknown_variables(names: Iterable[str], settings: Collection[str]) -> list[str]:
    """A message per ``REMEDIATOR_*`` name in ``names`` that is neither one of ``settings``
    (the settings' variables) nor a development tool's, sorted, naming the setting's variable
    it is a typo of when there is one (``typo_of``): ``REMEDIATOR_DRYRUN: unknown setting (did
    you mean REMEDIATOR_DRY_RUN?)``."""
    found = []
    for name in sorted(names):
        if not name.startswith(ENV_PREFIX) or name in settings or name in FOREIGN_VARIABLES:
            continue
        if name.startswith(FOREIGN_PREFIXES):
            continue
        close = typo_of(name, settings)
        hint = f" (did you mean {close}?)" if close else ""
        found.append(f"{name}: unknown setting{hint}")
    return found
