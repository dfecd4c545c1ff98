"""A connection written as text where its map goes (`catcher: http://...` for `catcher: {url:
...}`, the README's endpoint as a new user shortens it) is told the keys it takes. Pydantic said
"Input should be a valid dictionary or instance of HttpEndpointConfig", a class of ours, and
nothing to write. The value is never quoted: a DSN written there holds a password."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.config import ConfigError, load_settings


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'http: {endpoints: {catcher: "http://127.0.0.1:9099/called"}}',
            "http.endpoints.catcher: expected a map of url, url_file, headers, header_files,"
            " timeout, attempts, max_retry_after, ca_file, not text",
        ),
        (
            "notify: {channels: {catcher: webhook}}",
            "notify.channels.catcher: expected a map of kind, url_file, timeout, attempts,"
            " ca_file, not text",
        ),
        (
            "notify: {channels: [catcher]}",
            "notify.channels: expected a map (`name: value` pairs, or `{...}`), not a list",
        ),
        (
            'postgres: {databases: {orders: "postgresql://app:hunter2hunter2@db/orders"}}',
            "postgres.databases.orders: expected a map of dsn_file, statement_timeout, timeout,"
            " max_connections, not text",
        ),
        (
            "redis: {queues: {jobs: {url_file: f, queues: {emails: [list]}}}}",
            "redis.queues.jobs.queues.emails: expected a map of layout, key, dead_letter_key,"
            " group, pop, push, job_key_prefix, not a list",
        ),
    ],
)
def test_a_connection_that_is_no_map_is_told_its_keys(
    tmp_path: Path, text: str, expected: str
) -> None:
    config = tmp_path / "remediator.yaml"
    config.write_text(text + "\n")
    with pytest.raises(ConfigError) as refused:
        load_settings(config, {})
    assert refused.value.message == expected
    assert "hunter2" not in refused.value.message
