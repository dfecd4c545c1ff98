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
from receiver.approvals.notify import ApprovalNotifier, ChannelNotifier
from receiver.approvals.policy import ApproverPolicy
from receiver.approvals.slack import SlackInteractions
from receiver.approvals.tokens import KeyRing, LinkTokens
from receiver.config import ConfigError, Settings
from receiver.config.approvals import ApprovalFiles
from receiver.store import Store
from receiver.telemetry import Metrics
from remediations.notify.notifier import Notifier

__all__ = ["ApprovalSetup", "approval_setup"]


@dataclass(frozen=True, slots=True)
class ApprovalSetup:
    desk: ApprovalDesk
    identities: IdentityResolver
    slack: SlackInteractions | None


def _quiet(*_args: object, **_kw: object) -> None:
    return None


def approval_setup(
    settings: Settings,
    files: ApprovalFiles,
    store: Store,
    *,
    log: Any,
    lookup_token: TokenLookup | None = None,
    notifier: Notifier | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    metrics: Metrics | None = None,
    warn: bool = True,
) -> ApprovalSetup:
    """The approval components. ``lookup_token`` (token -> operator name) defaults to the
    operator tokens of ``files``; ``notifier`` holds the configured notify channels, one of
    which (``approvals.notify_channel``) carries the approval notices. What is off (links,
    notices, approvers) is logged when ``warn`` (a worker process leaves it to ``serve``).
    Raises ConfigError for unusable keys or a notify channel that is not configured."""
    say = log.warning if warn else _quiet
    tokens: LinkTokens | None = None
    if files.keys:
        try:
            ring = KeyRing({k: v.get_secret_value().encode() for k, v in files.keys.items()})
        except ValueError as exc:
            raise ConfigError(f"REMEDIATOR_APPROVAL_KEYS_DIR: {exc}") from None
        tokens = LinkTokens(ring, clock)
    public_url = settings.external_url or None
    if tokens is not None and public_url is None:
        say("approval links are off: REMEDIATOR_EXTERNAL_URL is not set")
    elif tokens is None:
        say("approval links are off: REMEDIATOR_APPROVAL_KEYS_DIR is not set")
    approvers = files.approvers
    policy = ApproverPolicy.of(
        by_rule=approvers.by_rule, by_risk=approvers.by_risk, default=approvers.default
    )
    if policy.empty:
        say("no approvers are configured: steps that need approval will wait and expire")
    elif settings.sso_user_header is None:
        # Without an SSO header a name decides only as an operator (by its token) or as the
        # Slack user mapped to it. Another name never can: the README's `alice` copied on the
        # embedded default, whose one operator is `local`, left every approval to expire, and
        # the first word of it was a 403 to `local` when it tried.
        able = set(settings.operator_tokens)
        if files.slack_signing_secret is not None:
            able.update(approvers.slack_users.values())
        if stranded := sorted(policy.names - able):
            say(
                "the approvers file names approvers who cannot sign in (no operator token, Slack"
                " user or SSO header names them): steps only they may decide will wait and"
                " expire; add them as operators, or list an operator",
                approvers=stranded,
                operators=sorted(settings.operator_tokens),
            )
    slack = None
    if files.slack_signing_secret is not None:
        slack = SlackInteractions(
            files.slack_signing_secret.get_secret_value(),
            approvers.slack_users,
            teams=settings.slack_team_ids,
        )
    notices: ApprovalNotifier | None = None
    channel = settings.approval_notify_channel
    if channel is not None:
        if notifier is None or channel not in notifier.channels:
            known = ", ".join(sorted(notifier.channels)) if notifier else "none"
            raise ConfigError(
                f"REMEDIATOR_APPROVAL_NOTIFY_CHANNEL: no notify channel named {channel!r} is "
                f"configured (notify.channels: {known})"
            )
        notices = ChannelNotifier(notifier, channel)
    else:
        say("approval notices are off: REMEDIATOR_APPROVAL_NOTIFY_CHANNEL is not set")
    desk = ApprovalDesk(
        store,
        policy=policy,
        tokens=tokens,
        notifier=notices,
        public_url=public_url,
        ttl_s=settings.approval_ttl_seconds,
        buttons=slack is not None,
        log=log,
        metrics=metrics,
    )
    identities = IdentityResolver(
        # The operators of the settings given: the embedded default adds its own at start-up.
        lookup_token or token_table(settings.operator_tokens),
        sso_header=settings.sso_user_header,
        trusted_proxies=files.trusted_proxies,
    )
    return ApprovalSetup(desk, identities, slack)
