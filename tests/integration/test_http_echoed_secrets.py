"""A server that echoes its request in its answer: the configuration is loaded from real files,
the clients built as the service builds them, and the local server answers with the request's
Authorization header and URL in the body. The excerpt kept for the reviewer (step messages,
``after.response``, a notification's detail) keeps the rest of the body and none of the secrets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from receiver.clients import ServiceClients, build_clients
from receiver.config import load_settings
from remediations.base import (
    ActionContext,
    ActionRefused,
    AlertFacts,
    Outcome,
    TransientActionError,
)
from remediations.http.endpoints import HttpCall, HttpCallParams
from remediations.notify.message import Event, Message
from remediations.targets import Target
from tests.support.peer import answering

TOKEN = "tok-A1B2C3D4E5F6"
PATH_SECRET = "PATHSECRET0123456789"
QUERY_SECRET = "QSECRET987654321"
SECRETS = (TOKEN, PATH_SECRET, QUERY_SECRET)
PARAMS = HttpCallParams.model_validate({"body": {"n": 1}})
ALERT = AlertFacts(labels={"alertname": "CacheStale"}, status="firing")


async def echo(request: web.Request) -> web.Response:
    sent = await request.json()
    status = int(sent.get("answer", 500)) if isinstance(sent, dict) else 500
    token = request.headers.get("Authorization", "").removeprefix("Bearer ")
    body = (
        f"boom auth={request.headers.get('Authorization')} url={request.url} "
        f"path={request.path_qs} token={token} segment={request.path.rsplit('/', 1)[-1]}"
    )
    return web.Response(status=status, text=body)


@pytest.fixture
async def built(tmp_path: Path) -> AsyncIterator[ServiceClients]:
    async with answering(echo) as base:
        (tmp_path / "url").write_text(f"{base}/hook/{PATH_SECRET}?sig={QUERY_SECRET}\n")
        (tmp_path / "auth").write_text(f"Bearer {TOKEN}\n")
        (tmp_path / "slack").write_text(f"{base}/services/T0/B0/{PATH_SECRET}\n")
        (tmp_path / "config.yaml").write_text(
            f"""
http:
  endpoints:
    flush:
      url_file: {tmp_path}/url
      header_files: {{Authorization: {tmp_path}/auth}}
      attempts: 2
      timeout: 2s
notify:
  channels:
    oncall: {{kind: slack, url_file: {tmp_path}/slack, attempts: 1}}
"""
        )
        clients = build_clients(load_settings(tmp_path / "config.yaml", {}))
        try:
            yield clients
        finally:
            await clients.close()


def ctx(built: ServiceClients) -> ActionContext:
    return ActionContext("run-7", False, built.clients, rule="flush", alert=ALERT)


def assert_redacted(text: str) -> None:
    assert "boom auth=" in text  # the excerpt is kept ...
    assert "[redacted]" in text
    for secret in SECRETS:  # ... without a secret the request carried
        assert secret not in text, secret


async def test_a_5xx_echoing_the_request_leaves_no_secret_in_the_message(
    built: ServiceClients,
) -> None:
    with pytest.raises(TransientActionError) as caught:
        await HttpCall().run(ctx(built), Target("HttpEndpoint", "", "flush"), PARAMS)
    assert "gave up after 2 attempts: HTTP 500: boom" in caught.value.message
    assert_redacted(caught.value.message)


async def test_a_4xx_and_a_2xx_echoing_the_request_are_redacted_too(
    built: ServiceClients,
) -> None:
    flush = Target("HttpEndpoint", "", "flush")

    def answer(status: int) -> HttpCallParams:
        return HttpCallParams.model_validate({"body": {"answer": status}})

    with pytest.raises(ActionRefused) as caught:
        await HttpCall().run(ctx(built), flush, answer(400))
    assert "HTTP 400: boom" in caught.value.message
    assert_redacted(caught.value.message)

    result = await HttpCall().run(ctx(built), flush, answer(200))
    assert result.outcome is Outcome.OK
    assert_redacted(result.after["response"])


async def test_a_channel_echoing_its_webhook_url_leaves_no_secret_in_the_detail(
    built: ServiceClients,
) -> None:
    assert built.notifier is not None
    delivery = await built.notifier.send("oncall", Message(Event.RUN_REFUSED, "refused"))

    assert not delivery.ok
    assert "HTTP 500: boom" in delivery.detail
    assert_redacted(delivery.detail)
