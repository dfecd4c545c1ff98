"""Named connections in the configuration: shapes, names, durations, URLs their clients would
misread, and errors that name the key to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.config import ConfigError, load_settings
from receiver.config.inline import url_origin
from remediations.redis_queue.queues import End, Layout
from tests.support import pki
from tests.support.config import config, write


def test_every_kind_of_connection_loads_with_its_secrets(tmp_path: Path) -> None:
    write(tmp_path / "dsn", "postgresql://remediator:pw@db/orders\n")
    write(tmp_path / "redis", "redis://:pw@jobs:6379/0\n")
    write(tmp_path / "auth", "Bearer abc\n")
    write(tmp_path / "slack", "https://hooks.slack.example/services/T/B/X\n")
    settings = load_settings(
        config(
            tmp_path,
            f"""
postgres:
  databases:
    orders: {{dsn_file: {tmp_path}/dsn, statement_timeout: 5s, max_connections: 3}}
redis:
  queues:
    jobs:
      url_file: {tmp_path}/redis
      queues:
        emails: {{layout: list, key: emails, dead_letter_key: "emails:dead", pop: left}}
        reports: {{layout: rq, key: "rq:queue:reports", dead_letter_key: "rq:failed:reports"}}
        events: {{layout: stream, key: events, group: workers}}
http:
  port: 9000
  endpoints:
    flush:
      url: https://cache.internal/flush
      headers: {{X-Env: prod}}
      header_files: {{Authorization: {tmp_path}/auth}}
      timeout: 3s
notify:
  channels:
    oncall: {{kind: slack, url_file: {tmp_path}/slack}}
external_url: https://remediator.example/
""",
        ),
        {},
    )
    orders = settings.postgres_databases["orders"]
    assert orders.dsn is not None
    assert orders.dsn.get_secret_value() == "postgresql://remediator:pw@db/orders"
    assert (orders.statement_timeout, orders.max_connections) == (5.0, 3)
    jobs = settings.redis_queues["jobs"]
    assert jobs.url is not None
    assert jobs.url.get_secret_value() == "redis://:pw@jobs:6379/0"
    assert jobs.queues["emails"].spec().ends == (End.LEFT, End.LEFT)
    assert jobs.queues["reports"].layout is Layout.RQ
    assert jobs.queues["events"].spec().group == "workers"
    flush = settings.http_endpoints["flush"]
    assert flush.timeout == 3.0
    assert flush.secret_headers["Authorization"].get_secret_value() == "Bearer abc"
    assert settings.port == 9000  # http.port and http.endpoints live side by side
    assert settings.notify_channels["oncall"].url is not None
    assert settings.external_url == "https://remediator.example"
    # Secrets never show in a repr.
    assert "pw" not in repr(settings)
    assert "Bearer" not in repr(settings)


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        (
            "postgres: {databases: {Orders: {dsn_file: /x}}}",
            "postgres.databases: connection name 'Orders'",
        ),
        (
            "postgres: {databases: {orders: {dsn: 'postgresql://u:p@h/d', dsn_file: /x}}}",
            "postgres.databases.orders.dsn: secrets come from files only",
        ),
        (
            "postgres: {databases: {orders: {dsn_file: /nonexistent/dsn}}}",
            "postgres.databases.orders.dsn_file: cannot read secret file",
        ),
        (
            "redis: {queues: {jobs: {url_file: /x, queues: {q: {layout: list, key: q}}}}}",
            "redis.queues.jobs.queues.q: a list queue needs dead_letter_key",
        ),
        (
            "redis: {queues: {jobs: {url_file: /x, queues: {q: {layout: fifo, key: q}}}}}",
            "redis.queues.jobs.queues.q.layout",
        ),
        # An rq queue's keys are RQ's keys of one queue name, the name its jobs' origin holds:
        # failed jobs of "exports" were requeued onto "reports".
        (
            "redis: {queues: {jobs: {url_file: /x, queues: {q: {layout: rq, "
            "key: 'rq:queue:reports', dead_letter_key: 'rq:failed:exports'}}}}}",
            "redis.queues.jobs.queues.q: an rq queue's key and dead_letter_key are RQ's keys of "
            "one queue: 'rq:queue:<name>' and 'rq:failed:<name>'",
        ),
        (
            "redis: {queues: {jobs: {url_file: /x, queues: {q: {layout: rq, "
            "key: reports, dead_letter_key: 'reports:failed'}}}}}",
            "got key 'reports' and dead_letter_key 'reports:failed'",
        ),
        (
            "http: {endpoints: {flush: {url: 'ftp://cache/flush'}}}",
            "http.endpoints.flush: the URL must be http:// or https://",
        ),
        (
            "http: {endpoints: {flush: {}}}",
            "http.endpoints.flush: give exactly one of url and url_file",
        ),
        (
            "notify: {channels: {oncall: {kind: slack, url: 'https://hooks/x'}}}",
            "notify.channels.oncall.url_file",
        ),
        ("external_url: remediator.example", "external_url: the URL must be"),
        # PostgreSQL's "no timeout" was 1 ms here: each statement cancelled, a signalling one
        # maybe part way through; past 2^31 - 1 ms the server refused every connection.
        (
            "postgres: {databases: {orders: {dsn_file: /x, statement_timeout: 0s}}}",
            "postgres.databases.orders.statement_timeout: '0s' is out of range: give a "
            "duration between 100ms and 3w3d",
        ),
        (
            "postgres: {databases: {orders: {dsn_file: /x, statement_timeout: 4w}}}",
            "postgres.databases.orders.statement_timeout: '4w' is out of range",
        ),
        (
            "postgres: {databases: {orders: {dsn_file: /x, timeout: 0s}}}",
            "postgres.databases.orders.timeout: '0s' is out of range",
        ),
        # aiohttp reads 0 as no time limit: a call never answered held its step for ever.
        (
            "http: {endpoints: {flush: {url: 'https://cache/flush', timeout: 0s}}}",
            "http.endpoints.flush.timeout: '0s' is out of range: give a duration between 100ms",
        ),
        (
            "notify: {channels: {oncall: {kind: slack, url_file: /x, timeout: 0s}}}",
            "notify.channels.oncall.timeout: '0s' is out of range: give a duration between 100ms",
        ),
    ],
)
def test_errors_name_the_key(tmp_path: Path, yaml: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(config(tmp_path, yaml), {})
    assert message in caught.value.message


def test_a_plain_wrong_value_is_still_quoted(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(config(tmp_path, "worker: {concurrency: lots}"), {})
    assert "'lots'" in caught.value.message


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://u:pw@h.example:8443/p?q=1#f", "https://h.example:8443"),
        ("http://[::1]:9000/hook", "http://[::1]:9000"),
        ("https://h.example/hooks/abc", "https://h.example"),
    ],
)
def test_an_endpoint_url_is_recorded_by_its_origin(url: str, origin: str) -> None:
    assert url_origin(url) == origin


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("timeout", "10"),
        ("timeout", "1.5"),
        ("max_retry_after", "60"),
        ("timeout", "'\u0663s'"),
    ],
)
def test_a_connections_duration_needs_its_unit_as_every_setting(
    tmp_path: Path, key: str, value: str
) -> None:
    # The named connections' timeouts took plain seconds when every other duration needed a
    # unit: `timeout: 10` is refused the same way now.
    text = "http:\n  endpoints:\n    flush:\n      url: https://cache.internal/flush\n"
    text += f"      {key}: {value}\n"
    with pytest.raises(ConfigError, match=key):
        load_settings(config(tmp_path, text), {})
    fixed = text.replace(f"{key}: {value}", f"{key}: 10s")
    endpoint = load_settings(config(tmp_path, fixed), {}).http_endpoints["flush"]
    assert getattr(endpoint, key) == 10.0


@pytest.mark.parametrize(
    ("section", "url"),
    [
        ("postgres", "postgresql://app:Sec?retPW31@127.0.0.1:1/orders"),
        ("postgres", "postgresql://app:Sec/retPW32@127.0.0.1:1/orders"),
        ("redis", "redis://:Red/isSecretPW35@127.0.0.1:1/0"),
    ],
)
def test_a_named_connection_url_its_clients_would_misread_is_refused_at_load(
    tmp_path: Path, section: str, url: str
) -> None:
    # Read from its file and handed to asyncpg or redis-py at the first step: their errors
    # quoted part of the password, into the log and a step's message in the audit log
    # (serve crashed with a traceback for Redis).
    write(tmp_path / "secret", url + "\n")
    text = (
        f"postgres:\n  databases:\n    orders: {{dsn_file: {tmp_path}/secret}}\n"
        if section == "postgres"
        else f"redis:\n  queues:\n    jobs:\n      url_file: {tmp_path}/secret\n"
        "      queues: {emails: {layout: list, key: e, dead_letter_key: d}}\n"
    )
    with pytest.raises(ConfigError, match="percent-encode") as caught:
        load_settings(config(tmp_path, text), {})
    assert "retPW" not in str(caught.value)
    assert "isSecret" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "told"),
    [
        (
            "http:\n  endpoints:\n    e: {url: 'http://127.0.0.1:1/x', attempts: true}\n",
            "true is a boolean, not a number",
        ),
        (
            "notify:\n  channels:\n    c: {kind: webhook, url_file: /dev/null, attempts: yes}\n",
            "yes is YAML's true, a boolean, not a number",
        ),
    ],
)
def test_a_boolean_is_no_count_in_a_named_connection(tmp_path: Path, text: str, told: str) -> None:
    # `attempts: true` read as 1 turned retries off without a word.
    with pytest.raises(ConfigError, match=told):
        load_settings(config(tmp_path, text), {})


@pytest.mark.parametrize("section", ["http", "notify"])
def test_a_ca_file_is_loaded_at_start_and_refused_when_missing_or_not_pem(
    tmp_path: Path, section: str
) -> None:
    """An endpoint's or a channel's ``ca_file`` (remediations/tls.py): a wrong one stops the
    start naming the setting and the file, not every later call as a TLS failure."""
    write(tmp_path / "url", "https://hooks.internal/x\n")
    write(tmp_path / "junk.pem", "not a certificate\n")
    ca = pki.make_ca()
    pki.write(tmp_path / "ca.pem", pki.cert_pem(ca))

    def text(ca_file: Path) -> str:
        if section == "http":
            return f"http: {{endpoints: {{flush: {{url: 'https://c/f', ca_file: {ca_file}}}}}}}"
        return (
            "notify: {channels: {oncall: "
            f"{{kind: webhook, url_file: {tmp_path}/url, ca_file: {ca_file}}}}}}}"
        )

    key = "http.endpoints.flush.ca_file" if section == "http" else "notify.channels.oncall.ca_file"
    with pytest.raises(ConfigError) as missing:
        load_settings(config(tmp_path, text(tmp_path / "gone.pem")), {})
    assert key in missing.value.message
    assert f"{tmp_path}/gone.pem: no such file" in missing.value.message
    with pytest.raises(ConfigError) as junk:
        load_settings(config(tmp_path, text(tmp_path / "junk.pem")), {})
    assert key in junk.value.message
    assert f"{tmp_path}/junk.pem does not hold PEM CA certificates" in junk.value.message
    settings = load_settings(config(tmp_path, text(tmp_path / "ca.pem")), {})
    loaded = (
        settings.http_endpoints["flush"]
        if section == "http"
        else settings.notify_channels["oncall"]
    )
    assert loaded.ca_file == tmp_path / "ca.pem"
