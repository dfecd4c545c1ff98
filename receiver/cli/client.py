"""Calling a running server over HTTP: its URL, the webhook credentials, one request."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import click

from receiver.cli.common import UserError
from receiver.config import Settings

__all__ = ["auth_headers", "call_server", "request", "url_host", "url_option"]

# The client gives up on a server that does not answer within this many seconds.
TIMEOUT_S = 30

url_option = click.option(
    "--url", default=None, help="Server base URL (default from settings host/port)."
)


def auth_headers(settings: Settings) -> dict[str, str]:
    """The Authorization header the server expects: the webhook token, the basic-auth pair,
    or the token the embedded default run generated under data_dir; none if there is none."""
    if settings.webhook_token is not None:
        return {"Authorization": f"Bearer {settings.webhook_token.get_secret_value()}"}
    if settings.webhook_username is not None and settings.webhook_password is not None:
        pair = f"{settings.webhook_username}:{settings.webhook_password.get_secret_value()}"
        return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}
    # The embedded default run generates a token and keeps it in the data directory.
    generated = settings.data_dir / "webhook-token"
    try:
        token = generated.read_text(encoding="utf-8").strip()
    except OSError:
        return {}
    return {"Authorization": f"Bearer {token}"} if token else {}


async def request(
    method: str,
    url: str,
    headers: dict[str, str],
    *,
    params: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
) -> Any:
    """One call to a running server; a non-200 answer becomes a UserError with its detail."""
    # Imported here: commands that do not call a server need not load aiohttp.
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.request(method, url, params=params, json=body, headers=headers) as response,
    ):
        try:
            data = await response.json(content_type=None)
        except (json.JSONDecodeError, aiohttp.ContentTypeError):
            data = None
        if response.status != 200:
            detail = data.get("error") if isinstance(data, dict) else None
            parameter = None
            if isinstance(data, dict):
                parameter = data.get("parameter") or data.get("field")
            where = f" ({parameter})" if parameter else ""
            raise UserError(
                f"{url}: HTTP {response.status}{where}: {detail or response.reason or ''}".rstrip()
            )
        return data


def call_server(
    settings: Settings,
    url: str | None,
    path: str,
    method: str = "GET",
    *,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> Any:
    """``request`` against ``url`` (default: the configured host and port) + ``path``, on its
    own event loop, with ``headers`` (default: the webhook credentials). Raises UserError when
    the server cannot be reached or answers an error."""
    import aiohttp

    base = url or f"http://{url_host(settings.host)}:{settings.port}"
    endpoint = base.rstrip("/") + path
    sent = auth_headers(settings) if headers is None else headers
    try:
        return asyncio.run(request(method, endpoint, sent, **kwargs))
    except aiohttp.ClientError as exc:
        raise UserError(f"{endpoint}: {exc}") from None
    except TimeoutError:
        raise UserError(f"{endpoint}: no answer within {TIMEOUT_S}s") from None


def url_host(host: str) -> str:
    """A listen address as a host to connect to: a wildcard becomes loopback, IPv6 bracketed."""
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a listen address, mapped to loopback
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
