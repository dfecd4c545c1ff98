"""Slack interactivity: the Approve/Reject buttons' callbacks, verified before anything is read.

Slack signs each request with the app's signing secret: ``v0=HMAC-SHA256(secret, "v0:" + ts +
":" + raw body)`` in ``X-Slack-Signature``, the timestamp in ``X-Slack-Request-Timestamp``.
slack_sdk's ``SignatureVerifier`` checks it over the raw bytes and refuses timestamps more than
five minutes from now (replays); only then is the form-encoded ``payload`` parsed
(research/alertmanager-protocol.md §5.3, §5.4). The clicking user is ``user.id`` of the verified
payload, mapped to an approver name by the configured table; an unmapped user is nobody.
The signature proves only that the app sent it: an app installed in several workspaces signs
for all of them with one secret, so with ``teams`` configured a click from another workspace's
``team.id`` is refused (``team_allowed``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs

from slack_sdk.signature import Clock, SignatureVerifier

from receiver.alertmanager import json_problem
from receiver.approvals.messages import ACTION_APPROVE, ACTION_REJECT
from receiver.approvals.policy import Identity
from receiver.approvals.state import Decision

__all__ = ["SlackAction", "SlackInteractions", "SlackPayloadError"]

# The headers slack_sdk's verifier reads (it lower-cases the names).
_SIGNATURE_HEADERS = ("x-slack-request-timestamp", "x-slack-signature")


class SlackPayloadError(ValueError):
    """A verified request that is not a button click of ours (the message says what)."""


@dataclass(frozen=True, slots=True)
class SlackAction:
    """One click: which approval, which decision, by which Slack user of which team."""

    approval_id: str
    decision: Decision
    user_id: str
    team_id: str
    user_name: str = ""


class _Clock(Clock):
    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def now(self) -> float:
        return self._now()


class SlackInteractions:
    """Verifies and reads Slack interaction requests; maps users to approvers.

    ``users``: Slack user id -> approver name. ``teams``: the Slack team (workspace) ids whose
    clicks are taken; empty: any the signing secret signs for. ``now``: seconds since the
    epoch (tests pass a fixed clock)."""

    def __init__(
        self,
        signing_secret: str,
        users: Mapping[str, str],
        *,
        teams: Collection[str] = (),
        now: Callable[[], float] = time.time,
    ) -> None:
        self._verifier = SignatureVerifier(signing_secret, clock=_Clock(now))
        self._users = dict(users)
        self._teams = frozenset(teams)

    def verified(self, body: bytes, headers: Mapping[str, str]) -> bool:
        """Whether ``body`` carries a valid signature made within the last five minutes. A
        timestamp or signature that is not ASCII is none of Slack's (hex digits, ASCII digits):
        False, where ``hmac.compare_digest`` raised TypeError on it (a 500 to anyone)."""
        signed = {k.lower(): v for k, v in headers.items() if k.lower() in _SIGNATURE_HEADERS}
        if not all(value.isascii() for value in signed.values()):
            return False
        try:
            return self._verifier.is_valid_request(body, dict(headers))
        except ValueError:  # a timestamp that is not a number
            return False

    def parse(self, body: bytes) -> SlackAction:
        """The click in a verified body. Raises SlackPayloadError: the body is no form with a
        ``payload`` field, the payload is no JSON (``json_problem`` says why: nested too
        deeply, a number of too many digits), or it holds no one Approve or Reject click."""
        try:
            form = parse_qs(body.decode("utf-8"), strict_parsing=True)
            text = form["payload"][0]
        except (UnicodeDecodeError, ValueError, KeyError, IndexError):
            raise SlackPayloadError("expected a form with a JSON payload field") from None
        try:
            payload = json.loads(text)
        except (ValueError, RecursionError) as exc:
            # A signed payload nested thousands deep raised RecursionError, answered 500.
            raise SlackPayloadError(f"payload: invalid JSON: {json_problem(exc)}") from None
        if not isinstance(payload, dict) or payload.get("type") != "block_actions":
            raise SlackPayloadError("only block_actions interactions are handled")
        actions = payload.get("actions") or []
        ours = [
            a
            for a in actions
            if isinstance(a, dict) and a.get("action_id") in (ACTION_APPROVE, ACTION_REJECT)
        ]
        user = payload.get("user") or {}
        team = payload.get("team") or {}
        if len(ours) != 1 or not isinstance(user, dict) or not user.get("id"):
            raise SlackPayloadError("expected one Approve or Reject click by a user")
        action = ours[0]
        decision = Decision.APPROVE if action["action_id"] == ACTION_APPROVE else Decision.REJECT
        return SlackAction(
            approval_id=str(action.get("value") or ""),
            decision=decision,
            user_id=str(user["id"]),
            team_id=str(team.get("id") or "") if isinstance(team, dict) else "",
            user_name=str(user.get("username") or user.get("name") or ""),
        )

    def team_allowed(self, action: SlackAction) -> bool:
        """Whether the click came from a workspace whose clicks are taken: any, when no teams
        are configured; else one of them (a payload without ``team.id`` is from none)."""
        return not self._teams or action.team_id in self._teams

    def identity(self, action: SlackAction) -> Identity | None:
        """The approver the Slack user is mapped to; None for an unmapped user."""
        name = self._users.get(action.user_id)
        if name is None:
            return None
        return Identity(name, "slack", f"{action.team_id}/{action.user_id}")
