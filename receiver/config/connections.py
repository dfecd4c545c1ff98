"""Named connections the actions use: PostgreSQL databases, Redis queues, HTTP endpoints and
notification channels. Validated at start-up; secrets only ever come from files.

YAML (each map may also be given as JSON in its ``REMEDIATOR_*`` variable)::

    postgres:
      databases:
        orders: {dsn_file: /run/secrets/orders-dsn}
    redis:
      queues:
        jobs:                                  # a Redis connection
          url_file: /run/secrets/jobs-redis-url
          queues:
            emails: {layout: list, key: emails, dead_letter_key: emails:dead}
    http:
      endpoints:
        cache_flush:
          url: https://cache.internal/flush
          header_files: {Authorization: /run/secrets/cache-auth}
    notify:
      channels:
        oncall: {kind: slack, url_file: /run/secrets/slack-webhook}

A name (database, connection, queue, endpoint, channel) follows ``names.connection_name_errors``:
it is what a target or a rule names, never a URL or a Redis key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from receiver import durations
from remediations import names
from remediations.notify.message import ChannelKind
from remediations.redis_queue.queues import End, Layout, QueueSpec

__all__ = [
    "HttpEndpointConfig",
    "NotifyChannelConfig",
    "PostgresDatabaseConfig",
    "RedisConnectionConfig",
    "RedisQueueConfig",
    "check_names",
    "check_url",
    "clear_header",
    "clear_url",
    "json_map",
    "read_connection_secrets",
    "url_origin",
]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _from_file_only(value: object) -> object:
    # The fields holding secrets are filled from their *_file at load (model_copy, which does
    # not validate); a value written in the configuration itself is refused.
    if value not in (None, {}):
        raise ValueError("secrets come from files only: give the *_file key instead")
    return value


def _seconds(value: object, info: ValidationInfo) -> float:
    # Written by a user (load_settings' context, as for every other setting): Prometheus
    # notation with its unit, `timeout: 10` refused (seconds or minutes?). From code (tests):
    # a number is seconds.
    written = isinstance(info.context, Mapping) and info.context.get("written") is True
    if not written and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return durations.parse_duration(value)


def json_map(value: object) -> object:
    """A map given as a JSON string (from an environment variable) as a dict."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise ValueError(f"not a JSON object: {exc}") from None
    return value


def check_names(value: dict[str, Any], what: str) -> dict[str, Any]:
    """``value`` when every key is a valid configured name; ValueError naming the first bad."""
    for name in value:
        problems = names.connection_name_errors(name)
        if problems:
            raise ValueError(f"{what} name {name!r}: {'; '.join(problems)}")
    return value


class PostgresDatabaseConfig(_Strict):
    """``postgres.databases.<name>``: ``dsn_file`` holds a libpq URL for the least-privilege role
    (see the README); ``dsn`` is filled from it at load and is never written in YAML."""

    dsn_file: Path
    dsn: SecretStr | None = Field(default=None, exclude=True)
    statement_timeout: float = 10.0
    timeout: float = 10.0  # connecting, and each call, on the client side
    max_connections: int = Field(default=2, ge=1, le=20)

    _dsn_from_file = field_validator("dsn", mode="before")(_from_file_only)

    @field_validator("statement_timeout", "timeout", mode="before")
    @classmethod
    def _durations(cls, value: object, info: ValidationInfo) -> float:
        return _seconds(value, info)


class RedisQueueConfig(_Strict):
    """One queue under a Redis connection; the keys each layout needs are in the README."""

    layout: Layout
    key: str = Field(min_length=1)
    dead_letter_key: str = ""
    group: str = ""
    pop: End = End.RIGHT
    push: End = End.LEFT
    job_key_prefix: str = "rq:job:"

    @field_validator("pop", "push", mode="before")
    @classmethod
    def _end(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _fits_layout(self) -> RedisQueueConfig:
        self.spec()  # raises ValueError when the keys do not fit the layout
        return self

    def spec(self) -> QueueSpec:
        return QueueSpec(
            layout=self.layout,
            key=self.key,
            dead_letter_key=self.dead_letter_key,
            group=self.group,
            pop=self.pop,
            push=self.push,
            job_key_prefix=self.job_key_prefix,
        )


class RedisConnectionConfig(_Strict):
    """``redis.queues.<connection>``: the URL (from ``url_file``) and the queues under it."""

    url_file: Path
    url: SecretStr | None = Field(default=None, exclude=True)
    queues: dict[str, RedisQueueConfig] = Field(min_length=1)

    _url_from_file = field_validator("url", mode="before")(_from_file_only)

    @field_validator("queues")
    @classmethod
    def _queue_names(cls, value: dict[str, RedisQueueConfig]) -> dict[str, RedisQueueConfig]:
        return check_names(value, "queue")


class HttpEndpointConfig(_Strict):
    """``http.endpoints.<name>``: the URL (``url``, or ``url_file`` when it holds a secret),
    headers (``header_files`` for secret values), and how hard a call is tried."""

    url: str | None = None
    url_file: Path | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    header_files: dict[str, Path] = Field(default_factory=dict)
    timeout: float = 10.0
    attempts: int = Field(default=4, ge=1, le=10)
    max_retry_after: float = 30.0

    # Filled at load from url_file and header_files; never written in YAML.
    secret_url: SecretStr | None = Field(default=None, exclude=True)
    secret_headers: dict[str, SecretStr] = Field(default_factory=dict, exclude=True)

    _secrets_from_files = field_validator("secret_url", "secret_headers", mode="before")(
        _from_file_only
    )

    @field_validator("timeout", "max_retry_after", mode="before")
    @classmethod
    def _durations(cls, value: object, info: ValidationInfo) -> float:
        return _seconds(value, info)

    @model_validator(mode="after")
    def _one_url(self) -> HttpEndpointConfig:
        if (self.url is None) == (self.url_file is None):
            raise ValueError("give exactly one of url and url_file")
        if self.url is not None:
            clear_url(check_url(self.url), instead="give it in url_file")
        for header, value in self.headers.items():
            clear_header(header, value)
        clash = set(self.headers) & set(self.header_files)
        if clash:
            raise ValueError(f"headers and header_files both set {', '.join(sorted(clash))}")
        return self


class NotifyChannelConfig(_Strict):
    """``notify.channels.<name>``: ``kind`` (slack or webhook) and ``url_file`` (the webhook
    URL is a credential, so it comes from a file only)."""

    kind: ChannelKind
    url_file: Path
    timeout: float = 5.0
    attempts: int = Field(default=3, ge=1, le=10)

    url: SecretStr | None = Field(default=None, exclude=True)  # filled from url_file at load

    _url_from_file = field_validator("url", mode="before")(_from_file_only)

    @field_validator("timeout", mode="before")
    @classmethod
    def _durations(cls, value: object, info: ValidationInfo) -> float:
        return _seconds(value, info)


def check_url(url: str) -> str:
    """``url`` when it is http(s)://host...; ValueError otherwise (without echoing it)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the URL must be http:// or https:// with a host")
    return url


# Query parameters that carry a credential by their name (token, access_token, api_key,
# X-Amz-Signature, sig, password, ...): a URL holding one is a secret.
_SECRET_WORD = re.compile(r"token|secret|pass|pwd|key|sig|auth|cred|session", re.IGNORECASE)
# Names that say nothing of a credential but carry one in the query only: Azure Functions'
# function key is ``code``; signed URLs use ``hmac``, ``jwt``, ``bearer``, ``otp``.
_SECRET_PARAM = re.compile(r"^(code|otp|ticket)$|hmac|jwt|bearer|signed", re.IGNORECASE)

# Hosts whose URL path is the credential itself (whoever has the URL can post to the channel):
# (what it is, host pattern, path pattern), matched on the lowercase host and the path.
_PATH_CREDENTIAL = (
    ("a Slack webhook", re.compile(r"hooks\.slack(-gov)?\.com"), re.compile(r"/")),
    (
        "a Discord webhook",
        re.compile(r"((ptb|canary)\.)?discord(app)?\.com"),
        re.compile(r"/api(/v\d+)?/webhooks/", re.IGNORECASE),
    ),
    ("a Microsoft Teams webhook", re.compile(r".+\.webhook\.office\.com"), re.compile(r"/")),
    (
        "a Microsoft Teams webhook",
        re.compile(r"outlook\.office(365)?\.com"),
        re.compile(r"/webhook(b2)?/", re.IGNORECASE),
    ),
    ("a Zapier webhook", re.compile(r"hooks\.zapier\.com"), re.compile(r"/")),
    ("an IFTTT webhook", re.compile(r"maker\.ifttt\.com"), re.compile(r"/")),
    ("a Telegram bot URL", re.compile(r"api\.telegram\.org"), re.compile(r"/bot", re.IGNORECASE)),
    (
        "a Feishu/Lark bot webhook",
        re.compile(r"open\.(feishu\.cn|larksuite\.com)"),
        re.compile(r"/open-apis/bot/", re.IGNORECASE),
    ),
    # Self-hosted, so any host: Mattermost's hook id (26 characters), Rocket.Chat's id/token.
    ("a Mattermost webhook", re.compile(r".+"), re.compile(r"/hooks/[a-z0-9]{26}/?$")),
    (
        "a Rocket.Chat webhook",
        re.compile(r".+"),
        re.compile(r"/hooks/[A-Za-z0-9]{17}/[A-Za-z0-9]{48}/?$"),
    ),
)


def _path_credential(host: str, path: str) -> str | None:
    """What kind of URL ``host`` and ``path`` make when the path is a credential, else None."""
    for what, hosts, paths in _PATH_CREDENTIAL:
        if hosts.fullmatch(host) and paths.match(path):
            return what
    return None


def clear_url(url: str, *, instead: str) -> str:
    """``url`` when it holds no credential: no ``user:password@``, no fragment (``#token=``
    of an OAuth implicit grant), no query parameter whose name says it carries one (``token``,
    ``api_key``, ``sig``, ``code``, ...), and not a chat webhook whose path is the credential
    (``hooks.slack.com``, Discord's ``/api/webhooks/``, Teams, Zapier, ...). A URL written in
    the configuration itself is logged and may be kept in records, so one holding a secret is
    refused: ValueError saying ``instead`` (what to do), never quoting the URL."""
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"the URL holds credentials (user:password@); {instead}")
    if parts.fragment or url.endswith("#"):
        raise ValueError(f"the URL has a fragment (#...), where tokens are passed; {instead}")
    for name, _ in parse_qsl(parts.query, keep_blank_values=True):
        if _SECRET_WORD.search(name) or _SECRET_PARAM.search(name):
            raise ValueError(f"the URL's query parameter {name!r} holds a secret; {instead}")
    what = _path_credential((parts.hostname or "").rstrip("."), parts.path)
    if what is not None:
        raise ValueError(f"the URL is {what}, whose path is its credential; {instead}")
    return url


def url_origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: how a record names an endpoint's URL. Never the
    userinfo, path, query or fragment, where a credential the checks above miss would sit."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:  # an IPv6 address is written in brackets
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # not a number: say nothing of it
        port = None
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


# A header value in an HTTP authentication scheme's form (RFC 9110 section 11: `Bearer x`,
# `Basic x`, `token x`, ...), whatever the header is called.
_CREDENTIAL_VALUE = re.compile(
    r"\s*(?:bearer|basic|digest|token|apikey|api-key|hmac|aws4-hmac-sha256|negotiate)\s+\S",
    re.IGNORECASE,
)


def clear_header(name: str, value: str = "") -> str:
    """``name`` when a header of that name, with ``value``, may be written in the
    configuration itself; a credential-bearing one is refused: by its name (``Authorization``,
    ``Cookie``, ``X-Api-Key``, ...) or by its value (``X-Custom: Bearer ...``, a custom header
    carrying a token). ValueError pointing to ``header_files``, never quoting the value."""
    if name.lower() == "cookie" or _SECRET_WORD.search(name):
        raise ValueError(
            f"header {name!r} carries a credential: give it in header_files (read from a file)"
        )
    if _CREDENTIAL_VALUE.match(value):
        raise ValueError(
            f"header {name!r} holds a credential (an authentication scheme and its value): "
            "give it in header_files (read from a file)"
        )
    return name


SecretReader = Callable[[Path, str], SecretStr]


def read_connection_secrets(
    *,
    postgres: dict[str, PostgresDatabaseConfig],
    redis: dict[str, RedisConnectionConfig],
    http: dict[str, HttpEndpointConfig],
    notify: dict[str, NotifyChannelConfig],
    read: SecretReader,
) -> dict[str, Any]:
    """Each connection with its secrets read from their files, as a ``Settings`` update.

    ``read(path, key)`` reads one secret file and raises ConfigError naming ``key`` (the YAML
    path, e.g. ``postgres.databases.orders.dsn_file``).
    """
    update: dict[str, Any] = {}
    if postgres:
        update["postgres_databases"] = {
            name: db.model_copy(
                update={"dsn": read(db.dsn_file, f"postgres.databases.{name}.dsn_file")}
            )
            for name, db in postgres.items()
        }
    if redis:
        update["redis_queues"] = {
            name: conn.model_copy(
                update={"url": read(conn.url_file, f"redis.queues.{name}.url_file")}
            )
            for name, conn in redis.items()
        }
    if http:
        endpoints = {}
        for name, endpoint in http.items():
            key = f"http.endpoints.{name}"
            secret_url = None
            if endpoint.url_file is not None:
                secret_url = read(endpoint.url_file, f"{key}.url_file")
                try:
                    check_url(secret_url.get_secret_value())
                except ValueError as exc:
                    raise ValueError(f"{key}.url_file: {exc}") from None
            headers = {
                header: read(path, f"{key}.header_files.{header}")
                for header, path in endpoint.header_files.items()
            }
            endpoints[name] = endpoint.model_copy(
                update={"secret_url": secret_url, "secret_headers": headers}
            )
        update["http_endpoints"] = endpoints
    if notify:
        channels = {}
        for name, channel in notify.items():
            key = f"notify.channels.{name}.url_file"
            url = read(channel.url_file, key)
            try:
                check_url(url.get_secret_value())
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
            channels[name] = channel.model_copy(update={"url": url})
        update["notify_channels"] = channels
    return update
