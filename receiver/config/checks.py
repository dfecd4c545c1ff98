"""What the configuration allows but should not pass in silence: warnings for start-up.

Refusals (exit 2) are validation's job (``settings``, ``sources``, ``approvals``; an unknown
``REMEDIATOR_*`` variable is one, ``variables``); these are the settings that are valid yet
probably a mistake, or that remove a safety the default has:

- namespaces the default deny list protects that actions may now touch (``loud``: an error line
  in the log and a line in the banner).
- a configured webhook token shorter than 16 characters.
"""

from __future__ import annotations

from dataclasses import dataclass

from receiver.config.settings import Settings
from receiver.model import NamespacePolicy

__all__ = ["MIN_WEBHOOK_TOKEN_CHARS", "Notice", "newly_allowed", "start_up_notices"]

# Shorter still works (Alertmanager's shared cases use ten characters), but is guessable.
MIN_WEBHOOK_TOKEN_CHARS = 16


@dataclass(frozen=True, slots=True)
class Notice:
    """One thing to say at start-up; ``loud``: a safety the default has is off (log it as an
    error and put it in the banner)."""

    message: str
    loud: bool = False


def newly_allowed(settings: Settings) -> list[str]:
    """The namespaces the default deny list protects that the configured policy permits."""
    policy = settings.namespace_policy()
    return [ns for ns in NamespacePolicy().deny if policy.permits(ns)]


def start_up_notices(settings: Settings) -> list[Notice]:
    """Everything above, for the settings as configured (before the embedded default adds
    its generated credentials)."""
    notices: list[Notice] = []
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
