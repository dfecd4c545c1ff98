"""Building the approval components from the settings and the files they name.

``approval_setup`` returns the desk (for the pipeline and the edge), the identity resolver and
the Slack handler (None unless a signing secret is configured). Links need both signing keys
and a public URL; without them approvals still work through the API and the CLI, and the
notification says how.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from receiver.approvals.desk import ApprovalDesk
from receiver.approvals.identity import IdentityResolver, TokenLookup, token_table
from receiver.approvals.notify import WebhookNotifier
from receiver.approvals.policy import ApproverPolicy
from receiver.approvals.slack import SlackInteractions
from receiver.approvals.tokens import KeyRing, LinkTokens
from receiver.config import ConfigError, NotifyFormat, Settings
from receiver.config.approvals import ApprovalFiles
from receiver.store import Store

__all__ = ["ApprovalSetup", "approval_setup"]


@dataclass(frozen=True, slots=True)
class ApprovalSetup:
    desk: ApprovalDesk
    identities: IdentityResolver
    slack: SlackInteractions | None


def approval_setup(
    settings: Settings,
    files: ApprovalFiles,
    store: Store,
    *,
    log: Any,
    lookup_token: TokenLookup | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> ApprovalSetup:
    """The approval components. ``lookup_token`` (token -> operator name) defaults to the
    operator tokens of ``files``. Raises ConfigError for unusable keys."""
    tokens: LinkTokens | None = None
    if files.keys:
        try:
            ring = KeyRing({k: v.get_secret_value().encode() for k, v in files.keys.items()})
        except ValueError as exc:
            raise ConfigError(f"REMEDIATOR_APPROVAL_KEYS_DIR: {exc}") from None
        tokens = LinkTokens(ring, clock)
    if tokens is not None and settings.public_url is None:
        log.warning("approval links are off: REMEDIATOR_PUBLIC_URL is not set")
    elif tokens is None:
        log.warning("approval links are off: REMEDIATOR_APPROVAL_KEYS_DIR is not set")
    approvers = files.approvers
    policy = ApproverPolicy.of(
        by_rule=approvers.by_rule, by_risk=approvers.by_risk, default=approvers.default
    )
    if policy.empty:
        log.warning("no approvers are configured: steps that need approval will wait and expire")
    slack = None
    if files.slack_signing_secret is not None:
        slack = SlackInteractions(
            files.slack_signing_secret.get_secret_value(), approvers.slack_users
        )
    notifier = None
    if files.notify_url is not None:
        notifier = WebhookNotifier(
            files.notify_url,
            slack=settings.approval_notify_format is NotifyFormat.SLACK,
            buttons=slack is not None,
        )
    desk = ApprovalDesk(
        store,
        policy=policy,
        tokens=tokens,
        notifier=notifier,
        public_url=settings.public_url,
        ttl_s=settings.approval_ttl_seconds,
        buttons=slack is not None,
        log=log,
    )
    identities = IdentityResolver(
        lookup_token or token_table(files.operators),
        sso_header=settings.sso_user_header,
        trusted_proxies=files.trusted_proxies,
    )
    return ApprovalSetup(desk, identities, slack)
