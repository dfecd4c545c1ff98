"""Sending approval notices: the interface the desk needs, and a sender over a notify channel.

``ApprovalNotifier`` is all the desk knows: ``await notifier.send(notice)``. ``ChannelNotifier``
sends through one of the ``notify.channels`` the service is configured with (the same channels,
URLs and retry policy the ``notify`` action and the run announcements use): a Slack channel gets
the approval message with its buttons, a webhook channel the notice as plain JSON. A notice that
cannot be sent raises NotifyError, which the desk logs; the approval stays pending and is listed
by the API and the CLI.
"""

from __future__ import annotations

from typing import Any, Protocol

from receiver.approvals.messages import Notice, slack_message, webhook_body
from remediations.base import ActionError
from remediations.http.post import post_json
from remediations.notify.message import ChannelKind
from remediations.notify.notifier import Notifier

__all__ = ["ApprovalNotifier", "ChannelNotifier", "NotifyError"]


class NotifyError(Exception):
    """The notice was not accepted (after the channel's retries)."""


class ApprovalNotifier(Protocol):
    """Delivers one notice (raises NotifyError when it cannot)."""

    async def send(self, notice: Notice, /) -> None: ...


class ChannelNotifier:
    """Sends notices to the channel named ``channel`` of ``notifier``. Raises KeyError at
    construction for a channel that is not configured."""

    def __init__(self, notifier: Notifier, channel: str) -> None:
        self._notifier = notifier
        self._channel = notifier.channels[channel]

    @property
    def channel(self) -> str:
        """The name of the channel notices go to (run announcements to the same channel leave
        approval requests to these notices)."""
        return self._channel.name

    def body(self, notice: Notice) -> dict[str, Any]:
        if self._channel.kind is ChannelKind.SLACK:
            return slack_message(notice)
        return webhook_body(notice)

    async def send(self, notice: Notice) -> None:
        channel = self._channel
        try:
            await post_json(
                self._notifier.session,
                channel.url,
                self.body(notice),
                what=f"channel {channel.name!r}",
                policy=channel.policy,
            )
        except ActionError as exc:
            # post_json's messages name the channel and the status, never the (secret) URL.
            raise NotifyError(exc.message) from None
