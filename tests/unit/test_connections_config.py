"""Named connections in the configuration: shapes, names, secrets from files only, and errors
that name the key to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.config import ConfigError, load_settings
from receiver.config.inline import url_origin
from remediations.redis_queue.queues import End, Layout


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def config(tmp_path: Path, text: str) -> Path:
    return write(tmp_path / "config.yaml", text)


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
    ],
)
def test_errors_name_the_key(tmp_path: Path, yaml: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(config(tmp_path, yaml), {})
    assert message in caught.value.message


def test_a_secret_url_that_is_not_a_url_is_refused_without_echoing_it(tmp_path: Path) -> None:
    write(tmp_path / "slack", "T000/B000/not-a-url\n")
    path = config(
        tmp_path, f"notify: {{channels: {{oncall: {{kind: slack, url_file: {tmp_path}/slack}}}}}}"
    )
    with pytest.raises(
        ConfigError, match=r"notify\.channels\.oncall\.url_file: the URL must be"
    ) as caught:
        load_settings(path, {})
    assert "not-a-url" not in caught.value.message


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        (
            "http: {endpoints: {flush: {url: 'http://deploy:hunter2-pw@cache.internal/f'}}}",
            "http.endpoints.flush: the URL holds credentials (user:password@); give it in url_file",
        ),
        (
            "http: {endpoints: {flush: {url: 'https://cache.internal/f?api_key=hunter2-pw'}}}",
            "http.endpoints.flush: the URL's query parameter 'api_key' holds a secret",
        ),
        (
            "http: {endpoints: {flush: {url: 'https://c.internal/f?X-Amz-Signature=hunter2-pw'}}}",
            "query parameter 'X-Amz-Signature' holds a secret; give it in url_file",
        ),
        (
            "http: {endpoints: {flush: {url: 'https://c.internal/f', "
            "headers: {Authorization: 'Bearer hunter2-pw'}}}}",
            "header 'Authorization' carries a credential: give it in header_files",
        ),
        (
            "http: {endpoints: {flush: {url: 'https://c.internal/f', "
            "headers: {X-Api-Key: hunter2-pw}}}}",
            "header 'X-Api-Key' carries a credential",
        ),
        (
            "external_url: 'https://ops:hunter2-pw@remediator.example'",
            "external_url: the URL holds credentials",
        ),
        (
            "external_url: 'https://remediator.example/?token=hunter2-pw'",
            "external_url: the URL's query parameter 'token' holds a secret",
        ),
    ],
)
def test_a_url_or_header_written_in_the_configuration_may_hold_no_secret(
    tmp_path: Path, yaml: str, message: str
) -> None:
    # Such values are recorded in the audit log (service.started) and logged as they are, so
    # a credential in them is refused at load, pointing to the *_file form.
    with pytest.raises(ConfigError) as caught:
        load_settings(config(tmp_path, yaml), {})
    assert message in caught.value.message
    assert "hunter2-pw" not in caught.value.message


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "https://func.example/api/restart?code=AZSECRETCODE123",
            "query parameter 'code' holds a secret",
        ),
        (
            "https://sign.example/f?x-hmac=AZSECRETCODE123",
            "query parameter 'x-hmac' holds a secret",
        ),
        ("https://c.example/cb#token=AZSECRETCODE123", "the URL has a fragment"),
        ("https://c.example/cb#AZSECRETCODE123", "the URL has a fragment"),
        (
            "https://hooks.slack.com/services/T000/B000/AZSECRETCODE123",
            "the URL is a Slack webhook, whose path is its credential",
        ),
        (
            "https://discord.com/api/webhooks/123/AZSECRETCODE123",
            "the URL is a Discord webhook",
        ),
        ("https://discordapp.com/api/webhooks/123/AZSECRETCODE123", "a Discord webhook"),
        (
            "https://acme.webhook.office.com/webhookb2/x@y/IncomingWebhook/AZSECRETCODE123",
            "a Microsoft Teams webhook",
        ),
        (
            "https://outlook.office.com/webhook/x/IncomingWebhook/AZSECRETCODE123",
            "a Microsoft Teams webhook",
        ),
        ("https://hooks.zapier.com/hooks/catch/1/AZSECRETCODE123/", "a Zapier webhook"),
        ("https://api.telegram.org/botAZSECRETCODE123/sendMessage", "a Telegram bot URL"),
        ("https://chat.internal/hooks/azsecretcode123azsecretcod", "a Mattermost webhook"),
    ],
)
def test_a_url_whose_path_query_or_fragment_is_a_credential_comes_from_a_file(
    tmp_path: Path, url: str, message: str
) -> None:
    inline = f"http: {{endpoints: {{call: {{url: '{url}'}}}}}}"
    with pytest.raises(ConfigError) as caught:
        load_settings(config(tmp_path, inline), {})
    assert caught.value.message.startswith("http.endpoints.call: ")
    assert message in caught.value.message
    assert "give it in url_file" in caught.value.message
    assert "AZSECRETCODE123" not in caught.value.message.upper()

    write(tmp_path / "url", url + "\n")
    from_file = f"http: {{endpoints: {{call: {{url_file: {tmp_path}/url}}}}}}"
    endpoint = load_settings(config(tmp_path, from_file), {}).http_endpoints["call"]
    assert endpoint.secret_url is not None
    assert endpoint.secret_url.get_secret_value() == url


def test_a_url_without_credentials_is_written_in_the_configuration(tmp_path: Path) -> None:
    settings = load_settings(
        config(
            tmp_path,
            "http: {endpoints: {flush: {url: 'https://c.internal/f?region=eu&page=2', "
            "headers: {X-Env: prod, Content-Language: en}}}}\n"
            "external_url: 'https://remediator.example/'\n",
        ),
        {},
    )
    assert settings.http_endpoints["flush"].url == "https://c.internal/f?region=eu&page=2"
    assert settings.external_url == "https://remediator.example"


@pytest.mark.parametrize(
    ("yaml", "env", "names"),
    [
        # Inline instead of by file: the very mistake the error is about, so it must not
        # repeat the secret (a Slack webhook's path is its credential).
        (
            "notify: {channels: {oncall: {kind: slack, "
            "url: 'https://hooks.slack.com/services/T/B/hunter2-pw'}}}",
            {},
            "notify.channels.oncall.url_file",
        ),
        (
            "postgres: {databases: {orders: {dsn: 'postgresql://u:hunter2-pw@db/orders'}}}",
            {},
            "postgres.databases.orders",
        ),
        (
            "",
            {
                "REMEDIATOR_NOTIFY_CHANNELS": '{"oncall": {"kind": "webhook", '
                '"url": "https://hooks.example/x?sig=hunter2-pw"}}'
            },
            "REMEDIATOR_NOTIFY_CHANNELS.oncall",
        ),
        (
            "",
            {"REMEDIATOR_REDIS_QUEUES": '{"jobs": {"url": "redis://:hunter2-pw@cache:6379/0"}}'},
            "REMEDIATOR_REDIS_QUEUES.jobs",
        ),
    ],
)
def test_a_connection_given_inline_is_refused_without_quoting_it(
    tmp_path: Path, yaml: str, env: dict[str, str], names: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(config(tmp_path, yaml or "{}"), env)
    assert names in caught.value.message
    assert "hunter2-pw" not in caught.value.message


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
    "value", ["Bearer HdrSecret11", "basic dXNlcjpwdw==", "Token abc", "  ApiKey k-123"]
)
def test_a_custom_header_holding_a_credential_is_refused_inline(tmp_path: Path, value: str) -> None:
    # Only the header's name was checked: `X-Custom: Bearer ...` was accepted and recorded.
    text = "http:\n  endpoints:\n    flush:\n      url: https://cache.internal/flush\n"
    text += f"      headers: {{X-Custom: '{value}'}}\n"
    with pytest.raises(ConfigError, match="header 'X-Custom' holds a credential") as caught:
        load_settings(config(tmp_path, text), {})
    assert value.strip() not in str(caught.value)
    plain = text.replace(value, "prod")
    assert load_settings(config(tmp_path, plain), {}).http_endpoints["flush"].headers == {
        "X-Custom": "prod"
    }


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


@pytest.mark.parametrize(
    ("written", "base"),
    [
        # A browser's Origin is the scheme and host in lowercase, without the default port:
        # the login and approval pages compare it as text with the external_url's.
        ("'HTTPS://Remediator.Example:443/'", "https://remediator.example"),
        ("'http://Remediator.Example:80'", "http://remediator.example"),
        ("'https://remediator.example:8443/ops/'", "https://remediator.example:8443/ops"),
        ("'http://[::1]:80/'", "http://[::1]"),
        # An IP address as the WHATWG URL standard serializes it: Origin: http://[::1]:9095
        # for http://[0:0:0:0:0:0:0:1]:9095; before, that spelling was kept, and the login
        # and approval pages refused every POST the browser sent.
        ("'http://[0:0:0:0:0:0:0:1]:9095'", "http://[::1]:9095"),
        ("'http://[2001:DB8:0:0:1:0:0:1]'", "http://[2001:db8::1:0:0:1]"),
        ("'http://[1:0:0:2:0:0:0:3]'", "http://[1:0:0:2::3]"),
        ("'http://[1:0:1:0:1:0:1:0]'", "http://[1:0:1:0:1:0:1:0]"),
        ("'http://[::FFFF:127.0.0.1]:9095'", "http://[::ffff:7f00:1]:9095"),
        ("'http://127.0.0.1.:9095/'", "http://127.0.0.1:9095"),
        ("'https://ops.example.'", "https://ops.example."),
        ("'https://1.2.3.4x'", "https://1.2.3.4x"),
        ("'https://ops.example/team%20a/'", "https://ops.example/team%20a"),
    ],
)
def test_external_url_is_kept_in_the_form_browsers_name_its_origin(
    tmp_path: Path, written: str, base: str
) -> None:
    settings = load_settings(config(tmp_path, f"external_url: {written}\n"), {})
    assert settings.external_url == base


@pytest.mark.parametrize(
    ("written", "message"),
    [
        # The link was `https://remediator.example/?tenant=a/approve/TOKEN`: the token in the
        # query, and the link opened another page.
        ("'https://remediator.example/?tenant=a'", "the URL has a query (?...)"),
        ("'https://remediator.example/ops?'", "the URL has a query (?...)"),
        ("'https://remediator .example'", "a blank, a control character"),
        ("'https://remediator.example/a\tb'", "a blank, a control character"),
        ("'https://remediator.example/a\\b'", "or a backslash"),
        # Accepted, and approval links were built under a path no proxy need take.
        ("'https://x.example/%zz'", "the URL's path holds '%zz', which is no percent-escape"),
        ("'https://x.example/ops/a%2'", "the URL's path holds '%2', which is no percent-escape"),
        ("'https://x.example/ops%'", "the URL's path holds '%', which is no percent-escape"),
        # Accepted, and a browser opened the links one directory up, or at the root: a dot
        # segment is resolved, however it is spelled, not sent.
        ("'https://x.example/%2e%2e/ops'", "the URL's path holds the segment '%2e%2e'"),
        ("'https://x.example/ops/.%2E'", "the URL's path holds the segment '.%2E'"),
        ("'https://x.example/ops/..'", "the URL's path holds the segment '..'"),
        ("'https://x.example/./ops'", "the URL's path holds the segment '.'"),
        ("'https://x.example/ops/%2E'", "the URL's path holds the segment '%2E'"),
        ("'https://remediator.example:99999'", "port is not a number from 1 to 65535"),
        ("'https://remediator.example:0'", "port is not a number from 1 to 65535"),
        ("'https://remediator.example:https'", "port is not a number from 1 to 65535"),
        ("'https://bücher.example'", "in its xn-- form"),
        # A browser reads each of these as another host than the text says (127.0.0.1,
        # 8.0.0.1, example.com) or does not open it (an IPv6 zone).
        ("'http://127.1:9095'", "as four decimal numbers"),
        ("'http://010.0.0.1'", "as four decimal numbers"),
        ("'http://0x7f.0.0.1'", "as four decimal numbers"),
        ("'http://ops.1'", "as four decimal numbers"),
        ("'http://ex%41mple.com'", "the URL's host holds a %"),
        ("'http://[fe80::1%25eth0]:9095'", "the URL's host holds a %"),
    ],
)
def test_an_external_url_no_link_can_be_built_under_is_refused(
    tmp_path: Path, written: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(config(tmp_path, f"external_url: {written}\n"), {})
    assert caught.value.message.startswith("external_url: "), caught.value.message
    assert message in caught.value.message
