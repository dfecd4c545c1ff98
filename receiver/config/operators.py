"""Operators' tokens: one file per operator in ``operator_tokens_dir``, the file's name the
operator's, which the audit log records as ``by``. Pure but for reading the files."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import SecretStr

from receiver.config.files import read_secret, secret_files
from receiver.config.settings import ConfigError

__all__ = [
    "ANONYMOUS",
    "MIN_OPERATOR_TOKEN_CHARS",
    "RESERVED_NAMES",
    "WEBHOOK_NAME",
    "check_basic",
    "check_bearer",
    "read_operator_tokens",
]

# The name of a caller on an open role (no credentials configured for it).
ANONYMOUS = "anonymous"
# The name the webhook credential's caller is recorded under.
WEBHOOK_NAME = "webhook"
# Names an operator's file may not have, in any case: a reviewer reading "by anonymous" or "by
# webhook" in the audit log must be able to take it for what it says.
RESERVED_NAMES = frozenset({ANONYMOUS, WEBHOOK_NAME})

# An operator's name is the token file's name: what the audit log records as ``by``.
_OPERATOR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
# Operators' tokens grant the kill switch: too short a token is refused, not used.
MIN_OPERATOR_TOKEN_CHARS = 16


def check_bearer(token: SecretStr | None, source: str) -> None:
    """ConfigError naming ``source``, never the token, when it holds a control character: an
    HTTP header cannot carry one (a second line in its file made the CLI fail)."""
    if token is not None and any(ord(c) < 0x20 or ord(c) == 0x7F for c in token.get_secret_value()):
        raise ConfigError(
            f"{source}: the token holds a control character (a second line?); an HTTP header "
            "cannot carry one: keep the token alone on one line"
        )


def check_basic(
    username: str | None, password: SecretStr | None, user_source: str, password_source: str
) -> None:
    """ConfigError naming the setting, quoting neither part, when the webhook's basic-auth pair
    can never be sent as configured (RFC 7617 2: the user name ends at the first ``:``, and
    neither part holds a control character): a user name ``am:x`` was taken, and every
    notification was refused 401."""
    if username is not None and ":" in username:
        raise ConfigError(
            f"{user_source}: a basic-auth user name cannot hold a ':' (the password begins after"
            " the first one)"
        )
    for source, text in (
        (user_source, username),
        (password_source, password.get_secret_value() if password is not None else None),
    ):
        if text is not None and any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
            raise ConfigError(
                f"{source}: holds a control character (a second line?), which basic auth"
                " cannot carry"
            )


def read_operator_tokens(directory: Path, source: str) -> dict[str, SecretStr]:
    """name -> token from one file per operator in ``directory`` (``secret_files``).

    Raises ConfigError naming the file (never a token) when one is unreadable, empty, too
    short, badly named (or named as a caller that is no operator: ``RESERVED_NAMES``), or holds
    the same token as another operator.
    """
    tokens: dict[str, SecretStr] = {}
    seen: dict[str, str] = {}
    for entry in secret_files(directory, source):
        if not _OPERATOR_NAME.fullmatch(entry.name):
            raise ConfigError(
                f"{source}: {entry}: the file name is the operator's name: letters, digits and"
                " . _ @ - (at most 64, starting with a letter or digit)"
            )
        if entry.name.lower() in RESERVED_NAMES:
            raise ConfigError(
                f"{source}: {entry}: {entry.name!r} is how the audit log names a caller that is"
                f" no operator ({', '.join(sorted(RESERVED_NAMES))}): name the file after the"
                " operator"
            )
        token = read_secret(entry, source)
        check_bearer(token, f"{source}: {entry}")
        if len(token.get_secret_value()) < MIN_OPERATOR_TOKEN_CHARS:
            raise ConfigError(
                f"{source}: {entry}: a token must be at least {MIN_OPERATOR_TOKEN_CHARS}"
                " characters (e.g. openssl rand -base64 32)"
            )
        other = seen.get(token.get_secret_value())
        if other is not None:
            raise ConfigError(f"{source}: operators {other!r} and {entry.name!r} share a token")
        seen[token.get_secret_value()] = entry.name
        tokens[entry.name] = token
    return tokens
