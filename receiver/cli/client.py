"""Calling a running server over HTTP: its URL, the operator's token, one request.

Where a command goes: ``--url``; else the configured host and port (``REMEDIATOR_HOST``,
``REMEDIATOR_PORT``) when either is set; else the ``serve`` running on the data directory now
(its address is in the directory's owner record, ``embedded.json``: local, and the server of this
very directory); else the default host and port.

The operator endpoints take an operator token. The CLI sends the one configured with
REMEDIATOR_OPERATOR_TOKEN(_FILE). Without one, it uses the token the embedded default generated
under the data directory, and only with the server that owns that directory now: a token is
never sent to a server it does not belong to. When no token is sent, a warning on stderr says
so and why: a server that answers anyway (an open one) is not the one the user meant to reach.
A 401 answer comes with a hint saying what to set.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import click

from receiver.cli.common import BadUsage, UserError
from receiver.config import Settings
from receiver.config.inline import connect_host
from receiver.text import has_lone_surrogate

__all__ = [
    "Interrupted",
    "call_server",
    "check_reason",
    "operator_target",
    "query_params",
    "request",
    "url_option",
]

# The client gives up on a server that does not answer within this many seconds.
TIMEOUT_S = 30


def _check_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--url``: an http(s) URL with a host (and a numeric port, if any) and no path, query or
    fragment; else a usage error."""
    if value is None:
        return None
    if has_lone_surrogate(value):
        # A byte the shell passed that is not UTF-8: aiohttp failed on the URL and the error
        # was the URL twice ("error: URL: URL"), exit 1.
        raise click.BadParameter(
            "not UTF-8 text (a byte the shell passed is not UTF-8); e.g. http://127.0.0.1:9095"
        )
    try:
        parts = urlsplit(value.strip())
    except ValueError as exc:  # "Invalid IPv6 URL"
        raise click.BadParameter(f"not a server URL ({exc}); e.g. http://127.0.0.1:9095") from None
    if "@" in parts.netloc:
        # Never echoed: it holds a password. The operator token is the CLI's credential.
        raise click.BadParameter(
            "give the server as http(s)://host:port, without user:password@ (the operator "
            "token is the credential: REMEDIATOR_OPERATOR_TOKEN(_FILE))"
        )
    try:
        parts.port  # noqa: B018 - reading it validates it
    except ValueError:
        raise click.BadParameter(f"{value!r}: the port is not a number from 0 to 65535") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(f"{value!r} is not a server URL; e.g. http://127.0.0.1:9095")
    if parts.path.strip("/") or parts.query or parts.fragment:
        # The server answers at the root (/api/v1/...); a base path would only 404.
        raise click.BadParameter(
            f"{value!r}: give the server as http(s)://host:port, without a path or query"
        )
    return value.strip()


url_option = click.option(
    "--url",
    default=None,
    callback=_check_url,
    help="Server base URL, http(s)://host:port (default: the configured host and port if set,"
    " else the server running on this data directory, else 127.0.0.1:9095).",
)


def check_reason(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--reason``: UTF-8 text, not blank when given, and at most as long as the server
    takes; else a usage error naming the option (exit 2), before anything is sent. The server
    refuses a blank reason where one is required and drops it where not: ``events drop 1 2 3
    --reason " "`` sent three requests and printed three 400s."""
    from receiver.http.bodies import MAX_REASON_CHARS

    # A byte the shell passed that is not UTF-8 (a lone surrogate in argv): said once here, as
    # call_server says it, not once per id of a bulk command, each refused with exit 1.
    if value is not None and has_lone_surrogate(value):
        raise BadUsage(
            "--reason: not UTF-8 text (a byte the shell passed is not UTF-8); nothing was sent"
        )
    if value is not None and not value.strip():
        leave_out = "" if param.required else ", or leave --reason out"
        raise click.BadParameter(f"blank: say why (it goes into the audit log){leave_out}")
    if value is not None and len(value.strip()) > MAX_REASON_CHARS:
        raise click.BadParameter(
            f"{len(value.strip())} characters; at most {MAX_REASON_CHARS} (it goes into the"
            " audit log)"
        )
    return value


def _same_server(a: str, b: str) -> bool:
    one, two = urlsplit(a), urlsplit(b)
    try:
        return (one.scheme, one.hostname, one.port) == (two.scheme, two.hostname, two.port)
    except ValueError:  # a port that is not a number
        return False


# What a 401 means when the CLI had no token of its own to send.
_WHAT_TO_SET = "set REMEDIATOR_OPERATOR_TOKEN_FILE to a file with your operator token"


def operator_target(settings: Settings, url: str | None) -> tuple[str, dict[str, str], str]:
    """The base URL to call, the headers to send it, and a hint for a 401 answer (see the
    module's docstring for the order in which the URL is chosen).

    Raises UserError when the embedded token exists but cannot be read."""
    from receiver.embedded.credentials import OPERATOR_TOKEN_FILE
    from receiver.embedded.owner import live_owner

    # Port 0 (any free one) names no server: a serve started with REMEDIATOR_PORT=0 recorded
    # the port it bound, and the CLI run in its environment asked port 0 instead. Nor does a
    # wildcard host (0.0.0.0, ::: where serve listens, set for it in a shared environment):
    # with `serve --port N` the CLI asked port 9095 of loopback instead of that serve.
    named = set()
    if settings.port != 0:
        named.add("port")
    if connect_host(settings.host) == settings.host:
        named.add("host")
    configured = bool(named & settings.model_fields_set)
    owner = live_owner(settings.data_dir)
    served = owner.http_url if owner is not None else None
    if settings.operator_token is not None:
        base = url or (None if configured else served) or settings.local_url()
        header = {"Authorization": f"Bearer {settings.operator_token.get_secret_value()}"}
        return base, header, "the server does not accept REMEDIATOR_OPERATOR_TOKEN(_FILE)"

    if owner is None or served is None:
        lend = f"no serve runs on {settings.data_dir} to lend its generated token"
        why = f"{_WHAT_TO_SET} ({lend})"
        return url or settings.local_url(), {}, why
    # A configured host or port names a server, as --url does: the data directory's serve was
    # asked instead (REMEDIATOR_PORT=9096 remediator pause paused the local one), and its token
    # goes only to that serve.
    url = url or (settings.local_url() if configured else None)
    if url is not None and not _same_server(url, served):
        where = f"{served} ({owner.describe()})"
        return url, {}, f"{_WHAT_TO_SET}; the token in {settings.data_dir} is for {where} only"
    kept = settings.data_dir / OPERATOR_TOKEN_FILE
    # A serve whose operators are configured (REMEDIATOR_OPERATOR_TOKENS_DIR) generates no
    # token, and takes only theirs: one left by an earlier run without them is refused.
    if not kept.exists():
        hint = f"the serve at {served} generated no token: its operators are configured"
        return served, {}, f"{hint} (REMEDIATOR_OPERATOR_TOKENS_DIR); {_WHAT_TO_SET}"
    token = _read_token(kept)
    hint = f"{kept} is not a token of the serve at {served}: with operators configured"
    return (
        served,
        {"Authorization": f"Bearer {token}"},
        f"{hint} (REMEDIATOR_OPERATOR_TOKENS_DIR) it takes only theirs; {_WHAT_TO_SET}",
    )


def _warn_once(message: str) -> None:
    """``message`` on stderr, once per command (``events retry 1 2 3`` calls three times)."""
    ctx = click.get_current_context(silent=True)
    said: set[str] = ctx.meta.setdefault("remediator.warned", set()) if ctx else set()
    if message not in said:
        said.add(message)
        click.echo(message, err=True)


def _read_token(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read the operator token {path}: {exc}") from None
    if not token:
        raise UserError(f"the operator token file {path} is empty")
    return token


def _option_of(name: str, sent: Collection[str], flags: Mapping[str, str]) -> str:
    """The command's option for the query parameter or body field ``name`` the server named:
    ``flags[name]`` (``from`` is ``--since``), else ``--name`` for one the command sent, else
    the server's name."""
    if name in flags:
        return flags[name]
    return "--" + name.replace("_", "-") if name in sent else name


async def request(
    method: str,
    url: str,
    headers: dict[str, str],
    *,
    params: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
    hint_401: str | None = None,
    flags: Mapping[str, str] | None = None,
) -> Any:
    """One call to a running server; a non-200 answer becomes a UserError with its detail
    (and ``hint_401`` after a 401). A parameter or field the answer names is said as the
    command's option that gave it (``flags``: parameter -> option where the names differ)."""
    # A byte the shell passed that is not UTF-8 is a lone surrogate in argv: aiohttp dropped it
    # from a query (`--rule 'ab\xff'` listed rule `ab`), and a body's made the server fail.
    for name, value in [*(params or {}).items(), *(body or {}).items()]:
        if isinstance(value, str) and has_lone_surrogate(value):
            option = _option_of(name, [name], flags or {})
            raise BadUsage(
                f"{option}: not UTF-8 text (a byte the shell passed is not UTF-8); nothing was sent"
            )
    _check_length(url, params or {}, flags or {})
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
            where = ""
            if isinstance(parameter, str) and parameter:
                sent = [*(params or {}), *(body or {})]
                where = f" ({_option_of(parameter, sent, flags or {})})"
                if isinstance(detail, str):
                    # Some details start with the server's name for it ("from: ...").
                    detail = detail.removeprefix(f"{parameter}: ")
            message = f"{url}: HTTP {response.status}{where}: {detail or response.reason or ''}"
            if response.status == 401 and hint_401:
                message = f"{message.rstrip()}; {hint_401}"
            raise UserError(message.rstrip())
        return data


class Interrupted(UserError):
    """Ctrl-C while a request that changes something (not a GET) was on its way: the server
    may or may not have acted on it (exit 1, as click's Abort); click said only "Aborted!"."""


# The most of a request's path and query the CLI sends: aiohttp's server reads a request line
# of at most 8190 bytes and answers a longer one with a bare "400 Bad Request".
MAX_TARGET_BYTES = 8000


def _check_length(url: str, params: Mapping[str, str], flags: Mapping[str, str]) -> None:
    """BadUsage naming the longest query parameter's option when ``url`` with ``params`` is
    longer than the server reads (``MAX_TARGET_BYTES``): a filter pasted by mistake (a whole
    file) came back as "HTTP 400: Bad Request", with nothing to say which option to fix."""
    # As aiohttp writes it, near enough: the path, then the query percent-encoded.
    query = urlencode(params, quote_via=quote)
    if len(urlsplit(url).path) + 1 + len(query) <= MAX_TARGET_BYTES:
        return
    longest = max(params, key=lambda name: len(params[name]), default=None)
    option = _option_of(longest, [longest], flags) if longest else "the request"
    size = f"{len(params[longest]):,} characters" if longest else "too long"
    raise BadUsage(
        f"{option}: {size}, longer than a server reads in a URL ({MAX_TARGET_BYTES:,} bytes"
        " in all); nothing was sent"
    )


def call_server(
    settings: Settings,
    url: str | None,
    path: str,
    method: str = "GET",
    *,
    answer: tuple[str, type],
    check: str | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """``request`` to an operator endpoint ``path`` of the server ``operator_target`` picks,
    on its own event loop: its answer, a JSON object holding ``answer`` (key, type: ``("runs",
    list)``). Raises UserError when the server cannot be reached (``cannot reach the service
    at URL: connection refused``), answers an error, or answers something else: a 200 of
    another service at that address was taken for remediator's (``pause`` said "automation
    paused until resume" on any of them). Ctrl-C during a request other than a GET raises
    Interrupted, which says the server may have acted on it and ``check`` (the command that
    tells)."""
    import aiohttp

    base, headers, hint = operator_target(settings, url)
    endpoint = base.rstrip("/") + path
    if not headers:
        _warn_once(f"warning: no operator token was sent to {base}: {hint}")
    try:
        data = asyncio.run(request(method, endpoint, headers, hint_401=hint, **kwargs))
    except aiohttp.ClientConnectorCertificateError as exc:
        raise UserError(
            f"cannot reach the service at {base}: its TLS certificate is not trusted"
            f" ({exc.certificate_error})"
        ) from None
    except aiohttp.ClientConnectorError as exc:
        # aiohttp's own text names its connection key ("... ssl:default [...]"), not the cause.
        raise UserError(f"cannot reach the service at {base}: {_unreachable(exc)}") from None
    except aiohttp.ClientError as exc:
        raise UserError(f"{endpoint}: {exc}") from None
    except TimeoutError:
        raise UserError(f"{endpoint}: no answer within {TIMEOUT_S}s") from None
    except KeyboardInterrupt:
        if method == "GET":
            raise
        told = f": {check} tells" if check else ""
        raise Interrupted(
            f"interrupted before {endpoint} answered: the server may or may not have done it{told}"
        ) from None
    key, kind = answer
    if not isinstance(data, dict) or not isinstance(data.get(key), kind):
        raise UserError(
            f"{endpoint}: the answer holds no {key!r} as remediator's does: is it the remediator"
            f" service at {base}? Nothing is known to be done"
        )
    return data


def _unreachable(exc: Any) -> str:
    """Why a connection failed (``exc`` an aiohttp ClientConnectorError), in a few words."""
    import aiohttp

    error = exc.os_error
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"cannot resolve {exc.host} ({error.strerror or error})"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, TimeoutError):
        return "no answer to the connection"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS failed ({error})"
    return str(error.strerror or error)


def query_params(options: Mapping[str, Any]) -> dict[str, str]:
    """The filter options that were given (not None) as query parameters: text, with
    booleans as ``true``/``false`` as the server reads them."""
    return {
        name: str(value).lower() if isinstance(value, bool) else str(value)
        for name, value in options.items()
        if value is not None
    }
