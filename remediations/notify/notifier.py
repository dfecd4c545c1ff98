"""Sending a ``Message`` to a named channel: Slack incoming webhook or a generic JSON webhook.

``Notifier.send`` never raises: whatever goes wrong (an unknown channel, a refused or failing
webhook, a timeout after retries) comes back as a ``Delivery`` that says so, for the caller to
record. A notification is never a reason for a run to fail. The webhook URL is a secret (a
Slack webhook's path is its credential): it is read from a file by configuration and never
appears in a message, a log line or ``repr()``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import aiohttp

from remediations.base import ActionError
from remediations.http.post import HttpPolicy, host_of, post_json
from remediations.notify.message import ChannelKind, Message, slack_payload, webhook_payload
from remediations.tls import TlsTrust

__all__ = ["NOTIFY_POLICY", "Channel", "ChannelKind", "Delivery", "Notifier"]

# Shorter than an action's: a message that cannot go out soon is of little use, and the
# pipeline waits for it.
NOTIFY_POLICY = HttpPolicy(timeout=5.0, attempts=3)


@dataclass(frozen=True, slots=True)
class Channel:
    """One configured destination. ``url`` is a secret and is left out of ``repr()``."""

    name: str
    kind: ChannelKind
    url: str = field(repr=False)
    policy: HttpPolicy = field(default_factory=lambda: NOTIFY_POLICY)
    # The CA bundle its certificate is checked against (``ca_file``); None: the system's.
    tls: TlsTrust | None = field(default=None, repr=False)

    @property
    def trust(self) -> TlsTrust:
        """What its server's certificate is checked against, and the setting that says so."""
        return self.tls or TlsTrust(f"notify.channels.{self.name}.ca_file")

    def payload(self, message: Message) -> dict[str, Any]:
        return (
            slack_payload(message) if self.kind is ChannelKind.SLACK else webhook_payload(message)
        )


@dataclass(frozen=True, slots=True)
class Delivery:
    """How one send ended: ``ok``, and for people a ``detail`` (the status, or what failed)."""

    channel: str
    ok: bool
    detail: str
    status: int | None = None
    attempts: int = 0


class Notifier:
    """The ``Clients`` value under ``"notify"``, and what the pipeline announces runs with.

    ``external_url`` is where people reach this service (e.g. ``https://remediator.example``);
    ``run_url(run_id)`` links a message back to the run (empty when it is not configured).
    """

    def __init__(
        self,
        channels: Mapping[str, Channel],
        session: aiohttp.ClientSession,
        *,
        external_url: str = "",
        owns_session: bool = False,
    ) -> None:
        self.channels: Mapping[str, Channel] = MappingProxyType(dict(channels))
        self.session = session
        self.external_url = external_url.rstrip("/")
        self._owns = owns_session

    def __repr__(self) -> str:
        return f"Notifier({sorted(self.channels)})"

    def run_url(self, run_id: str) -> str:
        """The URL of a run in the HTTP API, or ``""`` without an external URL."""
        return f"{self.external_url}/api/v1/runs/{run_id}" if self.external_url and run_id else ""

    def unknown(self, channel: str) -> str | None:
        """Why nothing can be sent to ``channel`` (no channel of that name is configured), or
        None when it is one of ``channels``."""
        if channel in self.channels:
            return None
        known = ", ".join(sorted(self.channels)) or "none"
        return f"no channel named {channel!r} is configured ({known})"

    async def send(self, channel: str, message: Message, *, step: str = "") -> Delivery:
        """Deliver ``message`` to the channel called ``channel``; never raises. ``step``: the
        run's step that sends it (``.<phase>.<index>``, a ``notify`` step's), in its
        ``Idempotency-Key`` (``notice_key``)."""
        target = self.channels.get(channel)
        if target is None:
            return Delivery(channel, False, self.unknown(channel) or "")
        if not message.links.get("run") and self.run_url(message.run_id):
            message = _with_link(message, "run", self.run_url(message.run_id))
        payload = target.payload(message)
        headers = {"Idempotency-Key": notice_key(channel, message.run_id, payload, step)}
        if message.run_id:
            headers["X-Remediator-Run-Id"] = message.run_id
        try:
            posted = await post_json(
                self.session,
                target.url,
                payload,
                what=f"channel {channel!r}",
                policy=target.policy,
                headers=headers,
                trust=target.trust,
            )
        except ActionError as exc:
            return Delivery(channel, False, exc.message)
        except Exception as exc:  # a notification must never take a run down with it
            # Only the type and the host: an exception's text may quote the secret URL.
            return Delivery(channel, False, f"{type(exc).__name__} ({host_of(target.url)})")
        return Delivery(
            channel, True, f"delivered (HTTP {posted.status})", posted.status, posted.attempts
        )

    async def close(self) -> None:
        if self._owns:
            await self.session.close()


def notice_key(channel: str, run_id: str, payload: Any, step: str = "") -> str:
    """The ``Idempotency-Key`` of one notification: ``<run id>-<channel>-<digest of the body
    sent>`` (``-`` for no run), ``<run id>.<phase>.<step>-<channel>-<digest>`` for a ``notify``
    step's (``step``). The same on every retry of a send, and when the same message is sent
    again after a crash between sending it and recording it (a run's announcement, a digest,
    a step taken up again), so a receiver that deduplicates on it shows it once; another for
    each message, and for each step, as ``http.call``'s
    (``remediations.http.endpoints.idempotency_key``): two steps of a run that send the same
    text (a step's and an ``on_resolved`` step's) are two messages, not a retry."""
    body = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(body.encode()).hexdigest()[:32]
    return f"{run_id or '-'}{step}-{channel}-{digest}"


def _with_link(message: Message, label: str, url: str) -> Message:
    return replace(message, links={**message.links, label: url})
