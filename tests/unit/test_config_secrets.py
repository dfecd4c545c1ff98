"""Settings' secrets kept secret: never in a repr or an error, tokens and passwords read from
files, and the operators' tokens from a directory (a mounted Secret)."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.config import ConfigError, load_settings
from receiver.config.approvals import load_approvals
from receiver.http.auth import Authenticator, Principal, Role
from tests.support.config import write


def test_secrets_never_in_repr(tmp_path: Path) -> None:
    s = load_settings(
        None,
        {
            "REMEDIATOR_WEBHOOK_TOKEN": "tok-123456",
            "REMEDIATOR_WEBHOOK_USERNAME": "am",
            "REMEDIATOR_WEBHOOK_PASSWORD": "pw-654321",
            "REMEDIATOR_DATABASE_URL": "postgresql://u:dbpass99@h/d",
            "REMEDIATOR_REDIS_URL": "redis://:redispass77@h/0",
        },
    )
    for text in (repr(s), str(s), str(s.model_dump())):
        for secret in ("tok-123456", "pw-654321", "dbpass99", "redispass77"):
            assert secret not in text


def test_secret_not_echoed_in_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(
            None, {"REMEDIATOR_DATABASE_URL": "postgresql://u:pw@h/d", "REMEDIATOR_PORT": "x"}
        )
    assert "pw@" not in info.value.message


def test_token_file_is_read_and_stripped(tmp_path: Path) -> None:
    token = write(tmp_path / "token", "\n  abc.def \r\n")
    s = load_settings(None, {"REMEDIATOR_WEBHOOK_TOKEN_FILE": str(token)})
    assert s.webhook_token is not None
    assert s.webhook_token.get_secret_value() == "abc.def"


def test_token_and_token_file_together_is_an_error(tmp_path: Path) -> None:
    token = write(tmp_path / "token", "abc")
    with pytest.raises(ConfigError) as info:
        load_settings(
            None,
            {"REMEDIATOR_WEBHOOK_TOKEN": "abc", "REMEDIATOR_WEBHOOK_TOKEN_FILE": str(token)},
        )
    assert "REMEDIATOR_WEBHOOK_TOKEN and REMEDIATOR_WEBHOOK_TOKEN_FILE" in info.value.message


def test_unreadable_token_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-token"
    with pytest.raises(ConfigError) as info:
        load_settings(None, {"REMEDIATOR_WEBHOOK_TOKEN_FILE": str(missing)})
    assert info.value.message.startswith("REMEDIATOR_WEBHOOK_TOKEN_FILE: ")
    assert str(missing) in info.value.message


def test_token_file_that_cannot_be_read_names_the_file(tmp_path: Path) -> None:
    # A directory where the file should be: unreadable for root too, unlike a chmod 000 file.
    token = tmp_path / "token"
    token.mkdir()
    with pytest.raises(ConfigError) as info:
        load_settings(None, {"REMEDIATOR_WEBHOOK_TOKEN_FILE": str(token)})
    assert info.value.message.startswith("REMEDIATOR_WEBHOOK_TOKEN_FILE: ")
    assert str(token) in info.value.message


def test_empty_token_file_is_an_error(tmp_path: Path) -> None:
    token = write(tmp_path / "token", " \n")
    with pytest.raises(ConfigError, match="is empty"):
        load_settings(None, {"REMEDIATOR_WEBHOOK_TOKEN_FILE": str(token)})


def test_password_file_and_half_configured_basic_auth(tmp_path: Path) -> None:
    password = write(tmp_path / "pw", "hunter2\n")
    s = load_settings(
        None,
        {"REMEDIATOR_WEBHOOK_USERNAME": "am", "REMEDIATOR_WEBHOOK_PASSWORD_FILE": str(password)},
    )
    assert s.webhook_password is not None
    assert s.webhook_password.get_secret_value() == "hunter2"
    with pytest.raises(
        ConfigError, match=r"^auth\.password \(REMEDIATOR_WEBHOOK_PASSWORD\): basic auth needs both"
    ):
        load_settings(None, {"REMEDIATOR_WEBHOOK_USERNAME": "am"})


# -- operators' tokens -----------------------------------------------------------------------------
def _operators(tmp_path: Path, **tokens: str) -> Path:
    directory = tmp_path / "operators"
    directory.mkdir(exist_ok=True)
    for name, token in tokens.items():
        write(directory / name, token)
    return directory


def test_operator_tokens_as_a_mounted_secret_shows_them(tmp_path: Path) -> None:
    """A Kubernetes Secret volume: keys are symlinks into ..data, which is skipped."""
    directory = tmp_path / "operators"
    real = directory / "..2026_01_01_00_00_00.000"
    real.mkdir(parents=True)
    write(real / "alice", "alice-token-0123456789\n")
    write(real / "ops.bot", "  bot-token-0123456789  \n")
    (directory / "..data").symlink_to(real.name)
    for name in ("alice", "ops.bot"):
        (directory / name).symlink_to(f"..data/{name}")
    s = load_settings(None, {"REMEDIATOR_OPERATOR_TOKENS_DIR": str(directory)})
    assert {k: v.get_secret_value() for k, v in s.operator_tokens.items()} == {
        "alice": "alice-token-0123456789",
        "ops.bot": "bot-token-0123456789",
    }
    assert "alice-token" not in repr(s)


def test_an_empty_operator_directory_means_no_operators(tmp_path: Path) -> None:
    s = load_settings(None, {"REMEDIATOR_OPERATOR_TOKENS_DIR": str(_operators(tmp_path))})
    assert s.operator_tokens == {}


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ({"alice": "short"}, "at least 16 characters"),
        ({"alice": "   \n"}, "is empty"),
        ({"alice": "same-token-0123456789", "bob": "same-token-0123456789"}, "share a token"),
        ({"al ice": "alice-token-0123456789"}, "the operator's name"),
        # The audit log's names of callers that are no operator: "by anonymous" must mean an
        # open API, "by webhook" Alertmanager's credential.
        ({"anonymous": "anon-token-0123456789"}, "is how the audit log names a caller"),
        ({"Webhook": "hook-token-0123456789"}, "is how the audit log names a caller"),
    ],
)
def test_bad_operator_tokens_name_the_file_not_the_token(
    tmp_path: Path, files: dict[str, str], problem: str
) -> None:
    directory = _operators(tmp_path, **files)
    with pytest.raises(ConfigError) as info:
        load_settings(None, {"REMEDIATOR_OPERATOR_TOKENS_DIR": str(directory)})
    assert problem in info.value.message
    assert "REMEDIATOR_OPERATOR_TOKENS_DIR" in info.value.message
    for token in files.values():
        if token.strip():
            assert token.strip() not in info.value.message


def test_operator_tokens_dir_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a directory"):
        load_settings(None, {"REMEDIATOR_OPERATOR_TOKENS_DIR": str(tmp_path / "absent")})


def test_the_webhook_token_cannot_also_be_an_operators(tmp_path: Path) -> None:
    directory = _operators(tmp_path, alice="shared-token-0123456789")
    with pytest.raises(ConfigError, match="give each role its own") as info:
        load_settings(
            None,
            {
                "REMEDIATOR_OPERATOR_TOKENS_DIR": str(directory),
                "REMEDIATOR_WEBHOOK_TOKEN": "shared-token-0123456789",
            },
        )
    assert "shared-token" not in info.value.message


def test_the_webhook_password_cannot_also_be_an_operators(tmp_path: Path) -> None:
    """Whoever holds Alertmanager's configuration (its basic-auth password) would otherwise
    send it as an operator's bearer token: pause remediation, decide approvals as that
    operator. It was taken (found by attack); the token's twin was already refused."""
    directory = _operators(tmp_path, alice="shared-secret-0123456789")
    password = write(tmp_path / "pw", "shared-secret-0123456789\n")
    with pytest.raises(ConfigError, match="give each role its own") as info:
        load_settings(
            None,
            {
                "REMEDIATOR_OPERATOR_TOKENS_DIR": str(directory),
                "REMEDIATOR_WEBHOOK_USERNAME": "am",
                "REMEDIATOR_WEBHOOK_PASSWORD_FILE": str(password),
            },
        )
    assert info.value.message == (
        "REMEDIATOR_OPERATOR_TOKENS_DIR: operator 'alice' has the webhook's password"
        " (REMEDIATOR_WEBHOOK_PASSWORD_FILE); give each role its own"
    )


@pytest.mark.parametrize("written", ["  tok-0123456789abcdef  ", "tok-0123456789abcdef "])
def test_a_token_written_with_blanks_around_it_is_taken_without_them(written: str) -> None:
    """An HTTP header carries no blanks around its value, so a webhook token configured with
    them could never be matched: every notification was refused 401 (found by attack). It
    is taken as a secret file is read, stripped, and the token Alertmanager sends passes."""
    s = load_settings(
        None, {"REMEDIATOR_WEBHOOK_TOKEN": written, "REMEDIATOR_OPERATOR_TOKEN": written}
    )
    assert s.webhook_token is not None
    assert s.operator_token is not None
    assert s.webhook_token.get_secret_value() == "tok-0123456789abcdef"
    assert s.operator_token.get_secret_value() == "tok-0123456789abcdef"
    assert Authenticator(s).identify("Bearer tok-0123456789abcdef") == Principal(
        Role.WEBHOOK, "webhook"
    )


def test_an_operator_token_with_blanks_around_it_is_still_the_webhooks(tmp_path: Path) -> None:
    directory = _operators(tmp_path, alice="shared-token-0123456789")
    with pytest.raises(ConfigError, match="has the webhook's token"):
        load_settings(
            None,
            {
                "REMEDIATOR_OPERATOR_TOKENS_DIR": str(directory),
                "REMEDIATOR_WEBHOOK_TOKEN": " shared-token-0123456789 ",
            },
        )


@pytest.mark.parametrize(
    ("setting", "content", "named"),
    [
        (
            "REMEDIATOR_OPERATOR_TOKEN_FILE",
            "SuperSecretTok123456\n# rotated\n",
            "REMEDIATOR_OPERATOR_TOKEN_FILE",
        ),
        (
            "REMEDIATOR_WEBHOOK_TOKEN_FILE",
            "SuperSecretTok123456\rold\n",
            "REMEDIATOR_WEBHOOK_TOKEN_FILE",
        ),
        ("REMEDIATOR_OPERATOR_TOKENS_DIR", "SuperSecretTok123456\nSuperSecretTok654321\n", "alice"),
    ],
)
def test_a_token_with_a_second_line_is_refused_naming_its_file(
    tmp_path: Path, setting: str, content: str, named: str
) -> None:
    """A bearer token travels in an HTTP header: a control character in it made the CLI fail
    with a traceback (found by attack), and a server's such token could never be matched."""
    if setting.endswith("_DIR"):
        (tmp_path / "operators").mkdir()
        write(tmp_path / "operators" / "alice", content)
        value = str(tmp_path / "operators")
    else:
        value = str(write(tmp_path / "token", content))
    with pytest.raises(ConfigError, match="control character") as caught:
        load_settings(None, {setting: value})
    assert named in caught.value.message
    assert "SuperSecret" not in caught.value.message


_PASTED = "tok-qzxs-0123456789abcdef"


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"REMEDIATOR_WEBHOOK_TOKEN_FILE": _PASTED}, "REMEDIATOR_WEBHOOK_TOKEN_FILE"),
        (
            {"REMEDIATOR_WEBHOOK_USERNAME": "am", "REMEDIATOR_WEBHOOK_PASSWORD_FILE": _PASTED},
            "REMEDIATOR_WEBHOOK_PASSWORD_FILE",
        ),
        ({"REMEDIATOR_OPERATOR_TOKEN_FILE": _PASTED}, "REMEDIATOR_OPERATOR_TOKEN_FILE"),
        ({"REMEDIATOR_REDIS_PASSWORD_FILE": _PASTED}, "REMEDIATOR_REDIS_PASSWORD_FILE"),
        ({"REMEDIATOR_OPERATOR_TOKENS_DIR": _PASTED}, "REMEDIATOR_OPERATOR_TOKENS_DIR"),
        (
            {"REMEDIATOR_POSTGRES_DATABASES": '{"o": {"dsn_file": "postgresql://u:qzxs@db/o"}}'},
            "postgres.databases.o.dsn_file",
        ),
        (
            {
                "REMEDIATOR_HTTP_ENDPOINTS": (
                    '{"e": {"url": "https://h.internal/f",'
                    f' "header_files": {{"Authorization": "Bearer {_PASTED}"}}}}}}'
                )
            },
            "http.endpoints.e.header_files.Authorization",
        ),
        # A token from `openssl rand -base64`, its `/` read as a directory that is not there.
        ({"REMEDIATOR_WEBHOOK_TOKEN_FILE": "qzxs/9f+ab0123=="}, "REMEDIATOR_WEBHOOK_TOKEN_FILE"),
    ],
)
def test_a_secret_given_where_its_files_path_goes_is_not_quoted(
    environ: dict[str, str], named: str
) -> None:
    """The secret itself where its file's path goes names no file: the message quoted that
    "path", the secret, whole (found by attack). A path naming nothing, not even its
    directory, is not shown."""
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ)
    message = caught.value.message
    assert message.startswith(f"{named}: ")
    assert "its path not shown" in message
    assert "qzxs" not in message


@pytest.mark.parametrize(
    ("setting", "what"),
    [
        ("REMEDIATOR_APPROVERS_FILE", "cannot read approvers file"),
        ("REMEDIATOR_SLACK_SIGNING_SECRET_FILE", "cannot read secret file"),
        ("REMEDIATOR_APPROVAL_KEYS_DIR", "it is not a directory"),
    ],
)
def test_an_approval_secret_given_where_its_path_goes_is_not_quoted(
    setting: str, what: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_approvals(load_settings(None, {setting: _PASTED}))
    assert caught.value.message.startswith(f"{setting}: {what}")
    assert "qzxs" not in caught.value.message


def test_a_file_under_a_directory_not_mounted_is_named(tmp_path: Path) -> None:
    # A Secret's volume not mounted: its directory is not there, but the one above is; the
    # path is what the user must see to find the missing mount.
    missing = tmp_path / "secrets" / "webhook" / "token"
    with pytest.raises(ConfigError) as caught:
        load_settings(None, {"REMEDIATOR_WEBHOOK_TOKEN_FILE": str(missing)})
    assert caught.value.message == (
        f"REMEDIATOR_WEBHOOK_TOKEN_FILE: cannot read secret file {missing}:"
        " No such file or directory"
    )


def test_a_misspelt_file_in_a_directory_that_exists_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, {"REMEDIATOR_WEBHOOK_TOKEN_FILE": str(tmp_path / "tokne")})
    assert caught.value.message == (
        f"REMEDIATOR_WEBHOOK_TOKEN_FILE: cannot read secret file {tmp_path / 'tokne'}:"
        " No such file or directory"
    )


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {
                "REMEDIATOR_WEBHOOK_USERNAME": "am:qzxb",
                "REMEDIATOR_WEBHOOK_PASSWORD": "pw-qzxb-0123",
            },
            "REMEDIATOR_WEBHOOK_USERNAME: a basic-auth user name cannot hold a ':' (the password"
            " begins after the first one)",
        ),
        (
            {"REMEDIATOR_WEBHOOK_USERNAME": "am", "REMEDIATOR_WEBHOOK_PASSWORD": "pw-qzxb\x01x"},
            "REMEDIATOR_WEBHOOK_PASSWORD: holds a control character (a second line?), which"
            " basic auth cannot carry",
        ),
    ],
)
def test_a_basic_auth_pair_no_request_can_carry_is_refused(
    environ: dict[str, str], message: str
) -> None:
    """Alertmanager sends ``user:password``, and the user name ends at the first ``:`` (RFC
    7617): a user name holding one was taken, and every notification refused 401 (found by
    attack)."""
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ)
    assert caught.value.message == message


def test_a_password_file_with_a_second_line_is_named_by_its_file(tmp_path: Path) -> None:
    password = write(tmp_path / "pw", "pw-qzxb-0123\nold-qzxb\n")
    with pytest.raises(ConfigError, match=r"^REMEDIATOR_WEBHOOK_PASSWORD_FILE: holds a control"):
        load_settings(
            None,
            {
                "REMEDIATOR_WEBHOOK_USERNAME": "am",
                "REMEDIATOR_WEBHOOK_PASSWORD_FILE": str(password),
            },
        )
