"""Where settings come from: one YAML file plus ``REMEDIATOR_*`` environment variables.

Every setting has one YAML path (``http.max_body_bytes``) and one environment variable
(``REMEDIATOR_MAX_BODY_BYTES``); the variable wins. Errors name the key the user wrote, so the
message says what to fix. Secrets read from files are stripped and kept as ``SecretStr``, so they
never show up in ``repr()`` or logs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from receiver.config.connections import CONNECTION_KEYS, read_connection_secrets
from receiver.config.files import read_file, read_secret, secret_files
from receiver.config.operators import check_basic, check_bearer, read_operator_tokens
from receiver.config.pooler import check_database
from receiver.config.redis_mode import check_redis
from receiver.config.redis_tls import check_tls_files
from receiver.config.settings import WRITTEN, ConfigError, Settings
from receiver.config.settings_file import read_settings_file
from receiver.config.values import escaped, host_problem, unknown_key_error, unstorable_keys
from receiver.config.variables import ENV_PREFIX, unknown_variables
from receiver.rules.shapes import shape_message
from receiver.rules.yaml_lines import KeyPath
from receiver.rules.yaml_loaders import boolean_word
from receiver.text import shown

__all__ = [
    "ENV_PREFIX",
    "KEYS",
    "Key",
    "kube_credentials_present",
    "load_settings",
    "named",
    "read_file",
    "read_secret",
    "secret_files",
]

IN_CLUSTER_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


@dataclass(frozen=True, slots=True)
class Key:
    """One setting: its field on Settings, its YAML path and its environment variable."""

    field: str
    yaml: str
    env: str

    @property
    def named(self) -> str:
        """How a message names the setting when the user wrote neither (or the service no
        longer knows which): both, ``database.direct_url (REMEDIATOR_DATABASE_DIRECT_URL)``."""
        return f"{self.yaml} ({self.env})"


def _key(field: str, yaml_path: str, env: str | None = None) -> Key:
    return Key(field, yaml_path, ENV_PREFIX + (env or field.upper()))


# The single table of every setting. The README's configuration table lists the same keys;
# tests/unit/test_config.py checks that the two agree.
KEYS: tuple[Key, ...] = (
    _key("database_url", "database_url"),
    _key("database_pooler", "database.pooler", "DATABASE_POOLER"),
    _key("database_direct_url", "database.direct_url", "DATABASE_DIRECT_URL"),
    _key("redis_url", "redis_url"),
    _key("redis_mode", "redis.mode", "REDIS_MODE"),
    _key("redis_sentinels", "redis.sentinel.addresses", "REDIS_SENTINELS"),
    _key("redis_sentinel_master", "redis.sentinel.master", "REDIS_SENTINEL_MASTER"),
    _key("redis_password", "redis.password", "REDIS_PASSWORD"),
    _key("redis_password_file", "redis.password_file", "REDIS_PASSWORD_FILE"),
    _key("redis_sentinel_password", "redis.sentinel.password", "REDIS_SENTINEL_PASSWORD"),
    _key(
        "redis_sentinel_password_file",
        "redis.sentinel.password_file",
        "REDIS_SENTINEL_PASSWORD_FILE",
    ),
    _key("redis_sentinel_tls", "redis.sentinel.tls", "REDIS_SENTINEL_TLS"),
    _key("redis_tls_ca_file", "redis.tls.ca_file", "REDIS_TLS_CA_FILE"),
    _key("redis_tls_cert_file", "redis.tls.cert_file", "REDIS_TLS_CERT_FILE"),
    _key("redis_tls_key_file", "redis.tls.key_file", "REDIS_TLS_KEY_FILE"),
    _key("webhook_token", "auth.token", "WEBHOOK_TOKEN"),
    _key("webhook_token_file", "auth.token_file", "WEBHOOK_TOKEN_FILE"),
    _key("webhook_username", "auth.username", "WEBHOOK_USERNAME"),
    _key("webhook_password", "auth.password", "WEBHOOK_PASSWORD"),
    _key("webhook_password_file", "auth.password_file", "WEBHOOK_PASSWORD_FILE"),
    _key("allow_unauthenticated", "auth.allow_unauthenticated", "ALLOW_UNAUTHENTICATED"),
    _key("operator_tokens_dir", "auth.operator_tokens_dir", "OPERATOR_TOKENS_DIR"),
    _key("operator_token", "client.operator_token", "OPERATOR_TOKEN"),
    _key("operator_token_file", "client.operator_token_file", "OPERATOR_TOKEN_FILE"),
    _key("rules_dir", "rules_dir"),
    _key("data_dir", "data_dir"),
    _key("dry_run", "dry_run", "DRY_RUN"),
    _key("kubeconfig", "kubernetes.kubeconfig", "KUBECONFIG"),
    _key("namespace_allow", "namespaces.allow", "NAMESPACE_ALLOW"),
    _key("namespace_deny", "namespaces.deny", "NAMESPACE_DENY"),
    _key("host", "http.host", "HOST"),
    _key("port", "http.port", "PORT"),
    _key("max_body_bytes", "http.max_body_bytes", "MAX_BODY_BYTES"),
    _key("readiness_timeout_seconds", "http.readiness_timeout", "READINESS_TIMEOUT"),
    _key("read_timeout_seconds", "http.read_timeout", "READ_TIMEOUT"),
    _key("worker_concurrency", "worker.concurrency", "WORKER_CONCURRENCY"),
    _key("worker_processes", "worker.processes", "WORKER_PROCESSES"),
    _key("worker_lease_seconds", "worker.lease", "WORKER_LEASE"),
    _key("worker_poll_interval_seconds", "worker.poll_interval", "WORKER_POLL_INTERVAL"),
    _key("worker_max_attempts", "worker.max_attempts", "WORKER_MAX_ATTEMPTS"),
    _key("worker_shutdown_grace_seconds", "worker.shutdown_grace", "WORKER_SHUTDOWN_GRACE"),
    _key("budget_count", "guards.budget.count", "BUDGET_COUNT"),
    _key("budget_window_seconds", "guards.budget.window", "BUDGET_WINDOW"),
    _key("breaker_failures", "guards.breaker.failures", "BREAKER_FAILURES"),
    _key("breaker_window_seconds", "guards.breaker.window", "BREAKER_WINDOW"),
    _key("breaker_open_for_seconds", "guards.breaker.open_for", "BREAKER_OPEN_FOR"),
    _key("lock_ttl_seconds", "guards.lock_ttl", "LOCK_TTL"),
    _key("event_retention_seconds", "store.event_retention", "EVENT_RETENTION"),
    _key("late_delivery_window_seconds", "intake.late_delivery_window", "LATE_DELIVERY_WINDOW"),
    _key("intake_timeout_seconds", "intake.timeout", "INTAKE_TIMEOUT"),
    _key("log_level", "log.level", "LOG_LEVEL"),
    _key("log_format", "log.format", "LOG_FORMAT"),
    # Maps of named connections: YAML, or JSON in the variable.
    _key("postgres_databases", "postgres.databases", "POSTGRES_DATABASES"),
    _key("redis_queues", "redis.queues", "REDIS_QUEUES"),
    _key("http_endpoints", "http.endpoints", "HTTP_ENDPOINTS"),
    _key("notify_channels", "notify.channels", "NOTIFY_CHANNELS"),
    _key("external_url", "external_url", "EXTERNAL_URL"),
    _key("refusal_digest_seconds", "announcements.refusal_digest", "REFUSAL_DIGEST"),
    _key("approval_keys_dir", "approvals.keys_dir", "APPROVAL_KEYS_DIR"),
    _key("approval_ttl_seconds", "approvals.ttl", "APPROVAL_TTL"),
    _key("approvers_file", "approvals.approvers_file", "APPROVERS_FILE"),
    _key("sso_user_header", "approvals.sso.user_header", "SSO_USER_HEADER"),
    _key("sso_trusted_proxies", "approvals.sso.trusted_proxies", "SSO_TRUSTED_PROXIES"),
    _key(
        "slack_signing_secret_file",
        "approvals.slack.signing_secret_file",
        "SLACK_SIGNING_SECRET_FILE",
    ),
    _key("slack_team_ids", "approvals.slack.team_ids", "SLACK_TEAM_IDS"),
    _key("approval_notify_channel", "approvals.notify_channel", "APPROVAL_NOTIFY_CHANNEL"),
    _key("incident_gap_seconds", "review.incident_gap", "INCIDENT_GAP"),
    _key("unreachable_retry_seconds", "actions.unreachable_retry_for", "UNREACHABLE_RETRY_FOR"),
    _key(
        "undo_unreachable_retry_seconds",
        "actions.undo_unreachable_retry_for",
        "UNDO_UNREACHABLE_RETRY_FOR",
    ),
)
_BY_FIELD = {k.field: k for k in KEYS}
_BY_YAML = {k.yaml: k for k in KEYS}
_BY_ENV = {k.env: k for k in KEYS}


def load_settings(config_file: Path | None, environ: Mapping[str, str]) -> Settings:
    """Read ``config_file`` (optional), overlay ``REMEDIATOR_*`` variables, validate, read secrets.

    Raises ConfigError naming the YAML key or variable at fault (an unknown ``REMEDIATOR_*`` too).
    """
    raw: dict[str, Any] = {}
    source: dict[str, str] = {}  # field -> the key the user wrote, for error messages
    words: dict[KeyPath, str] = {}  # the file's booleans written `on`, `yes`, ..., by path

    if config_file is not None:
        for path, value in read_settings_file(config_file, _BY_YAML, words).items():
            key = _BY_YAML[path]
            raw[key.field] = value
            source[key.field] = path

    # KUBECONFIG is the ecosystem's variable; ours overrides it. A list, as kubectl reads it:
    # the first file there (kubectl skips missing and empty entries; the first alone was taken,
    # and `/gone:~/.kube/config` stopped serve); none there, the first named, refused by name.
    if "KUBECONFIG" in environ and environ["KUBECONFIG"].strip():
        named = [p for p in environ["KUBECONFIG"].split(os.pathsep) if p.strip()] or [""]
        raw["kubeconfig"] = next((p for p in named if Path(p).expanduser().is_file()), named[0])
        source["kubeconfig"] = "KUBECONFIG"

    # A misspelt variable would leave its setting at the default (REMEDIATOR_DRYRUN: live).
    unknown = unknown_variables(environ, _BY_ENV)
    if unknown:
        raise ConfigError("; ".join(unknown))
    for name, value in environ.items():
        env_key = _BY_ENV.get(name)
        if env_key is not None:
            raw[env_key.field] = value
            source[env_key.field] = name

    # Every value read, whatever its field or type, before validation: one check, not one per
    # field (``unstorable_keys`` says why none may hold U+0000 or a byte that is not UTF-8).
    if bad := [
        found for field, value in raw.items() for found in unstorable_keys(value, source[field])
    ]:
        raise ConfigError("; ".join(f"{where}: {problem}" for where, problem in bad))

    try:
        settings = Settings.model_validate(raw, context=WRITTEN)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source, words)) from None

    if problem := host_problem(settings.host, _name(source, "port")):
        raise ConfigError(f"{_name(source, 'host')}: {problem}")
    try:
        check_database(settings, lambda field: _name(source, field), set(source))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return _resolve_secrets(settings, source)


def named(field: str) -> str:
    """How a message names the setting ``field`` when it cannot tell how the user gave it:
    its YAML key and its variable, ``database_url (REMEDIATOR_DATABASE_URL)``. KeyError for a
    field that is no setting."""
    return _BY_FIELD[field].named


def _name(source: Mapping[str, str], field: str) -> str:
    """The setting ``field`` as its error names it: the key the user wrote (``source``: field
    -> YAML path or variable), else both (``Key.named``)."""
    return source.get(field) or _BY_FIELD[field].named


def _describe(exc: ValidationError, source: Mapping[str, str], words: Mapping[KeyPath, str]) -> str:
    lines = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        name = source.get(field) or (_BY_FIELD[field].env if field in _BY_FIELD else field)
        if err["type"] == "extra_forbidden":
            # Quoted as the settings file quotes a key: one that is no key's name may be a
            # secret written in the wrong place (``unknown_key_error``).
            lines.append(unknown_key_error(name, err["loc"], Settings, named=1))
            continue
        if name in _BY_YAML and (
            word := boolean_word(words, (*name.split("."), *err["loc"][1:]), err)
        ):
            # `log.level: on`: pydantic said "Input should be a valid string".
            inside = "".join(f".{escaped(p)}" for p in err["loc"][1:])
            lines.append(f"{name}{inside}: {word}")
            continue
        if field in _MAP_FIELDS and len(err["loc"]) > 1:
            # Inside a map of connections: name the entry and the field, not only the map.
            name += "." + ".".join(escaped(p) for p in err["loc"][1:])
        if (shape := shape_message(err, CONNECTION_KEYS)) is not None:
            # `catcher: http://...` for `catcher: {url: ...}`: pydantic named our class.
            lines.append(f"{name}: {shape}")
            continue
        message = err["msg"].removeprefix("Value error, ")
        if "input" in err and err["type"] not in ("value_error",) and _may_quote(field, err):
            given = err["input"]
            # As YAML writes it: `true`, not Python's True.
            quoted = str(given).lower() if isinstance(given, bool) else shown(given)
            message = f"{message} (got {quoted})"
        lines.append(f"{name}: {message}")
    return "; ".join(lines)


def _may_quote(field: str, err: Any) -> bool:
    """Whether an error may quote the value given: a plain value (no mapping or list) of a field
    holding no secret, and not inside a map of connections, whose URLs carry credentials."""
    plain = isinstance(err["input"], str | int | float | bool) or err["input"] is None
    return plain and field not in _SECRET_FIELDS and field not in _MAP_FIELDS


_SECRET_FIELDS = frozenset(
    {
        "database_url",
        "database_direct_url",
        "redis_url",
        "redis_password",
        "redis_sentinel_password",
        "webhook_token",
        "webhook_password",
        "operator_token",
    }
)
_MAP_FIELDS = frozenset({"postgres_databases", "redis_queues", "http_endpoints", "notify_channels"})


def _resolve_secrets(settings: Settings, source: Mapping[str, str]) -> Settings:
    def name(field: str) -> str:
        return _name(source, field)

    update: dict[str, Any] = {}
    for secret, file_field in (
        ("webhook_token", "webhook_token_file"),
        ("webhook_password", "webhook_password_file"),
        ("operator_token", "operator_token_file"),
        ("redis_password", "redis_password_file"),
        ("redis_sentinel_password", "redis_sentinel_password_file"),
    ):
        path: Path | None = getattr(settings, file_field)
        if path is None:
            continue
        if getattr(settings, secret) is not None:
            raise ConfigError(
                f"{name(secret)} and {name(file_field)} are both set; use only one of them"
            )
        update[secret] = read_secret(path, name(file_field))

    for bearer in ("webhook_token", "operator_token"):
        # A bearer token travels in an HTTP header, which carries no blanks around its value
        # (RFC 9110 5.5: a server reads the header without them): one written " tok " in the
        # variable or the file was never matched, and every webhook was refused. Taken without
        # them, as a secret file is read.
        given = update.get(bearer, getattr(settings, bearer))
        if given is not None and given.get_secret_value() != given.get_secret_value().strip():
            update[bearer] = SecretStr(given.get_secret_value().strip())

    token = update.get("webhook_token", settings.webhook_token)
    if token is not None and not token.get_secret_value().strip():
        raise ConfigError(f"{name('webhook_token')}: must not be empty")
    check_bearer(token, name("webhook_token" + ("_file" if "webhook_token_file" in source else "")))

    operator_token = update.get("operator_token", settings.operator_token)
    if operator_token is not None and not operator_token.get_secret_value().strip():
        raise ConfigError(f"{name('operator_token')}: must not be empty")
    in_file = "operator_token_file" in source
    check_bearer(operator_token, name("operator_token" + ("_file" if in_file else "")))

    password = update.get("webhook_password", settings.webhook_password)
    if settings.operator_tokens_dir is not None:
        operators = read_operator_tokens(settings.operator_tokens_dir, name("operator_tokens_dir"))
        # One credential, one role: no secret of the webhook's (what Alertmanager's
        # configuration holds) may also be an operator's token, which pauses and decides.
        for what, field, held in (
            ("token", "webhook_token", token),
            ("password", "webhook_password", password),
        ):
            if held is None:
                continue
            for operator, value in operators.items():
                if value.get_secret_value() == held.get_secret_value():
                    # The setting the user wrote: the secret's file, when it came from one.
                    given = f"{field}_file" if f"{field}_file" in source else field
                    raise ConfigError(
                        f"{name('operator_tokens_dir')}: operator {operator!r} has the webhook's"
                        f" {what} ({name(given)}); give each role its own"
                    )
        update["operator_tokens"] = operators

    if (settings.webhook_username is None) != (password is None):
        missing = "webhook_password" if password is None else "webhook_username"
        present = "webhook_username" if password is None else "webhook_password"
        raise ConfigError(
            f"{name(missing)}: basic auth needs both a username and a password "
            f"({name(present)} is set)"
        )
    given = "webhook_password_file" if "webhook_password_file" in source else "webhook_password"
    check_basic(settings.webhook_username, password, name("webhook_username"), name(given))
    try:
        update |= read_connection_secrets(
            postgres=settings.postgres_databases,
            redis=settings.redis_queues,
            http=settings.http_endpoints,
            notify=settings.notify_channels,
            read=read_secret,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    resolved = settings.model_copy(update=update) if update else settings

    def written(field: str) -> str:
        # A password read from a file: the user wrote the file's key, not the password's.
        file_field = f"{field}_file"
        if field not in source and file_field in source:
            return name(file_field)
        return name(field)

    try:
        check_redis(resolved, written)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    check_tls_files(resolved, name)
    return resolved


def kube_credentials_present(settings: Settings, environ: Mapping[str, str]) -> bool:
    """True when a kubeconfig or in-cluster service-account credentials can be found."""
    if settings.kubeconfig is not None:
        return settings.kubeconfig.expanduser().is_file()
    if environ.get("KUBERNETES_SERVICE_HOST") and IN_CLUSTER_TOKEN.is_file():
        return True
    home = environ.get("HOME")
    return home is not None and (Path(home) / ".kube" / "config").is_file()
