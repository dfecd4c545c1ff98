"""Start-up: the banner gives a working curl and never a configured secret, and an open
receiver must be asked for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from receiver.config import ConfigError, Settings
from receiver.service import banner, embedded_token, require_authentication

URL = "http://127.0.0.1:9095"


def test_generated_embedded_token_is_printed_with_a_ready_curl(tmp_path: Path) -> None:
    settings, generated = embedded_token(Settings(data_dir=tmp_path))
    assert generated
    token = (tmp_path / "webhook-token").read_text().strip()
    assert (tmp_path / "webhook-token").stat().st_mode & 0o777 == 0o600
    text = banner(settings, URL, dry_run=True, embedded=True, show_token=generated)
    assert f"webhook token: {token}" in text
    assert f"curl -sS -H 'Authorization: Bearer {token}' " in text
    assert f"{URL}/api/v1/alerts" in text
    assert "dry-run" in text
    # The same data directory keeps the same token across restarts.
    again, _ = embedded_token(Settings(data_dir=tmp_path))
    assert again.webhook_token is not None
    assert again.webhook_token.get_secret_value() == token


def test_a_configured_token_is_never_printed(tmp_path: Path) -> None:
    secret = "production-secret-do-not-print"
    settings, generated = embedded_token(
        Settings(data_dir=tmp_path, webhook_token=SecretStr(secret))
    )
    assert not generated
    assert not (tmp_path / "webhook-token").exists()
    text = banner(settings, URL, dry_run=False, embedded=False, show_token=generated)
    assert secret not in text
    assert "$WEBHOOK_TOKEN" in text
    assert "LIVE" in text


def test_basic_auth_banner_names_the_user_not_the_password() -> None:
    settings = Settings(webhook_username="am", webhook_password=SecretStr("pw-secret"))
    text = banner(settings, URL, dry_run=True, embedded=False, show_token=False)
    assert "pw-secret" not in text
    assert "-u 'am:PASSWORD'" in text


def test_an_unauthenticated_receiver_on_external_servers_must_be_asked_for() -> None:
    external = {
        "database_url": SecretStr("postgresql://db/x"),
        "redis_url": SecretStr("redis://r:6379/0"),
    }
    with pytest.raises(ConfigError) as info:
        require_authentication(Settings(**external))
    assert "REMEDIATOR_ALLOW_UNAUTHENTICATED" in info.value.message
    # Any of these is an answer; the embedded default generates a token of its own.
    require_authentication(Settings(**external, allow_unauthenticated=True))
    require_authentication(Settings(**external, webhook_token=SecretStr("t")))
    require_authentication(
        Settings(**external, webhook_username="am", webhook_password=SecretStr("p"))
    )
    require_authentication(Settings())


def test_serve_refuses_to_start_open_and_says_how_to_fix_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}
    env |= {
        "REMEDIATOR_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/x",
        "REMEDIATOR_REDIS_URL": "redis://127.0.0.1:1/0",
        "REMEDIATOR_DATA_DIR": str(tmp_path),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "receiver.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "no webhook authentication is configured" in proc.stderr
