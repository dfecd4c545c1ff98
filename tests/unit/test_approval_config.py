"""The approval settings' files: keys, operators, approvers, Slack; the notify channel."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog
from pydantic import SecretStr
from structlog.testing import capture_logs

from receiver.approvals.setup import approval_setup
from receiver.config import ConfigError, Settings
from receiver.config.approvals import load_approvals
from receiver.store import Store


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_every_file_is_read_and_dot_files_are_skipped(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    write(keys / "2025-01", "a" * 64 + "\n")
    write(keys / "2025-06", "b" * 64)
    write(keys / "..data" / "ignored", "x")
    approvers = write(
        tmp_path / "approvers.yaml",
        "by_rule: {rollback: [alice]}\nby_risk: {high: [bob]}\nslack_users: {U1: alice}\n",
    )
    settings = Settings(
        approval_keys_dir=keys,
        operator_tokens={"alice": SecretStr("tok-a-0123456789abcdef")},
        approvers_file=approvers,
        slack_signing_secret_file=write(tmp_path / "slack", "shh\n"),
        external_url="https://remediator.example.com",
    )
    files = load_approvals(settings)
    assert sorted(files.keys) == ["2025-01", "2025-06"]
    assert files.approvers.by_rule == {"rollback": ["alice"]}
    assert files.approvers.slack_users == {"U1": "alice"}

    setup = approval_setup(settings, files, Store(None, "x"), log=structlog.get_logger("t"))
    assert setup.desk.tokens is not None
    assert setup.desk.tokens.ring.signing_kid == "2025-06"  # the newest signs
    assert setup.slack is not None
    assert setup.identities.from_token("tok-a-0123456789abcdef") is not None


@pytest.mark.parametrize(
    ("field", "content", "message"),
    [
        # Was "by_risk: Value error, unknown risk medium", pydantic's prefix left in.
        ("approvers_file", "by_risk: {medium: [a]}\n", ": by_risk: unknown risk medium; use low"),
        ("approvers_file", "approvers: [a]\n", "approvers: unknown key; this takes by_rule"),
        ("approvers_file", "by_rule: [\n", "invalid YAML"),
        (
            "approvers_file",
            "by_rule: {rollback: [alice]}\nby_rule: {rollback: [mallory]}\n",
            "duplicate key 'by_rule' \\(first at line 1\\)",
        ),
        # Was "by_rule.1.[key]: Input should be a valid string", with no line.
        (
            "approvers_file",
            "by_rule:\n  on: [bob]\n",
            ':2: keys must be strings: write "on" in quotes: YAML reads it as a boolean',
        ),
        ("slack_signing_secret_file", "\n", "is empty"),
        # Was "default: Input should be a valid list": a name for a list of names.
        (
            "approvers_file",
            "default: local\n",
            "default: expected a list \\(`\\[...\\]`, or one `- ` line per item\\), not text",
        ),
        (
            "approvers_file",
            "slack_users: alice\n",
            "slack_users: expected a map \\(`name: value` pairs, or `{...}`\\), not text",
        ),
    ],
)
def test_bad_files_name_the_setting(tmp_path: Path, field: str, content: str, message: str) -> None:
    path = write(tmp_path / "file", content)
    with pytest.raises(ConfigError, match=message) as error:
        load_approvals(Settings(**{field: path}))
    assert f"REMEDIATOR_{field.upper()}" in error.value.message


def test_short_keys_and_missing_dirs_are_refused(tmp_path: Path) -> None:
    write(tmp_path / "keys" / "k1", "too-short")
    files = load_approvals(Settings(approval_keys_dir=tmp_path / "keys"))
    with pytest.raises(ConfigError, match="REMEDIATOR_APPROVAL_KEYS_DIR: approval key 'k1'"):
        approval_setup(Settings(), files, Store(None, "x"), log=structlog.get_logger("t"))
    with pytest.raises(ConfigError, match="is not a directory"):
        load_approvals(Settings(approval_keys_dir=tmp_path / "none"))
    with pytest.raises(ConfigError, match="REMEDIATOR_APPROVAL_NOTIFY_CHANNEL: no notify channel"):
        approval_setup(
            Settings(approval_notify_channel="oncall"),
            load_approvals(Settings()),
            Store(None, "x"),
            log=structlog.get_logger("t"),
        )


def test_a_value_of_no_settings_kind_in_the_approvers_file_names_its_tag(tmp_path: Path) -> None:
    approvers = tmp_path / "approvers.yaml"
    approvers.write_text("default: !!set {alice}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_approvals(Settings(approvers_file=approvers))
    assert caught.value.message == (
        f"REMEDIATOR_APPROVERS_FILE: {approvers}:1: a !!set value: a setting is text, a whole"
        " number, true or false, a list or a map: remove the tag"
    )


def test_a_word_yaml_reads_as_a_boolean_in_the_approvers_file_is_told_to_be_quoted(
    tmp_path: Path,
) -> None:
    approvers = tmp_path / "approvers.yaml"
    approvers.write_text("default: [alice, on]\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_approvals(Settings(approvers_file=approvers))
    assert caught.value.message == (
        f'REMEDIATOR_APPROVERS_FILE: {approvers}: default.1: write "on" in quotes: YAML reads'
        " on as true"
    )


@pytest.mark.parametrize(
    ("extra", "approvers", "stranded"),
    [
        # The README's approvers file kept on the embedded default: only `local` can sign in.
        ({}, "by_risk: {high: [alice, bob]}\ndefault: [local]\n", ["alice", "bob"]),
        ({}, "by_rule: {poke: [carol]}\n", ["carol"]),
        ({}, "default: [local]\n", []),
        # A Slack user mapped to a name decides as it, once Slack's secret is configured.
        ({"slack": True}, "default: [alice]\nslack_users: {U1: alice}\n", []),
        ({}, "default: [alice]\nslack_users: {U1: alice}\n", ["alice"]),
        # The SSO proxy may name anyone.
        ({"sso_user_header": "X-Forwarded-User"}, "default: [alice]\n", []),
    ],
)
def test_an_approver_nobody_can_sign_in_as_is_warned_of_at_start(
    tmp_path: Path, extra: dict[str, object], approvers: str, stranded: list[str]
) -> None:
    slack = bool(extra.get("slack"))
    extra = {k: v for k, v in extra.items() if k != "slack"}
    settings = Settings(
        operator_tokens={"local": SecretStr("tok-local-0123456789abcdef")},
        approvers_file=write(tmp_path / "approvers.yaml", approvers),
        slack_signing_secret_file=write(tmp_path / "slack", "shh\n") if slack else None,
        **extra,
    )
    with capture_logs() as logs:
        approval_setup(
            settings, load_approvals(settings), Store(None, "x"), log=structlog.get_logger("t")
        )
    said = [
        e
        for e in logs
        if e["event"].startswith("the approvers file names approvers who cannot sign in")
    ]
    if not stranded:
        assert said == []
        return
    [warning] = said
    assert warning["log_level"] == "warning"
    assert warning["approvers"] == stranded
    assert warning["operators"] == ["local"]
    assert "will wait and expire" in warning["event"]
