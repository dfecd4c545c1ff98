"""The start-up banner: a working curl, and never a configured secret."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from receiver.config import Settings
from receiver.service import banner, embedded_token

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
