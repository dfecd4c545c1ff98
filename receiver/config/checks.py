"""What the configuration allows but should not pass in silence: warnings for start-up.

Refusals (exit 2) are validation's job (``settings``, ``sources``, ``approvals``); these are the
settings that are valid yet probably a mistake, or that remove a safety the default has:

- a ``REMEDIATOR_*`` variable that is no setting (``REMEDIATOR_PORTT``): named, with the closest
  setting's variable. The test tools' own variables are known and pass.
- namespaces the default deny list protects that actions may now touch (``loud``: an error line
  in the log and a line in the banner).
- a configured webhook token shorter than 16 characters.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass

from receiver.config.settings import Settings
from receiver.config.sources import ENV_PREFIX, KEYS
from receiver.model import NamespacePolicy

__all__ = [
    "FOREIGN_PREFIXES",
    "FOREIGN_VARIABLES",
    "MIN_WEBHOOK_TOKEN_CHARS",
    "Notice",
    "newly_allowed",
    "start_up_notices",
    "unknown_variables",
]

# Variables of the prefix that belong to the development tools (hack/*/build.sh, the Makefile,
# tests/support), not to the service: they are not typos.
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
# Shorter still works (Alertmanager's shared cases use ten characters), but is guessable.
MIN_WEBHOOK_TOKEN_CHARS = 16


@dataclass(frozen=True, slots=True)
class Notice:
    """One thing to say at start-up; ``loud``: a safety the default has is off (log it as an
    error and put it in the banner)."""

    message: str
    loud: bool = False


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A message per ``REMEDIATOR_*`` variable that is neither a setting nor a known tool's,
    naming the closest setting's variable when one is close."""
    known = sorted(k.env for k in KEYS)
    found = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in known or name in FOREIGN_VARIABLES:
            continue
        if name.startswith(FOREIGN_PREFIXES):
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
        hint = f" (did you mean {close[0]}?)" if close else ""
        found.append(f"{name} is not a setting and is ignored{hint}")
    return found


def newly_allowed(settings: Settings) -> list[str]:
    """The namespaces the default deny list protects that the configured policy permits."""
    policy = settings.namespace_policy()
    return [ns for ns in NamespacePolicy().deny if policy.permits(ns)]


def start_up_notices(settings: Settings, environ: Mapping[str, str]) -> list[Notice]:
    """Everything above, for the settings as configured (before the embedded default adds
    its generated credentials)."""
    notices = [Notice(message) for message in unknown_variables(environ)]
    allowed = newly_allowed(settings)
    if allowed:
        notices.append(
            Notice(
                f"actions may touch {', '.join(allowed)}: REMEDIATOR_NAMESPACE_DENY "
                f"({', '.join(settings.namespace_deny) or 'none'}) no longer denies them",
                loud=True,
            )
        )
    token = settings.webhook_token
    if token is not None and len(token.get_secret_value()) < MIN_WEBHOOK_TOKEN_CHARS:
        notices.append(
            Notice(
                f"the webhook token is {len(token.get_secret_value())} characters; use at least "
                f"{MIN_WEBHOOK_TOKEN_CHARS} (e.g. openssl rand -base64 32)"
            )
        )
    return notices
