"""Sending approval notices: the interface the desk needs, and a sender over a notify channel.

``ApprovalNotifier`` is all the desk knows: ``await notifier.send(notice)``. ``ChannelNotifier``
sends through one of the ``notify.channels`` the service is configured with (the same channels,
URLs and retry policy the ``notify`` action and the run announcements use): a Slack channel gets
the approval message with its buttons, a webhook channel the notice as plain JSON. A notice that
cannot be sent raises NotifyError, which the desk logs; the approval stays pending and is listed
by the API and the CLI, and a request the channel did not take for now is sent again
(``REQUEST_RETRY_S``). Sent or not, each notice is audited (``send_recorded``).

Each notice carries the run's id (``X-Remediator-Run-Id``) and an ``Idempotency-Key`` of the
approval and the notice (``approval_notice_key``), as the other notifications do: the same on
the channel's retries and when the same notice is sent again after a crash, its link signed
anew (``ApprovalDesk.announce_undelivered``).

A decision's notice does not hold its answer past ``DECISION_NOTICE_WAIT_S`` (``NoticeSends``): a
Slack click is answered within Slack's 3 seconds, and an approver's page or CLI is not kept
waiting for a channel that does not answer; the notice goes on, and is audited, after it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Protocol

from receiver.approvals.messages import Notice, NoticeKind, slack_message, webhook_body
from receiver.store import JobKind, Store, StoreUnavailable
from remediations.base import ActionError, TransientActionError
from remediations.http.post import post_json
from remediations.notify.message import ChannelKind
from remediations.notify.notifier import Notifier, notice_key

__all__ = [
    "DECISION_NOTICE_WAIT_S",
    "REQUEST_RETRY_S",
    "ApprovalNotifier",
    "ChannelNotifier",
    "NoticeSends",
    "NotifyError",
    "approval_notice_key",
    "notice_name",
    "send_recorded",
]

# How soon a request's notice the channel did not take (429, 5xx, no answer, after its
# attempts) is sent again (seconds): its run's ``resume_run`` job is queued due then, whose
# wake sends it (``ApprovalDesk.gate``), until it is sent or the approval ends. Untold, nobody
# decides, and the approval expires unseen.
REQUEST_RETRY_S = 30.0

# How long a decision's answer waits for its notice (seconds): Slack shows the clicker an error
# when a button's answer takes more than 3 s, and a channel's send may take a minute or more
# (``HttpPolicy.longest_s``). A channel that answers at once is done within it, as before.
DECISION_NOTICE_WAIT_S = 2.0


class NotifyError(Exception):
    """The notice was not accepted (after the channel's retries). ``lasting``: the channel
    refused it, and sending it again as it is will not help (a 4xx or a redirect: a wrong URL,
    a bad token; a URL that cannot be posted to), as against a channel that did not answer or
    answered 429/5xx, which may take it later."""

    def __init__(self, message: str, *, lasting: bool = False) -> None:
        super().__init__(message)
        self.lasting = lasting


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
        run_id = notice.approval.run_id
        try:
            await post_json(
                self._notifier.session,
                channel.url,
                self.body(notice),
                what=f"channel {channel.name!r}",
                policy=channel.policy,
                trust=channel.trust,
                headers={
                    "X-Remediator-Run-Id": run_id,
                    "Idempotency-Key": approval_notice_key(channel.name, notice),
                },
            )
        except ActionError as exc:
            # post_json's messages name the channel and the status, never the (secret) URL.
            # Retries exhausted on 429, 5xx or the connection, or a TLS failure (a certificate
            # may be renewed meanwhile; its message says so): a wait; anything else the
            # channel refused, or the URL cannot be posted to.
            lasting = not isinstance(exc, TransientActionError)
            raise NotifyError(exc.message, lasting=lasting) from None


def approval_notice_key(channel: str, notice: Notice) -> str:
    """The ``Idempotency-Key`` of an approval notice: ``<run id>-<channel>-<digest>``, as a
    notification's (``remediations.notify.notifier.notice_key``), the digest of the approval's
    id and the notice's kind rather than of the body: the body of a request sent again holds a
    link signed anew (each token has an id of its own), yet it is the same notice."""
    approval = notice.approval
    return notice_key(channel, approval.run_id, {"approval": approval.id, "notice": notice.kind})


class NoticeSends:
    """A desk's decision notices (``ApprovalDesk.notify``: it never raises), each waited for at
    most ``wait_s`` seconds (``within``); past that it goes on in the background, held here (a
    task nothing refers to may be collected before it is done), so that a decision's answer (a
    Slack click's) waits for no channel. Nor is one cut when its caller is cancelled (an
    approver who closed the page). An error it ends with anyway is logged on ``log``."""

    def __init__(self, log: Any, wait_s: float = DECISION_NOTICE_WAIT_S) -> None:
        self._log = log
        self._wait_s = wait_s
        self._sending: set[asyncio.Task[None]] = set()

    async def within(self, sending: Coroutine[Any, Any, None]) -> None:
        """Run ``sending``, returning when it is done or ``wait_s`` has passed."""
        task = asyncio.create_task(sending)
        self._sending.add(task)
        task.add_done_callback(self._done)
        await asyncio.wait({task}, timeout=self._wait_s)

    def _done(self, finished: asyncio.Task[None]) -> None:
        self._sending.discard(finished)
        if not finished.cancelled() and (error := finished.exception()) is not None:
            self._log.error("approval notification failed", error=type(error).__name__)


def notice_name(notice: Notice) -> str:
    """What the audit rows of a notice call it (``"approval cancelled"``)."""
    return f"approval {notice.kind.value}"


async def send_recorded(
    notifier: ApprovalNotifier, store: Store, notice: Notice, log: Any
) -> NotifyError | None:
    """Send ``notice`` through ``notifier``, then audit it on its run (``notification.sent``,
    or ``notification.failed`` with the error: who was told what, and when, is in the
    record). The error when it was not accepted (logged), else None; never raises for the
    notifier, nor for the store: an audit row that cannot be written is logged. A request
    the channel did not take for now (not ``lasting``) is sent again ``REQUEST_RETRY_S``
    later (its run's ``resume_run`` job, queued here; ``ApprovalDesk.announce_undelivered``):
    only a pass taken up again after a crash sent it, and a Slack blip lost it for good."""
    approval = notice.approval
    failure: NotifyError | None = None
    error: str | None = None
    try:
        await notifier.send(notice)
    except NotifyError as exc:
        failure, error = exc, str(exc)
        log.error("approval notification failed", approval_id=approval.id, error=error)
    data = {
        "notice": notice_name(notice),
        "channel": getattr(notifier, "channel", None),
        "approval_id": approval.id,
        "step": approval.step_idx,
        "action": approval.action,
    }
    if error is not None:
        data["error"] = error
    try:
        await store.append_audit(
            "notification.failed" if error else "notification.sent",
            run_id=approval.run_id,
            data=data,
        )
        if failure is not None and not failure.lasting and notice.kind is NoticeKind.REQUESTED:
            await store.enqueue_job(JobKind.RESUME_RUN, approval.run_id, delay_s=REQUEST_RETRY_S)
    except StoreUnavailable as exc:
        log.error("could not record the notification", error=str(exc))
    return failure
