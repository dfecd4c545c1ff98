"""One credential, one job, for the approvals' secrets too: the Slack signing secret and the
link-signing keys may be neither the webhook's credential nor an operator's token, nor each
other. With the Slack secret equal to the webhook's token (which Alertmanager's configuration
holds), whoever could post alerts could sign a Slack click and decide any approval as any
approver ``slack_users`` maps; with a key equal to it, forge approval links and their forms'
CSRF tokens. serve started with either; the operator tokens already had this check against the
webhook's token (``config/sources.py``). The messages name the settings, never a secret."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from receiver.config import ConfigError, Settings
from receiver.config.approvals import load_approvals

WEBHOOK = "webhook-token-0123456789abcdef-0123456789"
ALICE = "alice-token-0123456789abcdef-0123456789abc"
PASSWORD = "basic-auth-password-0123456789abcdef-0123"
OTHER = "another-secret-0123456789abcdef-0123456789"


def _settings(tmp_path: Path, *, slack: str | None = None, key: str | None = None) -> Settings:
    tmp_path.mkdir(exist_ok=True)
    keys = tmp_path / "keys"
    if key is not None:
        keys.mkdir()
        (keys / "k1").write_text(key + "\n")
    secret = tmp_path / "slack"
    if slack is not None:
        secret.write_text(slack + "\n")
    return Settings(
        webhook_token=SecretStr(WEBHOOK),
        webhook_username="alertmanager",
        webhook_password=SecretStr(PASSWORD),
        operator_tokens={"alice": SecretStr(ALICE)},
        approval_keys_dir=keys if key is not None else None,
        slack_signing_secret_file=secret if slack is not None else None,
        external_url="https://remediator.example.com",
    )


@pytest.mark.parametrize(
    ("shared", "named"),
    [
        (WEBHOOK, "the webhook's token (REMEDIATOR_WEBHOOK_TOKEN)"),
        (PASSWORD, "the webhook's password (REMEDIATOR_WEBHOOK_PASSWORD)"),
        (ALICE, "the token of operator 'alice' (REMEDIATOR_OPERATOR_TOKENS_DIR)"),
    ],
)
def test_a_slack_secret_or_a_key_that_is_another_credential_is_refused(
    tmp_path: Path, shared: str, named: str
) -> None:
    with pytest.raises(ConfigError) as slack:
        load_approvals(_settings(tmp_path / "s", slack=shared))
    assert slack.value.message.startswith("REMEDIATOR_SLACK_SIGNING_SECRET_FILE: ")
    assert named in slack.value.message
    with pytest.raises(ConfigError) as key:
        load_approvals(_settings(tmp_path / "k", key=shared))
    assert key.value.message.startswith("REMEDIATOR_APPROVAL_KEYS_DIR: key 'k1' ")
    assert named in key.value.message
    for error in (slack.value, key.value):
        assert shared not in error.message


def test_the_slack_secret_may_not_be_a_link_key_either(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        load_approvals(_settings(tmp_path, slack=OTHER, key=OTHER))
    assert refused.value.message.startswith("REMEDIATOR_SLACK_SIGNING_SECRET_FILE: ")
    assert "approval key 'k1' (REMEDIATOR_APPROVAL_KEYS_DIR)" in refused.value.message
    assert OTHER not in refused.value.message


def test_secrets_of_their_own_are_taken(tmp_path: Path) -> None:
    files = load_approvals(_settings(tmp_path, slack=OTHER, key=OTHER[::-1]))
    assert files.slack_signing_secret is not None
    assert sorted(files.keys) == ["k1"]
