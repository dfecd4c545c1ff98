"""Files the service trusts that other users of the machine may change or read are said at
start-up (receiver/config/checks.py, ``exposed_files``): a token or key readable by anyone, and,
loudly, a secret, the approvers file or a rule file anyone may replace."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.config import load_settings
from receiver.config.checks import Notice, exposed_files, start_up_notices

TOKEN = "a-webhook-token-of-32-characters"


def _file(path: Path, text: str, mode: int) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def _notices(tmp_path: Path, mode: int) -> list[Notice]:
    token = _file(tmp_path / "token", TOKEN, mode)
    settings = load_settings(
        None,
        {"REMEDIATOR_WEBHOOK_TOKEN_FILE": str(token), "REMEDIATOR_RULES_DIR": str(tmp_path)},
    )
    return exposed_files(settings)


@pytest.mark.parametrize("mode", [0o400, 0o600, 0o440, 0o640, 0o660])
def test_a_secret_kept_from_other_users_says_nothing(tmp_path: Path, mode: int) -> None:
    assert _notices(tmp_path, mode) == []


@pytest.mark.parametrize("mode", [0o644, 0o444, 0o604])
def test_a_secret_any_user_may_read_is_a_warning(tmp_path: Path, mode: int) -> None:
    [notice] = _notices(tmp_path, mode)
    assert not notice.loud
    assert notice.message.startswith("REMEDIATOR_WEBHOOK_TOKEN_FILE: any user of this machine")
    assert f"may read {tmp_path / 'token'} (mode {mode:04o})" in notice.message
    assert TOKEN not in notice.message


@pytest.mark.parametrize("mode", [0o666, 0o602, 0o646])
def test_a_secret_any_user_may_replace_is_loud(tmp_path: Path, mode: int) -> None:
    [notice] = _notices(tmp_path, mode)
    assert notice.loud
    assert "may change" in notice.message
    assert "chmod o-rw" in notice.message  # o-w alone would leave it readable


def test_the_notices_are_among_the_start_up_notices(tmp_path: Path) -> None:
    token = _file(tmp_path / "token", TOKEN, 0o666)
    settings = load_settings(
        None,
        {"REMEDIATOR_WEBHOOK_TOKEN_FILE": str(token), "REMEDIATOR_RULES_DIR": str(tmp_path)},
    )
    assert [n.loud for n in start_up_notices(settings)] == [True]


def test_the_mode_read_is_the_one_a_kubernetes_secret_link_points_to(tmp_path: Path) -> None:
    # A mounted Secret: the key is a link (mode 0777 itself) through ..data to the real file.
    data = tmp_path / "..data"
    data.mkdir()
    real = _file(data / "token", TOKEN, 0o440)
    link = tmp_path / "token"
    link.symlink_to(real)
    rules = tmp_path / "rules"
    rules.mkdir()
    env = {"REMEDIATOR_WEBHOOK_TOKEN_FILE": str(link), "REMEDIATOR_RULES_DIR": str(rules)}
    assert exposed_files(load_settings(None, env)) == []
    real.chmod(0o444)
    [notice] = exposed_files(load_settings(None, env))
    assert "mode 0444" in notice.message


def test_every_key_of_a_directory_of_secrets_is_looked_at(tmp_path: Path) -> None:
    tokens = tmp_path / "operators"
    tokens.mkdir()
    _file(tokens / "alice", "alice-token-of-32-characters-xx", 0o400)
    _file(tokens / "bob", "bob-token-of-32-characters-xxxxx", 0o604)
    _file(tokens / ".hidden", "ignored", 0o666)  # Kubernetes' own entries start with a dot
    settings = load_settings(
        None,
        {
            "REMEDIATOR_WEBHOOK_TOKEN": TOKEN,
            "REMEDIATOR_OPERATOR_TOKENS_DIR": str(tokens),
            "REMEDIATOR_RULES_DIR": str(tmp_path),
        },
    )
    [notice] = exposed_files(settings)
    assert notice.message.startswith("REMEDIATOR_OPERATOR_TOKENS_DIR: ")
    assert str(tokens / "bob") in notice.message


def test_a_named_connection_file_is_named_by_its_yaml_key(tmp_path: Path) -> None:
    dsn = _file(tmp_path / "orders-dsn", "postgresql://ops:pw@db:5432/orders", 0o644)
    config = tmp_path / "config.yaml"
    config.write_text(f"postgres:\n  databases:\n    orders: {{dsn_file: {dsn}}}\n")
    settings = load_settings(
        config, {"REMEDIATOR_WEBHOOK_TOKEN": TOKEN, "REMEDIATOR_RULES_DIR": str(tmp_path)}
    )
    [notice] = exposed_files(settings)
    assert notice.message.startswith("postgres.databases.orders.dsn_file: ")
    assert "pw@" not in notice.message


@pytest.mark.parametrize(("mode", "loud"), [(0o644, None), (0o664, None), (0o666, True)])
def test_a_rule_file_is_no_secret_but_must_not_be_anyones_to_change(
    tmp_path: Path, mode: int, loud: bool | None
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir(mode=0o755)
    _file(rules / "restart.yaml", "rules: []\n", mode)
    settings = load_settings(
        None, {"REMEDIATOR_WEBHOOK_TOKEN": TOKEN, "REMEDIATOR_RULES_DIR": str(rules)}
    )
    notices = exposed_files(settings)
    assert [n.loud for n in notices] == ([] if loud is None else [loud])
    if notices:
        assert notices[0].message.startswith("REMEDIATOR_RULES_DIR: any user of this machine")
        assert str(rules / "restart.yaml") in notices[0].message
        assert "chmod o-w it" in notices[0].message


def test_only_the_files_the_loader_reads_are_looked_at(tmp_path: Path) -> None:
    # Rule tests and old copies live in subdirectories or hidden files: never loaded.
    rules = tmp_path / "rules"
    (rules / "tests").mkdir(parents=True, mode=0o755)
    rules.chmod(0o755)
    _file(rules / "tests" / "t.yaml", "tests: []\n", 0o666)
    _file(rules / ".old.yaml", "rules: []\n", 0o666)
    _file(rules / "notes.txt", "x\n", 0o666)
    settings = load_settings(
        None, {"REMEDIATOR_WEBHOOK_TOKEN": TOKEN, "REMEDIATOR_RULES_DIR": str(rules)}
    )
    assert exposed_files(settings) == []


@pytest.mark.parametrize("field", ["RULES_DIR", "OPERATOR_TOKENS_DIR", "APPROVAL_KEYS_DIR"])
def test_a_directory_anyone_may_write_is_loud(tmp_path: Path, field: str) -> None:
    # Whoever may write it may add a rule that acts, an operator's token or a signing key.
    directory = tmp_path / "dir"
    directory.mkdir()
    directory.chmod(0o777)
    env = {"REMEDIATOR_WEBHOOK_TOKEN": TOKEN, "REMEDIATOR_RULES_DIR": str(tmp_path / "none")}
    env[f"REMEDIATOR_{field}"] = str(directory)
    [notice] = exposed_files(load_settings(None, env))
    assert notice.loud
    assert notice.message.startswith(f"REMEDIATOR_{field}: any user of this machine may change")
    assert "(mode 0777)" in notice.message


def test_the_config_file_anyone_may_change_is_loud(tmp_path: Path) -> None:
    config = _file(tmp_path / "config.yaml", "dry_run: true\n", 0o666)
    env = {"REMEDIATOR_WEBHOOK_TOKEN": TOKEN, "REMEDIATOR_RULES_DIR": str(tmp_path / "none")}
    settings = load_settings(config, env)
    assert exposed_files(settings) == []  # not told which file the settings came from
    [notice] = start_up_notices(settings, config)
    assert notice.loud
    assert notice.message.startswith("the config file: any user of this machine may change")
    config.chmod(0o644)  # readable is not flagged: a config file is usually a ConfigMap
    assert start_up_notices(settings, config) == []


def test_an_approvers_file_anyone_may_change_is_loud(tmp_path: Path) -> None:
    approvers = _file(tmp_path / "approvers.yaml", "approvers: {}\n", 0o646)
    settings = load_settings(
        None,
        {
            "REMEDIATOR_WEBHOOK_TOKEN": TOKEN,
            "REMEDIATOR_APPROVERS_FILE": str(approvers),
            "REMEDIATOR_RULES_DIR": str(tmp_path / "none"),
        },
    )
    [notice] = exposed_files(settings)
    assert notice.loud
    assert notice.message.startswith("REMEDIATOR_APPROVERS_FILE: ")
    approvers.chmod(0o644)  # readable is fine: it names people, it holds no secret
    assert exposed_files(settings) == []
