"""Named connections' secrets come from files only: a URL or header written in the configuration
may hold no credential, and one that does (or a secret file that holds no URL) is refused
without quoting it."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.config import ConfigError, load_settings
from tests.support.config import config, write


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
    ("connection", "url"),
    [
        ("http: {endpoints: {flush: {url_file: FILE}}}", "https://cache.internal:99999/f-qzxp"),
        ("http: {endpoints: {flush: {url_file: FILE}}}", "http://cache.internal:0/f-qzxp"),
        # A `/` in the password ends the authority early: urllib's "could not be cast" message
        # quoted what it took for the port, the password's first letters.
        ("http: {endpoints: {flush: {url_file: FILE}}}", "http://u:qzxp/rest@cache.internal/f"),
        ("notify: {channels: {oncall: {kind: slack, url_file: FILE}}}", "https://h:70000/qzxp"),
    ],
)
def test_a_secret_url_whose_port_no_client_takes_is_refused_without_echoing_it(
    tmp_path: Path, connection: str, url: str
) -> None:
    """Taken at load, such a URL raised a ValueError out of every step and notification that
    used it (aiohttp: "Port out of range 0-65535"), at the first alert (found by attack)."""
    write(tmp_path / "url", url + "\n")
    path = config(tmp_path, connection.replace("FILE", str(tmp_path / "url")))
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {})
    assert caught.value.message.endswith(
        ".url_file: the URL's port is not a number from 1 to 65535"
    )
    assert "qzxp" not in caught.value.message


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
