"""Outbound TLS failures said as what they are (remediations/tls.py), against a real local
HTTPS server with a certificate made here (tests.support.tls_peer): one signed by a CA the
client does not trust, one expired, one for another host name, and a plain HTTP server on an
https URL.

Before, each was an aiohttp ``ClientConnectorError`` like a refused connection: retried, then a
step waited and failed saying its system "could not be reached ... never connected", and a
notification said only "Cannot connect to host"; and nothing let an endpoint or a channel trust
a private CA but ``SSL_CERT_FILE``, which replaces every CA the process trusts.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from receiver.approvals.messages import Notice, NoticeKind
from receiver.approvals.notify import ChannelNotifier, NotifyError
from receiver.clients import build_clients
from receiver.config import load_settings
from receiver.model import RunOutcome
from receiver.store import DEFERRED_AUDIT
from remediations.http.endpoints import Endpoint, HttpEndpoints
from remediations.http.post import HttpPolicy
from remediations.notify.message import ChannelKind, Event, Message
from remediations.notify.notifier import Channel, Notifier
from tests.integration.test_approved_undo_refire import audit_kinds
from tests.support.outage import Clock
from tests.support.payloads import alert, notification
from tests.support.pipeline import MakeHarness
from tests.support.tls_peer import TlsCase, serving_tls, tls_case
from tests.unit.test_approval_rules import approval

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

POLICY = HttpPolicy(timeout=2.0, attempts=3, initial_wait=0.01, max_wait=0.01)


class Hits:
    """The requests that reached the server (none may, over a refused certificate)."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.paths.append(request.path)
        return web.json_response({"ok": True})


# (case, trusted CA file: "ca", "other" or None, what the failure says, the fix it names)
CASES = [
    pytest.param(
        {},
        None,
        "TLS: certificate verify failed: unable to get local issuer certificate for 127.0.0.1:",
        "set notify.channels.oncall.ca_file to the PEM bundle of the CA that signed the "
        "server's certificate",
        id="unknown-ca",
    ),
    pytest.param(
        {},
        "other",
        "TLS: certificate verify failed: unable to get local issuer certificate",
        "notify.channels.oncall.ca_file (",
        id="another-ca-in-ca-file",
    ),
    pytest.param(
        {"expired": True},
        "ca",
        "TLS: certificate verify failed: certificate has expired for 127.0.0.1:",
        "renew the server's certificate",
        id="expired",
    ),
    pytest.param(
        {"host": "other.example"},
        "ca",
        "TLS: certificate verify failed: IP address mismatch, certificate is not valid for "
        "'127.0.0.1' for 127.0.0.1:",
        "the server's certificate is not for the URL's host name",
        id="host-mismatch",
    ),
    pytest.param(
        {"plain": True},
        None,
        "TLS: the server at 127.0.0.1:",
        "it speaks plain HTTP there, or that port is not its TLS port: give the URL http://",
        id="plain-http",
    ),
]


def trust_for(case: TlsCase, which: str | None, setting: str) -> dict[str, Any]:
    """A channel's ``tls`` keyword: the CA file ``which`` loaded, none for the system's."""
    if which is None:
        return {}
    # Here, not at the top: the cases without a CA file also run against the code before
    # remediations.tls, showing what it said.
    from remediations.tls import TlsTrust, ca_context

    path = case.ca if which == "ca" else case.other_ca
    return {"tls": TlsTrust(setting, path, ca_context(path))}


@pytest.mark.parametrize(("made", "trusted", "said", "fix"), CASES)
async def test_a_channel_says_tls_and_the_fix_and_sends_nothing(
    tmp_path: Path, made: dict[str, Any], trusted: str | None, said: str, fix: str
) -> None:
    plain = made.get("plain", False)
    case = tls_case(tmp_path, **{k: v for k, v in made.items() if k != "plain"})
    hits = Hits()
    async with (
        serving_tls(hits.handle, None if plain else case.pair, tmp_path) as base,
        aiohttp.ClientSession() as session,
    ):
        trust = trust_for(case, trusted, "notify.channels.oncall.ca_file")
        channel = Channel(
            "oncall", ChannelKind.WEBHOOK, f"{base}/hook/T0K3NS3CR3T99", POLICY, **trust
        )
        notifier = Notifier({"oncall": channel}, session)
        delivery = await notifier.send(
            "oncall", Message(Event.STEP, title="t", text="x", run_id="r1")
        )
        with pytest.raises(NotifyError) as raised:
            await ChannelNotifier(notifier, "oncall").send(Notice(NoticeKind.REQUESTED, approval()))
    assert not delivery.ok
    assert delivery.detail.startswith("channel 'oncall' (127.0.0.1:"), delivery.detail
    assert said in delivery.detail, delivery.detail
    assert fix in delivery.detail, delivery.detail
    assert "Cannot connect" not in delivery.detail
    assert "T0K3NS3CR3T99" not in delivery.detail
    # An approval notice says the same, and may go later (a certificate can be renewed).
    assert said in raised.value.args[0]
    assert not raised.value.lasting
    # Nothing reached the server over a refused connection, and it was not retried.
    assert hits.paths == []
    assert "after 3 attempts" not in delivery.detail


async def test_a_private_ca_in_ca_file_is_trusted_for_that_channel_only(tmp_path: Path) -> None:
    """Configured by file (load_settings, build_clients): the channel with ``ca_file`` is
    delivered to; another channel to the same server, without it, still refuses the
    certificate (no CA was added to the process's)."""
    case = tls_case(tmp_path)
    hits = Hits()
    async with serving_tls(hits.handle, case.pair, tmp_path) as base:
        (tmp_path / "url").write_text(f"{base}/private\n")
        config = tmp_path / "config.yaml"
        config.write_text(
            "notify:\n  channels:\n"
            f"    private: {{kind: webhook, url_file: {tmp_path}/url, ca_file: {case.ca}}}\n"
            f"    public: {{kind: webhook, url_file: {tmp_path}/url, attempts: 1}}\n"
        )
        built = build_clients(load_settings(config, {}))
        try:
            assert built.notifier is not None
            message = Message(Event.STEP, title="t", text="x", run_id="r1")
            private = await built.notifier.send("private", message)
            public = await built.notifier.send("public", message)
        finally:
            await built.close()
    assert private.ok, private.detail
    assert hits.paths == ["/private"]
    assert not public.ok
    assert "set notify.channels.public.ca_file" in public.detail, public.detail


FLAG_RULE = """\
rules:
  - name: checkout-flag
    match: ['alertname="CheckoutErrors"']
    target: {kind: HttpEndpoint, name: flags}
    steps:
      - action: http.call
        params: {body: {flag: checkout, enabled: false}}
        approval: never
"""


async def test_an_http_call_step_waits_saying_tls_then_fails_saying_it(
    make_harness: MakeHarness, tmp_path: Path
) -> None:
    """The step waits as for an unreachable system (a certificate may be renewed, or the CA
    configured and the service restarted, within the wait) but says TLS, the failure and the
    setting, while it waits and when it gives up; never "never connected"."""
    case = tls_case(tmp_path)
    hits = Hits()
    clock = Clock()
    async with (
        serving_tls(hits.handle, case.pair, tmp_path) as base,
        aiohttp.ClientSession() as session,
    ):
        endpoints = HttpEndpoints({"flags": Endpoint("flags", f"{base}/flag", {}, POLICY)}, session)
        h = await make_harness(
            FLAG_RULE,
            clients={"http": endpoints},
            dry_run=False,
            guards_down_retry_s=0,
            clock=clock,
            unreachable_retry_s=60,
        )
        first = clock.now
        await h.intake.accept(notification(alert({"alertname": "CheckoutErrors"})))
        await h.drain()
        run = await h.only_run()
        (step,) = run.steps
        assert step.outcome == "pending", step.message
        assert step.message.startswith(
            "waiting for its system: http could not be reached over TLS (1 try since "
        ), step.message
        assert "endpoint 'flags' (127.0.0.1:" in step.message
        assert "TLS: certificate verify failed: unable to get local" in step.message
        assert "set http.endpoints.flags.ca_file to the PEM bundle" in step.message
        deferred = await audit_kinds(h.store, run.id, DEFERRED_AUDIT)
        assert len(deferred) == 1

        clock.now += timedelta(seconds=61)
        await h.drain()
        run = await h.only_run()
    assert run.outcome is RunOutcome.FAILED
    (step,) = run.steps
    assert step.outcome == "failed"
    assert not step.may_have_acted
    assert step.message.startswith(
        f"http could not be reached over TLS: 2 tries from {first.isoformat()} to "
        f"{clock.now.isoformat()}, the last failed its TLS handshake; it did not act"
    ), step.message
    assert "set http.endpoints.flags.ca_file" in step.message
    assert "never connected" not in step.message
    assert hits.paths == []
