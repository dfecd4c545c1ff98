"""Sending approval notifications: the interface the desk needs, and a webhook sender.

``ApprovalNotifier`` is all the desk knows: ``await notifier.send(notice)``. ``WebhookNotifier``
posts the notice with aiohttp to one URL (read from a file: a Slack incoming-webhook URL is a
secret), as a Slack message or as plain JSON; transient failures (connection errors, 429, 5xx)
are retried a few times with backoff, other answers are not. A notification that cannot be sent
is an error in the log, never a lost approval: the approval stays pending and is listed by the
API and the CLI.
"""

from __future__ import annotations

from typing import Any, Protocol

import aiohttp
from pydantic import SecretStr
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from receiver.approvals.messages import Notice, slack_message, webhook_body

__all__ = ["ApprovalNotifier", "NotifyError", "WebhookNotifier"]


class NotifyError(Exception):
    """The notification was not accepted; ``transient`` when trying again may help."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class ApprovalNotifier(Protocol):
    """Delivers one notice (raises NotifyError when it cannot)."""

    async def send(self, notice: Notice, /) -> None: ...


class WebhookNotifier:
    """POSTs notices to ``url`` as Slack messages (``slack=True``) or plain JSON.

    ``buttons``: Slack interactivity is configured, so requests carry Approve/Reject buttons.
    """

    def __init__(
        self,
        url: SecretStr,
        *,
        slack: bool = True,
        buttons: bool = False,
        timeout_s: float = 10.0,
        attempts: int = 3,
        backoff_s: float = 0.5,
    ) -> None:
        self._url = url
        self._slack = slack
        self.buttons = buttons
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._attempts = attempts
        self._backoff_s = backoff_s

    def body(self, notice: Notice) -> dict[str, Any]:
        return slack_message(notice) if self._slack else webhook_body(notice)

    async def send(self, notice: Notice) -> None:
        body = self.body(notice)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=self._backoff_s, max=10),
            retry=retry_if_exception(lambda exc: isinstance(exc, NotifyError) and exc.transient),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await self._post(body)

    async def _post(self, body: dict[str, Any]) -> None:
        try:
            async with (
                aiohttp.ClientSession(timeout=self._timeout) as session,
                session.post(self._url.get_secret_value(), json=body) as response,
            ):
                if response.status < 300:
                    return
                transient = response.status == 429 or response.status >= 500
                # The URL is a secret (Slack's carries its token): never in the message.
                raise NotifyError(
                    f"notification endpoint answered HTTP {response.status}", transient=transient
                )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise NotifyError(
                f"notification endpoint unreachable: {type(exc).__name__}", transient=True
            ) from None
