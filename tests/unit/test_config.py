"""Settings: where they come from (defaults, YAML, REMEDIATOR_* variables, the environment
winning), every documented variable parsed, and the README's table kept in step with them."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from receiver.config import (
    KEYS,
    ConfigError,
    DryRun,
    LogFormat,
    Settings,
    kube_credentials_present,
    load_settings,
)
from receiver.config.settings import WRITTEN
from receiver.model import NamespacePolicy
from receiver.store.events import LATE_DELIVERY_WINDOW_S
from tests.support.config import write


def test_defaults_without_file_or_environment() -> None:
    s = load_settings(None, {})
    assert s.database_url is None
    assert s.redis_url is None
    assert s.webhook_token is None
    assert not s.auth_configured
    assert s.rules_dir == Path("rules")
    assert s.data_dir == Path(".data")
    assert s.dry_run is DryRun.AUTO
    assert s.host == "127.0.0.1"
    assert s.port == 9095
    assert s.max_body_bytes == 16 * 1024 * 1024
    assert s.namespace_allow == ()
    assert s.namespace_deny == ("kube-system", "kube-public", "kube-node-lease")
    assert s.log_level == "info"
    assert s.log_format is LogFormat.JSON
    assert s.late_delivery_window_seconds == LATE_DELIVERY_WINDOW_S  # the one derivation


def test_environment_wins_over_yaml(tmp_path: Path) -> None:
    config = write(
        tmp_path / "config.yaml",
        """
http: {host: 10.0.0.1, port: 8000, max_body_bytes: 4MiB}
rules_dir: /etc/remediator/rules
worker: {concurrency: 2}
""",
    )
    s = load_settings(config, {"REMEDIATOR_PORT": "9100", "REMEDIATOR_WORKER_CONCURRENCY": "6"})
    assert s.host == "10.0.0.1"
    assert s.port == 9100
    assert s.max_body_bytes == 4 * 1024 * 1024
    assert s.rules_dir == Path("/etc/remediator/rules")
    assert s.worker_concurrency == 6


def test_every_documented_variable_is_parsed(tmp_path: Path) -> None:
    token = write(tmp_path / "token", "  s3cret-token \n")
    password = write(tmp_path / "password", "pw\n")
    dsn = write(tmp_path / "dsn", "postgresql://remediator@db/orders\n")
    redis_url = write(tmp_path / "redis-url", "redis://jobs:6379/0\n")
    slack = write(tmp_path / "slack", "https://hooks.slack.example/services/T/B/X\n")
    operators = tmp_path / "operators"
    operators.mkdir()
    write(operators / "alice", "alice-token-0123456789\n")
    mine = write(tmp_path / "my-operator-token", "bob-token-0123456789\n")
    environ = {
        "REMEDIATOR_DATABASE_URL": "postgresql://u:p@db:5432/remediator",
        "REMEDIATOR_REDIS_URL": "redis://redis:6379/0",
        "REMEDIATOR_WEBHOOK_TOKEN_FILE": str(token),
        "REMEDIATOR_WEBHOOK_USERNAME": "alertmanager",
        "REMEDIATOR_WEBHOOK_PASSWORD_FILE": str(password),
        "REMEDIATOR_ALLOW_UNAUTHENTICATED": "yes",
        "REMEDIATOR_OPERATOR_TOKENS_DIR": str(operators),
        "REMEDIATOR_OPERATOR_TOKEN_FILE": str(mine),
        "REMEDIATOR_RULES_DIR": "/rules",
        "REMEDIATOR_DATA_DIR": "/var/lib/remediator",
        "REMEDIATOR_DRY_RUN": "true",
        "REMEDIATOR_KUBECONFIG": "/kube/config",
        "REMEDIATOR_NAMESPACE_ALLOW": "demo, prod",
        "REMEDIATOR_NAMESPACE_DENY": "kube-system",
        "REMEDIATOR_HOST": "10.0.0.1",
        "REMEDIATOR_PORT": "8080",
        "REMEDIATOR_MAX_BODY_BYTES": "1048576",
        "REMEDIATOR_READINESS_TIMEOUT": "5s",
        "REMEDIATOR_READ_TIMEOUT": "1m",
        "REMEDIATOR_WORKER_CONCURRENCY": "16",
        "REMEDIATOR_WORKER_PROCESSES": "2",
        "REMEDIATOR_WORKER_LEASE": "2m",
        "REMEDIATOR_WORKER_POLL_INTERVAL": "500ms",
        "REMEDIATOR_WORKER_MAX_ATTEMPTS": "3",
        "REMEDIATOR_WORKER_SHUTDOWN_GRACE": "45s",
        "REMEDIATOR_BUDGET_COUNT": "5",
        "REMEDIATOR_BUDGET_WINDOW": "30m",
        "REMEDIATOR_BREAKER_FAILURES": "4",
        "REMEDIATOR_BREAKER_WINDOW": "2h",
        "REMEDIATOR_BREAKER_OPEN_FOR": "45m",
        "REMEDIATOR_LOCK_TTL": "5m",
        "REMEDIATOR_EVENT_RETENTION": "7d",
        "REMEDIATOR_LATE_DELIVERY_WINDOW": "90s",
        "REMEDIATOR_INTAKE_TIMEOUT": "3s",
        "REMEDIATOR_LOG_LEVEL": "DEBUG",
        "REMEDIATOR_LOG_FORMAT": "console",
        "REMEDIATOR_POSTGRES_DATABASES": json.dumps({"orders": {"dsn_file": str(dsn)}}),
        "REMEDIATOR_REDIS_QUEUES": json.dumps(
            {
                "jobs": {
                    "url_file": str(redis_url),
                    "queues": {"emails": {"layout": "celery", "key": "e", "dead_letter_key": "d"}},
                }
            }
        ),
        "REMEDIATOR_HTTP_ENDPOINTS": json.dumps({"flush": {"url": "https://cache/flush"}}),
        "REMEDIATOR_NOTIFY_CHANNELS": json.dumps(
            {"oncall": {"kind": "slack", "url_file": str(slack)}}
        ),
        "REMEDIATOR_EXTERNAL_URL": "https://remediator.example/",
        "REMEDIATOR_REFUSAL_DIGEST": "10m",
        "REMEDIATOR_APPROVAL_KEYS_DIR": "/etc/remediator/approval-keys",
        "REMEDIATOR_APPROVAL_TTL": "20m",
        "REMEDIATOR_APPROVERS_FILE": "/etc/remediator/approvers.yaml",
        "REMEDIATOR_SSO_USER_HEADER": "X-Forwarded-User",
        "REMEDIATOR_SSO_TRUSTED_PROXIES": "10.0.0.0/8, ::1",
        "REMEDIATOR_SLACK_SIGNING_SECRET_FILE": "/etc/remediator/slack-signing-secret",
        "REMEDIATOR_SLACK_TEAM_IDS": "T0123ABCD, T0456EFGH",
        "REMEDIATOR_APPROVAL_NOTIFY_CHANNEL": "oncall",
        "REMEDIATOR_INCIDENT_GAP": "45m",
        "REMEDIATOR_UNREACHABLE_RETRY_FOR": "2m",
        "REMEDIATOR_UNDO_UNREACHABLE_RETRY_FOR": "1h",
        "REMEDIATOR_DATABASE_POOLER": "PgBouncer-Transaction",
        "REMEDIATOR_DATABASE_DIRECT_URL": "postgresql://u:p@db-direct:5432/remediator",
    }
    # The table and this test cover the same variables: a new setting needs a line here.
    inline = {
        "REMEDIATOR_WEBHOOK_TOKEN",
        "REMEDIATOR_WEBHOOK_PASSWORD",
        "REMEDIATOR_OPERATOR_TOKEN",
    }
    # Sentinel's settings exclude redis_url, and the TLS files need real certificates:
    # tests/unit/test_redis_config.py parses them.
    inline |= {
        k.env for k in KEYS if k.yaml.startswith(("redis.sentinel", "redis.password", "redis.tls"))
    }
    inline.add("REMEDIATOR_REDIS_MODE")
    assert {k.env for k in KEYS} - inline == set(environ)
    s = load_settings(None, environ)
    assert s.database_url is not None
    assert s.database_url.get_secret_value() == "postgresql://u:p@db:5432/remediator"
    assert s.redis_url is not None
    assert s.redis_url.get_secret_value() == "redis://redis:6379/0"
    assert s.webhook_token is not None
    assert s.webhook_token.get_secret_value() == "s3cret-token"
    assert s.webhook_token_file == token
    assert s.webhook_username == "alertmanager"
    assert s.allow_unauthenticated is True
    assert s.webhook_password is not None
    assert s.webhook_password.get_secret_value() == "pw"
    assert s.basic_auth_configured
    assert s.approval_ttl_seconds == 1200
    assert s.sso_trusted_proxies == ("10.0.0.0/8", "::1")
    assert s.slack_team_ids == ("T0123ABCD", "T0456EFGH")
    assert s.approval_notify_channel == "oncall"
    assert s.incident_gap_seconds == 2700.0
    assert s.unreachable_retry_seconds == 120.0
    assert s.undo_unreachable_retry_seconds == 3600.0
    assert s.refusal_digest_seconds == 600.0
    assert s.operator_tokens_dir == operators
    assert {k: v.get_secret_value() for k, v in s.operator_tokens.items()} == {
        "alice": "alice-token-0123456789"
    }
    assert s.operator_token is not None
    assert s.operator_token.get_secret_value() == "bob-token-0123456789"
    assert s.rules_dir == Path("/rules")
    assert s.data_dir == Path("/var/lib/remediator")
    assert s.dry_run is DryRun.TRUE
    assert s.kubeconfig == Path("/kube/config")
    assert s.namespace_allow == ("demo", "prod")
    assert s.namespace_deny == ("kube-system",)
    assert s.host == "10.0.0.1"
    assert s.port == 8080
    assert s.max_body_bytes == 1048576
    assert s.readiness_timeout_seconds == 5
    assert s.read_timeout_seconds == 60
    assert s.worker_concurrency == 16
    assert s.worker_processes == 2
    assert s.worker_lease_seconds == 120
    assert s.worker_poll_interval_seconds == 0.5
    assert s.worker_max_attempts == 3
    assert s.worker_shutdown_grace_seconds == 45
    assert s.budget_count == 5
    assert s.budget_window_seconds == 1800
    assert s.breaker_failures == 4
    assert s.breaker_window_seconds == 7200
    assert s.breaker_open_for_seconds == 2700
    assert s.lock_ttl_seconds == 300
    assert s.event_retention_seconds == 7 * 86400
    assert s.postgres_databases["orders"].dsn is not None
    assert (
        s.postgres_databases["orders"].dsn.get_secret_value() == "postgresql://remediator@db/orders"
    )
    assert s.redis_queues["jobs"].url is not None
    assert s.redis_queues["jobs"].url.get_secret_value() == "redis://jobs:6379/0"
    assert s.redis_queues["jobs"].queues["emails"].key == "e"
    assert s.http_endpoints["flush"].url == "https://cache/flush"
    assert s.notify_channels["oncall"].url is not None
    assert s.external_url == "https://remediator.example"
    assert s.late_delivery_window_seconds == 90
    assert s.intake_timeout_seconds == 3
    assert s.log_level == "debug"
    assert s.log_format is LogFormat.CONSOLE


def test_yaml_sections(tmp_path: Path) -> None:
    config = write(
        tmp_path / "c.yaml",
        """
database_url: postgresql://db/remediator
auth: {token: abc}
dry_run: false
kubernetes: {kubeconfig: /k}
namespaces: {allow: [demo], deny: []}
guards:
  budget: {count: 2, window: 1h}
  breaker: {failures: 1, window: 10m, open_for: 5m}
  lock_ttl: 1m
log: {level: warning, format: json}
""",
    )
    s = load_settings(config, {})
    assert s.webhook_token is not None
    assert s.webhook_token.get_secret_value() == "abc"
    assert s.dry_run is DryRun.FALSE
    assert s.kubeconfig == Path("/k")
    assert s.namespace_policy() == NamespacePolicy(allow=("demo",), deny=())
    assert (s.budget_count, s.budget_window_seconds) == (2, 3600)
    assert (s.breaker_failures, s.breaker_window_seconds, s.breaker_open_for_seconds) == (
        1,
        600,
        300,
    )
    assert s.lock_ttl_seconds == 60
    assert s.log_level == "warning"


def test_namespace_policy_default_denies_system_namespaces() -> None:
    policy = load_settings(None, {}).namespace_policy()
    assert not policy.permits("kube-system")
    assert policy.permits("demo")


def test_kubeconfig_variable_and_ours_wins() -> None:
    assert load_settings(None, {"KUBECONFIG": "/a:/b"}).kubeconfig == Path("/a")
    s = load_settings(None, {"KUBECONFIG": "/a", "REMEDIATOR_KUBECONFIG": "/c"})
    assert s.kubeconfig == Path("/c")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", DryRun.TRUE), ("yes", DryRun.TRUE), ("0", DryRun.FALSE), ("AUTO", DryRun.AUTO)],
)
def test_dry_run_spellings(value: str, expected: DryRun) -> None:
    assert load_settings(None, {"REMEDIATOR_DRY_RUN": value}).dry_run is expected


def test_dry_run_everywhere_only_when_asked() -> None:
    assert Settings(dry_run=DryRun.TRUE).dry_run_everywhere
    assert not Settings(dry_run=DryRun.AUTO).dry_run_everywhere
    assert not Settings(dry_run=DryRun.FALSE).dry_run_everywhere


def test_kube_credentials_present(tmp_path: Path) -> None:
    kubeconfig = write(tmp_path / "kubeconfig", "apiVersion: v1\n")
    assert kube_credentials_present(Settings(kubeconfig=kubeconfig), {})
    assert not kube_credentials_present(Settings(kubeconfig=tmp_path / "missing"), {})
    assert not kube_credentials_present(Settings(), {"HOME": str(tmp_path)})


def test_max_attempts_default_is_the_workers() -> None:
    # Two homes that cannot import each other (config sits below the worker): kept in step here.
    from receiver.worker import DEFAULT_MAX_ATTEMPTS

    assert Settings().worker_max_attempts == DEFAULT_MAX_ATTEMPTS
    with pytest.raises(ConfigError, match=r"worker\.max_attempts|WORKER_MAX_ATTEMPTS"):
        load_settings(None, {"REMEDIATOR_WORKER_MAX_ATTEMPTS": "0"})


def _readme_rows() -> dict[str, tuple[str, str]]:
    """env var -> (YAML key, documented default) from the README's configuration table."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = {}
    for line in text.splitlines():
        if not line.startswith("| `REMEDIATOR_"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        env, yaml_key, default = cells[0].strip("`"), cells[1].strip("`"), cells[2]
        assert env not in rows, f"{env} documented twice"
        rows[env] = (yaml_key, default)
    return rows


def test_the_readme_table_lists_every_setting_with_its_yaml_key() -> None:
    documented = {env: yaml_key for env, (yaml_key, _) in _readme_rows().items()}
    assert documented == {key.env: key.yaml for key in KEYS}


def test_the_readme_defaults_are_the_settings_defaults() -> None:
    defaults = Settings()
    checked = 0
    for key in KEYS:
        _, documented = _readme_rows()[key.env]
        if not (documented.startswith("`") and documented.endswith("`")):
            continue  # a sentence ("embedded", "unset (...)"): nothing literal to compare
        literal = documented.strip("`")
        value = getattr(defaults, key.field)
        # As a user would write it: a unit-less default here would be refused at start-up.
        written = Settings.model_validate({key.field: literal}, context=WRITTEN)
        parsed = getattr(written, key.field)
        assert parsed == value, f"{key.env}: README says {literal!r}, the default is {value!r}"
        checked += 1
    assert checked >= 15


@pytest.mark.parametrize(
    ("host", "listen", "local"),
    [
        ("::", "http://[::]:9095", "http://127.0.0.1:9095"),
        ("::1", "http://[::1]:9095", "http://[::1]:9095"),
        ("fd00::5", "http://[fd00::5]:9095", "http://[fd00::5]:9095"),
        ("0.0.0.0", "http://0.0.0.0:9095", "http://127.0.0.1:9095"),  # noqa: S104
        ("10.0.0.5", "http://10.0.0.5:9095", "http://10.0.0.5:9095"),
        ("remediator.local", "http://remediator.local:9095", "http://remediator.local:9095"),
    ],
)
def test_urls_of_the_listen_address_bracket_an_ipv6_host(
    host: str, listen: str, local: str
) -> None:
    # The banner said `http://:::9095` for REMEDIATOR_HOST=::, which no client can open.
    settings = load_settings(None, {"REMEDIATOR_HOST": host})
    assert settings.listen_url() == listen
    assert settings.local_url() == local
    assert settings.listen_url(40123) == listen.replace("9095", "40123")
    assert settings.listen_address() == listen.removeprefix("http://")
    # Each reads back as the host and port it was built from.
    parts = urlsplit(settings.listen_url())
    assert (parts.hostname, parts.port) == (host, 9095)
