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
          ca_file: /etc/ssl/private-ca.pem     # its server's certificate's CA (a private one)
    notify:
      channels:
        oncall: {kind: slack, url_file: /run/secrets/slack-webhook}

A name (database, connection, queue, endpoint, channel) follows ``names.connection_name_errors``:
it is what a target or a rule names, never a URL or a Redis key.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
from receiver.config.inline import check_url, clear_header, clear_url
from receiver.config.redact import misread
from receiver.config.values import duration, written
from remediations import names
from remediations.notify.message import ChannelKind
from remediations.params import Integer
from remediations.redis_queue.queues import End, Layout, QueueSpec
from remediations.tls import ca_context

__all__ = [
    "CONNECTION_KEYS",
    "HttpEndpointConfig",
    "NotifyChannelConfig",
    "PostgresDatabaseConfig",
    "RedisConnectionConfig",
    "RedisQueueConfig",
    "check_names",
    "json_map",
    "read_connection_secrets",
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
    if not written(info) and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return durations.parse_duration(value)


# What JSON calls what json.loads gives, for the refusal of a map that is not an object.
_JSON_KINDS: dict[type, str] = {
    list: "an array",
    str: "a string",
    bool: "true or false",
    type(None): "null",
}


def json_map(value: object) -> object:
    """A map given as a JSON string (from an environment variable) as a dict. An empty or blank
    one is refused saying so (a template's variable left empty read as "Expecting value: line
    1 column 1", as if its JSON were wrong), and so is JSON that is not an object."""
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("empty: give a JSON object ({} for none), or leave the setting out")
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"not a JSON object: {exc}") from None
        if not isinstance(parsed, dict):
            # pydantic said "Input should be a valid dictionary" of text the user wrote.
            kind = _JSON_KINDS.get(type(parsed), "a number")
            raise ValueError(f'not a JSON object but {kind}: write {{"<name>": {{...}}}}')
        return parsed
    return value


def check_names(value: dict[str, Any], what: str) -> dict[str, Any]:
    """``value`` when every key is a valid configured name; ValueError naming the first bad."""
    for name in value:
        problems = names.connection_name_errors(name)
        if problems:
            raise ValueError(f"{what} name {name!r}: {'; '.join(problems)}")
    return value


# Where a client-side timeout of a call may lie (seconds): an HTTP call's, a notification's, a
# PostgreSQL connection's. aiohttp reads 0 as "no time limit", so `timeout: 0s` let a call that
# is never answered hold its step for ever.
_CALL_TIMEOUT_BOUNDS = (0.1, durations.MAX_DURATION_S)

# Where a PostgreSQL connection's timeouts may lie (seconds). PostgreSQL reads 0 as "no
# timeout" and keeps statement_timeout in milliseconds in an int: 0s became 1 ms here, so each
# statement was cancelled, or one that signals part way through; past 2^31 - 1 ms the server
# refuses every connection ("Value exceeds integer range"). 3w3d (24d) is under it.
_POSTGRES_TIMEOUT_BOUNDS: dict[str, tuple[float, float]] = {
    "statement_timeout": (0.1, 24 * 86400.0),
    "timeout": _CALL_TIMEOUT_BOUNDS,
}


class PostgresDatabaseConfig(_Strict):
    """``postgres.databases.<name>``: ``dsn_file`` holds a libpq URL for the least-privilege role
    (see the README); ``dsn`` is filled from it at load and is never written in YAML. Its
    timeouts lie within ``_POSTGRES_TIMEOUT_BOUNDS``."""

    dsn_file: Path
    dsn: SecretStr | None = Field(default=None, exclude=True)
    statement_timeout: float = 10.0
    timeout: float = 10.0  # connecting, and each call, on the client side
    max_connections: Integer = Field(default=2, ge=1, le=20)

    _dsn_from_file = field_validator("dsn", mode="before")(_from_file_only)

    @field_validator(*_POSTGRES_TIMEOUT_BOUNDS, mode="before")
    @classmethod
    def _durations(cls, value: object, info: ValidationInfo) -> float:
        bounds = _POSTGRES_TIMEOUT_BOUNDS[str(info.field_name)]
        return duration(value, bounds, written=written(info), spelled={})


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


def _call_timeout(value: object, info: ValidationInfo) -> float:
    return duration(
        value,
        _CALL_TIMEOUT_BOUNDS,
        written=written(info),
        spelled={durations.MAX_DURATION_S: "a year"},
    )


def _ca_file(value: Path | None) -> Path | None:
    """``ca_file``: the PEM CA certificates a server's certificate is checked against instead
    of the system's (a private CA). Loaded now as the client will (``remediations.tls``): a
    missing file or one holding no PEM certificate is refused at start, not met by every call
    as a TLS failure."""
    if value is not None:
        ca_context(value)
    return value


class HttpEndpointConfig(_Strict):
    """``http.endpoints.<name>``: the URL (``url``, or ``url_file`` when it holds a secret),
    headers (``header_files`` for secret values), how hard a call is tried, and the CA bundle
    its certificate is checked against (``ca_file``; the system's CAs without it)."""

    url: str | None = None
    url_file: Path | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    header_files: dict[str, Path] = Field(default_factory=dict)
    timeout: float = 10.0
    attempts: Integer = Field(default=4, ge=1, le=10)
    max_retry_after: float = 30.0
    ca_file: Path | None = None

    # Filled at load from url_file and header_files; never written in YAML.
    secret_url: SecretStr | None = Field(default=None, exclude=True)
    secret_headers: dict[str, SecretStr] = Field(default_factory=dict, exclude=True)

    _secrets_from_files = field_validator("secret_url", "secret_headers", mode="before")(
        _from_file_only
    )
    _ca = field_validator("ca_file")(_ca_file)

    @field_validator("timeout", "max_retry_after", mode="before")
    @classmethod
    def _durations(cls, value: object, info: ValidationInfo) -> float:
        if info.field_name == "timeout":
            return _call_timeout(value, info)
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
    """``notify.channels.<name>``: ``kind`` (slack or webhook), ``url_file`` (the webhook
    URL is a credential, so it comes from a file only) and ``ca_file`` as an endpoint's."""

    kind: ChannelKind
    url_file: Path
    timeout: float = 5.0
    attempts: Integer = Field(default=3, ge=1, le=10)
    ca_file: Path | None = None

    url: SecretStr | None = Field(default=None, exclude=True)  # filled from url_file at load

    _url_from_file = field_validator("url", mode="before")(_from_file_only)
    _ca = field_validator("ca_file")(_ca_file)

    @field_validator("timeout", mode="before")
    @classmethod
    def _durations(cls, value: object, info: ValidationInfo) -> float:
        return _call_timeout(value, info)


SecretReader = Callable[[Path, str], SecretStr]


# The keys a connection of each kind takes (not those filled from its files at load), by its
# class's name, as pydantic's errors name the class (``receiver.rules.shapes``).
CONNECTION_KEYS = {
    model.__name__: tuple(name for name, f in model.model_fields.items() if not f.exclude)
    for model in (
        PostgresDatabaseConfig,
        RedisConnectionConfig,
        RedisQueueConfig,
        HttpEndpointConfig,
        NotifyChannelConfig,
    )
}


def _readable(read: SecretReader, path: Path, key: str) -> SecretStr:
    """The URL in the file at ``path`` (``key``), refused when its password would be misread
    (``config.redact.misread``): the client's error would quote part of it, and a step's
    message carrying it would go into the audit log."""
    url = read(path, key)
    kind = "PostgreSQL" if key.startswith("postgres.") else "Redis"
    if (misreading := misread(kind, url.get_secret_value())) is not None:
        raise ValueError(f"{key}: {misreading}")
    return url


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
                update={"dsn": _readable(read, db.dsn_file, f"postgres.databases.{name}.dsn_file")}
            )
            for name, db in postgres.items()
        }
    if redis:
        update["redis_queues"] = {
            name: conn.model_copy(
                update={"url": _readable(read, conn.url_file, f"redis.queues.{name}.url_file")}
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
